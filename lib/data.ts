/**
 * Image-classification datasets laid out as domains of class folders: `<root>/<domain>/<class>/<image>`.
 *
 * Labels are the index of the class folder in sorted order and class names are the folder names
 * lower-cased (spec §6). Train/test splits are deterministic for a seed and disjoint.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { IpclipError, check } from './errors.js';
import { Rng } from './rng.js';

/** One labelled image: a file path or its encoded bytes. */
export interface Sample {
  path?: string;
  buffer?: Buffer | Uint8Array;
  label: number;
  domain?: string;
}

/** How many images a domain contributes to each split. */
export interface DatasetSizes {
  train: number;
  test: number;
}

/** The per-domain subset sizes of the authors' release (spec §6). */
export const SPLIT_PRESETS: Record<'office-home' | 'office-31' | 'mini-domainnet', DatasetSizes> = {
  'office-home': { train: 2000, test: 400 },
  'office-31': { train: 400, test: 80 },
  'mini-domainnet': { train: 10000, test: 630 },
};

/** Which part of a domain a dataset holds. */
export type SplitName = 'train' | 'test' | 'all';

/** Options of {@link DomainDataset.fromFolder}. */
export interface FolderOptions {
  /** The domain folder's name under the root. */
  domain: string;
  /** Default `'all'`: every image, in sorted order (no shuffle). */
  split?: SplitName;
  /** Seed of the split shuffle (default 0). */
  seed?: number;
  /** Fixed split sizes, or the name of a preset; takes precedence over `trainFraction`. */
  sizes?: DatasetSizes | keyof typeof SPLIT_PRESETS;
  /** Share of the domain used for training when `sizes` is not given (default 0.8). */
  trainFraction?: number;
  /** Expected class names (compared case-insensitively with the folders); `ERR_MISMATCH` otherwise. */
  classNames?: string[];
}

/** File extensions read as images (compared case-insensitively). */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set(['.jpg', '.jpeg', '.png', '.webp', '.bmp', '.gif', '.tif', '.tiff']);

/** A labelled list of images from one domain (or any list of samples sharing class names). */
export class DomainDataset {
  /**
   * @param samples the images, in dataset order
   * @param classNames lower-cased class names; label `i` is `classNames[i]`
   * @param classFolders the folder names the classes came from (same order as `classNames`)
   */
  private constructor(
    readonly samples: Sample[],
    readonly classNames: string[],
    readonly classFolders: string[],
    readonly domain: string,
    readonly root: string,
    readonly split: SplitName,
  ) {}

  /**
   * Lists `<root>/<domain>/<class>/*` and returns one split of it.
   *
   * Split rule: all images are listed (classes sorted, files sorted), then shuffled with
   * `new Rng(seed).fork('split/' + domain)`. The test split is the first `nTest` images of that order and
   * the train split the next `nTrain`, so the two never overlap and the test split does not depend on the
   * train size.
   * - With `sizes` and at least `train + test` images: `nTest = test`, `nTrain = train` (extra images unused).
   * - With `sizes` and fewer images (a capped domain): the sizes are scaled to the domain, keeping their
   *   ratio: `nTest = floor(n · test / (train + test))`, `nTrain = n − nTest`.
   * - Without `sizes`: `nTrain = round(n · trainFraction)`, `nTest = n − nTrain`.
   *
   * @throws IpclipError `ERR_FILE_NOT_FOUND` (root or domain missing), `ERR_EMPTY_INPUT` (no class folders,
   * or a class folder without images), `ERR_MISMATCH` (`classNames` differ from the folders).
   */
  static async fromFolder(root: string, opts: FolderOptions): Promise<DomainDataset> {
    const split = opts.split ?? 'all';
    check(split === 'train' || split === 'test' || split === 'all', `split must be 'train', 'test' or 'all', got ${String(split)}`);
    const listing = await listDomain(root, opts.domain);
    if (opts.classNames !== undefined) checkClassNames(opts.classNames, listing.classNames, listing.dir);
    let samples = listing.samples;
    if (split !== 'all') {
      const { nTrain, nTest } = splitCounts(samples.length, opts);
      const order = splitOrder(samples.length, opts.seed, opts.domain);
      const picked = split === 'test' ? order.slice(0, nTest) : order.slice(nTest, nTest + nTrain);
      samples = picked.map((i) => listing.samples[i]);
    }
    return new DomainDataset(samples, listing.classNames, listing.classFolders, opts.domain, path.resolve(root), split);
  }

  /** Both splits of a domain from a single listing (same rule as {@link DomainDataset.fromFolder}). */
  static async splits(root: string, opts: Omit<FolderOptions, 'split'>): Promise<{ train: DomainDataset; test: DomainDataset }> {
    const all = await DomainDataset.fromFolder(root, { ...opts, split: 'all' });
    const { nTrain, nTest } = splitCounts(all.length, opts);
    const order = splitOrder(all.length, opts.seed, opts.domain);
    const make = (idx: number[], split: SplitName) =>
      new DomainDataset(idx.map((i) => all.samples[i]), all.classNames, all.classFolders, all.domain, all.root, split);
    return { test: make(order.slice(0, nTest), 'test'), train: make(order.slice(nTest, nTest + nTrain), 'train') };
  }

  /**
   * A dataset over samples already in memory (paths or encoded buffers).
   * @throws IpclipError `ERR_INVALID_ARGUMENT` for a label outside `[0, classNames.length)` or a sample
   * with neither `path` nor `buffer`.
   */
  static fromSamples(samples: Sample[], classNames: string[], opts: { domain?: string } = {}): DomainDataset {
    check(Array.isArray(samples), 'samples must be an array');
    check(Array.isArray(classNames) && classNames.length > 0, 'classNames must be a non-empty array', 'ERR_EMPTY_INPUT');
    samples.forEach((s, i) => {
      check(s !== null && typeof s === 'object', `sample ${i} is not an object`);
      check(Number.isInteger(s.label) && s.label >= 0 && s.label < classNames.length,
        `sample ${i}: label ${s.label} is not in [0, ${classNames.length})`);
      check(typeof s.path === 'string' || s.buffer instanceof Uint8Array, `sample ${i} has neither a path nor a buffer`);
    });
    const names = classNames.map((c) => String(c).toLowerCase());
    return new DomainDataset(samples.slice(), names, classNames.slice(), opts.domain ?? '', '', 'all');
  }

  /** The domain folders under `root`, sorted (hidden entries ignored). */
  static async listDomains(root: string): Promise<string[]> {
    return listSubfolders(await requireDir(root, 'dataset root'));
  }

  /** Number of samples. */
  get length(): number {
    return this.samples.length;
  }

  /** Number of classes. */
  get numClasses(): number {
    return this.classNames.length;
  }

  /** The label of every sample, in order. */
  labels(): Int32Array {
    return Int32Array.from(this.samples, (s) => s.label);
  }

  /** The samples at `indices` (in that order; repeats allowed), with the same classes and domain. */
  subset(indices: number[]): DomainDataset {
    const picked = indices.map((i) => {
      check(Number.isInteger(i) && i >= 0 && i < this.samples.length, `subset index ${i} is out of range [0, ${this.samples.length})`);
      return this.samples[i];
    });
    return this.derive(picked);
  }

  /** The samples for which `keep` returns true. */
  filter(keep: (sample: Sample, index: number) => boolean): DomainDataset {
    return this.derive(this.samples.filter(keep));
  }

  /** A dataset whose samples are `fn` applied to these (labels must stay valid). */
  map(fn: (sample: Sample, index: number) => Sample): DomainDataset {
    const out = DomainDataset.fromSamples(this.samples.map(fn), this.classNames, { domain: this.domain });
    return new DomainDataset(out.samples, this.classNames, this.classFolders, this.domain, this.root, this.split);
  }

  private derive(samples: Sample[]): DomainDataset {
    return new DomainDataset(samples, this.classNames, this.classFolders, this.domain, this.root, this.split);
  }
}

/**
 * Checks that datasets (e.g. the domains of one root) share their class names, in the same order.
 * @throws IpclipError `ERR_MISMATCH` naming the first domain that differs.
 */
export function assertSameClasses(datasets: readonly DomainDataset[]): void {
  if (datasets.length === 0) return;
  const first = datasets[0];
  for (const d of datasets.slice(1)) {
    const same = d.classNames.length === first.classNames.length && d.classNames.every((c, i) => c === first.classNames[i]);
    if (!same) {
      throw new IpclipError('ERR_MISMATCH',
        `domain '${d.domain}' has classes [${d.classNames.join(', ')}] but '${first.domain}' has [${first.classNames.join(', ')}]`);
    }
  }
}

/** The number of train and test images a domain of `n` images gives (rule in {@link DomainDataset.fromFolder}). */
export function splitCounts(n: number, opts: Pick<FolderOptions, 'sizes' | 'trainFraction'>): { nTrain: number; nTest: number } {
  if (opts.sizes !== undefined) {
    const sizes = typeof opts.sizes === 'string' ? SPLIT_PRESETS[opts.sizes] : opts.sizes;
    check(sizes !== undefined && typeof sizes === 'object', `unknown split preset '${String(opts.sizes)}'`);
    check(Number.isInteger(sizes.train) && sizes.train >= 0 && Number.isInteger(sizes.test) && sizes.test >= 0,
      `split sizes must be non-negative integers, got train=${sizes.train} test=${sizes.test}`);
    const total = sizes.train + sizes.test;
    check(total > 0, 'split sizes are both 0');
    if (n >= total) return { nTrain: sizes.train, nTest: sizes.test };
    const nTest = Math.floor((n * sizes.test) / total);
    return { nTrain: n - nTest, nTest };
  }
  const fraction = opts.trainFraction ?? 0.8;
  check(typeof fraction === 'number' && fraction >= 0 && fraction <= 1, `trainFraction must be in [0, 1], got ${fraction}`);
  const nTrain = Math.round(n * fraction);
  return { nTrain, nTest: n - nTrain };
}

/** The shuffled listing order a split is cut from: `new Rng(seed).fork('split/' + domain)`. */
function splitOrder(n: number, seed = 0, domain: string): number[] {
  check(Number.isInteger(seed), `seed must be an integer, got ${seed}`);
  return new Rng(seed).fork('split/' + domain).shuffle(Array.from({ length: n }, (_, i) => i));
}

interface DomainListing {
  dir: string;
  classFolders: string[];
  classNames: string[];
  samples: Sample[];
}

async function listDomain(root: string, domain: string): Promise<DomainListing> {
  check(typeof root === 'string' && root.length > 0, 'dataset root must be a non-empty path');
  check(typeof domain === 'string' && domain.length > 0 && !/[\\/]/.test(domain) && domain !== '.' && domain !== '..',
    `domain must be a folder name, got '${String(domain)}'`);
  await requireDir(root, 'dataset root');
  const dir = await requireDir(path.join(root, domain), `domain '${domain}'`);
  const classFolders = await listSubfolders(dir);
  if (classFolders.length === 0) throw new IpclipError('ERR_EMPTY_INPUT', `domain folder ${dir} has no class folders`);
  const samples: Sample[] = [];
  for (const [label, folder] of classFolders.entries()) {
    const classDir = path.join(dir, folder);
    const files = (await fs.readdir(classDir, { withFileTypes: true }))
      .filter((e) => !e.name.startsWith('.') && IMAGE_EXTENSIONS.has(path.extname(e.name).toLowerCase()))
      .filter((e) => e.isFile() || e.isSymbolicLink())
      .map((e) => e.name)
      .sort(byCodeUnit);
    if (files.length === 0) throw new IpclipError('ERR_EMPTY_INPUT', `class folder ${classDir} has no images`);
    for (const f of files) samples.push({ path: path.join(classDir, f), label, domain });
  }
  return { dir, classFolders, classNames: classFolders.map((c) => c.toLowerCase()), samples };
}

function checkClassNames(expected: string[], found: string[], dir: string): void {
  check(Array.isArray(expected), 'classNames must be an array of strings');
  const want = expected.map((c) => String(c).toLowerCase());
  const same = want.length === found.length && want.every((c, i) => c === found[i]);
  if (!same) {
    throw new IpclipError('ERR_MISMATCH', `class folders of ${dir} are [${found.join(', ')}], expected [${want.join(', ')}]`);
  }
}

async function requireDir(dir: string, what: string): Promise<string> {
  let stat;
  try {
    stat = await fs.stat(dir);
  } catch (cause) {
    throw new IpclipError('ERR_FILE_NOT_FOUND', `${what} not found: ${dir}`, { cause });
  }
  if (!stat.isDirectory()) throw new IpclipError('ERR_FILE_NOT_FOUND', `${what} is not a folder: ${dir}`);
  return dir;
}

async function listSubfolders(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { withFileTypes: true });
  const out: string[] = [];
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    if (e.isDirectory() || (e.isSymbolicLink() && (await fs.stat(path.join(dir, e.name)).catch(() => null))?.isDirectory())) {
      out.push(e.name);
    }
  }
  return out.sort(byCodeUnit);
}

/** Plain code-unit order (like Python's `sorted`), independent of the machine's locale. */
function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
