/**
 * Image-classification datasets laid out as domains of class folders: `<root>/<domain>/<class>/<image>`.
 *
 * Labels are the index of the class folder in sorted order and class names are the folder names
 * lower-cased (method §6). Train/test splits are deterministic for a seed, disjoint, and stable when files are
 * added or removed (each file is placed by a hash of its path; see {@link DomainDataset.fromFolder}).
 * Image headers can be checked up front ({@link FolderOptions.onBadImage}) so that a corrupt file is reported
 * before any training starts, with every other bad file of the same splits.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { IpclipError, check } from '../core/errors.js';
import { sameNames } from '../core/is.js';
import { Rng } from '../core/rng.js';
import { DEFAULT_MAX_PIXELS } from '../image/decode.js';

/**
 * One labelled image: a file path or its encoded bytes.
 * @category Data
 */
export interface Sample {
  path?: string;
  buffer?: Buffer | Uint8Array;
  label: number;
  domain?: string;
}

/**
 * How many images a domain contributes to each split.
 * @category Data
 */
export interface DatasetSizes {
  train: number;
  test: number;
}

/**
 * The per-domain subset sizes of the authors' release (method §6).
 * @category Data
 */
export const SPLIT_PRESETS: Record<'office-home' | 'office-31' | 'mini-domainnet', DatasetSizes> = {
  'office-home': { train: 2000, test: 400 },
  'office-31': { train: 400, test: 80 },
  'mini-domainnet': { train: 10000, test: 630 },
};

/**
 * Which part of a domain a dataset holds.
 * @category Data
 */
export type SplitName = 'train' | 'test' | 'all';

/**
 * What to do with an image whose header check fails: refuse the whole listing, or leave the file out.
 * @category Data
 */
export type OnBadImage = 'error' | 'skip';

/**
 * An image that failed the header check.
 * @category Data
 */
export interface BadImage {
  path: string;
  reason: string;
}

/**
 * Name and version of the train/test assignment rule (recorded in checkpoints; see {@link DomainDataset.fromFolder}).
 * @category Data
 */
export const SPLIT_RULE = { name: 'path-hash', version: 1 } as const;

/**
 * How a folder dataset was cut from its domain: everything needed to cut the same split again and to tell, from
 * a file's path alone, whether it was in the training split.
 * @category Data
 */
export interface SplitInfo {
  rule: typeof SPLIT_RULE.name;
  version: number;
  seed: number;
  /** The requested sizes (a preset's resolved), or null when `trainFraction` was used. */
  sizes: DatasetSizes | null;
  /** The preset name when `sizes` named one. */
  preset: keyof typeof SPLIT_PRESETS | null;
  /** The fraction used when no sizes were given, else null. */
  trainFraction: number | null;
  /** The header check applied to the listing (null: none). */
  onBadImage: OnBadImage | null;
  /** Images of the domain listed (before leaving bad ones out). */
  listed: number;
  /** Images in each split. */
  nTrain: number;
  nTest: number;
  /**
   * The split key ({@link splitKey}) of the first training image: a file of this domain is a training image
   * of this split exactly when it was listed and its key is ≥ this (null when the train split is empty).
   */
  trainFrom: string | null;
  /** The key of the last test image (null when the test split is empty); test keys are ≤ this. */
  testUpTo: string | null;
  /**
   * Set on the two parts {@link DomainDataset.holdOut} cuts a split into: the held-out share, its seed, and
   * which part this is. `nTrain` and `nTest` still count the split before the cut.
   */
  heldOut?: { fraction: number; seed: number; part: 'rest' | 'validation' };
}

/**
 * Thrown (code `ERR_BAD_IMAGE`) when image headers fail the check: `files` lists every bad file found.
 * @category Data
 */
export class BadImagesError extends IpclipError {
  constructor(readonly files: BadImage[], where: string) {
    const shown = files.slice(0, 5).map((f) => `${f.path} (${f.reason})`).join('; ');
    super('ERR_BAD_IMAGE', `${files.length} unreadable image${files.length === 1 ? '' : 's'} in ${where}: ${shown}` +
      `${files.length > 5 ? `; and ${files.length - 5} more (all on error.files)` : ''}; fix or remove them, or skip them (onBadImage 'skip')`);
    this.name = 'BadImagesError';
  }
}

/**
 * Options of {@link DomainDataset.fromFolder}.
 * @category Data
 */
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
  /**
   * Check each image of the split(s) cut (header and end marker, no full decode) before returning:
   * `'error'` rejects with a {@link BadImagesError} listing every bad file, `'skip'` leaves them out (as if they
   * were absent, so the split sizes are still met) and lists them in {@link DomainDataset.skipped}.
   * Default: `'error'` in {@link DomainDataset.splits}; no check in `fromFolder` (bad files then fail when loaded).
   */
  onBadImage?: OnBadImage;
}

/**
 * File extensions read as images (compared case-insensitively).
 * @category Data
 */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set(['.jpg', '.jpeg', '.png', '.webp', '.bmp', '.gif', '.tif', '.tiff']);

/**
 * A labelled list of images from one domain (or any list of samples sharing class names).
 * @category Data
 */
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
    /** How the split was cut (folder datasets only). */
    readonly splitInfo: SplitInfo | null = null,
    /** Images of the domain left out by the header check (`onBadImage: 'skip'`). */
    readonly skipped: readonly BadImage[] = [],
    /** The root as given (`root` is resolved). */
    readonly rootGiven: string = root,
  ) {}

  /**
   * Lists `<root>/<domain>/<class>/*` and returns one split of it.
   *
   * Split rule ({@link SPLIT_RULE}, `path-hash` v1): every image gets a key, {@link splitKey} — a SHA-256 of the
   * seed, the domain and the file's path relative to the domain folder (`Class/file.png`, `/`-separated) — and
   * the images are ordered by key. The test split is the `nTest` images with the SMALLEST keys (in ascending
   * order), the train split the `nTrain` images with the LARGEST keys (in descending order); anything in between
   * is unused. So the two never overlap, the test split does not depend on the train size, and a file's place
   * depends only on its own path: adding or removing one image changes the assignment of at most one other
   * image (the one at the cut next to it, when the split sizes are fixed by the domain's size), and when images
   * are left unused that image moves between the unused middle and a split, never between train and test.
   * - With `sizes` and at least `train + test` images: `nTest = test`, `nTrain = train` (extra images unused).
   * - With `sizes` and fewer images (a capped domain): the sizes are scaled to the domain, keeping their
   *   ratio: `nTest = floor(n · test / (train + test))`, `nTrain = n − nTest`.
   * - Without `sizes`: `nTrain = round(n · trainFraction)`, `nTest = n − nTrain`.
   *
   * With `onBadImage`, the images of the returned split(s) are checked first (`checkImageFile`); skipped
   * ones count as absent (the sizes are met from the other images, `n` counts the readable ones).
   *
   * @throws IpclipError `ERR_FILE_NOT_FOUND` (root or domain missing), `ERR_EMPTY_INPUT` (no class folders,
   * or a class folder without images), `ERR_MISMATCH` (`classNames` differ from the folders),
   * `ERR_BAD_IMAGE` ({@link BadImagesError}, with `onBadImage: 'error'`).
   */
  static async fromFolder(root: string, opts: FolderOptions): Promise<DomainDataset> {
    const split = opts.split ?? 'all';
    check(split === 'train' || split === 'test' || split === 'all', `split must be 'train', 'test' or 'all', got ${String(split)}`);
    const listing = await listDomain(root, opts.domain);
    if (opts.classNames !== undefined) checkClassNames(opts.classNames, listing.classNames, listing.dir);
    const onBad = checkOnBadImage(opts.onBadImage);
    if (split === 'all') {
      const bad = onBad ? await findBad(listing.samples) : [];
      if (bad.length > 0 && onBad === 'error') throw new BadImagesError(bad, `domain '${opts.domain}'`);
      const badSet = new Set(bad.map((b) => b.path));
      const samples = listing.samples.filter((s) => !badSet.has(s.path!));
      return new DomainDataset(samples, listing.classNames, listing.classFolders, opts.domain, path.resolve(root), 'all', null, bad, root);
    }
    const c = await cutSplits(listing, opts, onBad, split);
    const make = (samples: Sample[], name: SplitName) =>
      new DomainDataset(samples, listing.classNames, listing.classFolders, opts.domain, path.resolve(root), name, c.info, c.skipped, root);
    return split === 'test' ? make(c.test, 'test') : make(c.train, 'train');
  }

  /**
   * Both splits of a domain from a single listing (same rule as {@link DomainDataset.fromFolder}); the header
   * check runs on both splits by default (`onBadImage: 'error'`).
   */
  static async splits(root: string, opts: Omit<FolderOptions, 'split'>): Promise<{ train: DomainDataset; test: DomainDataset }> {
    const listing = await listDomain(root, opts.domain);
    if (opts.classNames !== undefined) checkClassNames(opts.classNames, listing.classNames, listing.dir);
    const onBad = checkOnBadImage(opts.onBadImage ?? 'error');
    const c = await cutSplits(listing, opts, onBad, 'both');
    const make = (samples: Sample[], name: SplitName) =>
      new DomainDataset(samples, listing.classNames, listing.classFolders, opts.domain, path.resolve(root), name, c.info, c.skipped, root);
    return { test: make(c.test, 'test'), train: make(c.train, 'train') };
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

  /**
   * Cuts a validation set off this dataset (typically a training split; never use the test split for choosing
   * epochs): `fraction` of each class's images, chosen by `seed`, at least one per class with 2 or more images
   * and never all of a class. Both parts keep this dataset's classes, domain and split record, marked as the
   * `rest` and `validation` of the cut, so a run trained on `rest` records how its data was cut.
   * @throws IpclipError `ERR_INVALID_ARGUMENT` for a fraction outside (0, 1) or a bad seed.
   */
  holdOut(fraction: number, seed: number): { rest: DomainDataset; validation: DomainDataset } {
    check(typeof fraction === 'number' && fraction > 0 && fraction < 1, `holdOut: fraction must be a number in (0, 1), got ${fraction}`);
    check(Number.isSafeInteger(seed) && seed >= 0, `holdOut: seed must be a non-negative integer, got ${seed}`);
    const byClass = this.classNames.map(() => [] as number[]);
    this.samples.forEach((s, i) => byClass[s.label]!.push(i));
    const held = new Set<number>();
    byClass.forEach((indices, c) => {
      if (indices.length < 2) return;
      const k = Math.min(indices.length - 1, Math.max(1, Math.round(fraction * indices.length)));
      for (const i of new Rng(seed).fork(`holdout/${c}`).shuffle(indices.slice()).slice(0, k)) held.add(i);
    });
    const part = (which: 'rest' | 'validation', keep: (i: number) => boolean) => new DomainDataset(
      this.samples.filter((_, i) => keep(i)), this.classNames, this.classFolders, this.domain, this.root, this.split,
      this.splitInfo && { ...this.splitInfo, heldOut: { fraction, seed, part: which } }, this.skipped, this.rootGiven);
    return { rest: part('rest', (i) => !held.has(i)), validation: part('validation', (i) => held.has(i)) };
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
    return new DomainDataset(out.samples, this.classNames, this.classFolders, this.domain, this.root, this.split, this.splitInfo, this.skipped, this.rootGiven);
  }

  private derive(samples: Sample[]): DomainDataset {
    return new DomainDataset(samples, this.classNames, this.classFolders, this.domain, this.root, this.split, this.splitInfo, this.skipped, this.rootGiven);
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
    if (!sameNames(d.classNames, first.classNames)) {
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

/**
 * The key that places an image in the split order ({@link SPLIT_RULE}): the first 16 hex digits of
 * SHA-256(`path-hash/1`, seed, domain, path relative to the domain folder with `/` separators), NUL-separated.
 * Keys of equal length compare as strings in numeric order.
 * @category Data
 */
export function splitKey(seed: number, domain: string, relPath: string): string {
  return createHash('sha256').update(`${SPLIT_RULE.name}/${SPLIT_RULE.version}\0${seed}\0${domain}\0${relPath}`).digest('hex').slice(0, 16);
}

/** A file's path relative to its domain folder, `/`-separated (what {@link splitKey} hashes). */
export function pathInDomain(root: string, domain: string, file: string): string {
  return path.relative(path.join(path.resolve(root), domain), path.resolve(file)).split(path.sep).join('/');
}

/**
 * Whether `file` (a path under `<root>/<domain>`) is, or would have been, in the training split described by
 * `info`: its key is at least the first training key. Exact for the files listed when the split was cut; a file
 * added later counts as training when its key falls in the training range.
 */
export function inTrainingSplit(info: SplitInfo, root: string, domain: string, file: string): boolean {
  if (info.trainFrom === null) return false;
  const rel = pathInDomain(root, domain, file);
  if (rel.startsWith('../') || rel === '..' || path.isAbsolute(rel)) return false;
  return splitKey(info.seed, domain, rel) >= info.trainFrom;
}

function checkOnBadImage(v: unknown): OnBadImage | null {
  if (v === undefined) return null;
  check(v === 'error' || v === 'skip', `onBadImage must be 'error' or 'skip', got ${String(v)}`);
  return v;
}

interface Cut {
  train: Sample[];
  test: Sample[];
  info: SplitInfo;
  skipped: BadImage[];
}

/** Cuts a listing into its splits by key (rule in {@link DomainDataset.fromFolder}), checking headers on the way. */
async function cutSplits(listing: DomainListing, opts: Omit<FolderOptions, 'split'>, onBad: OnBadImage | null,
  want: 'train' | 'test' | 'both'): Promise<Cut> {
  const seed = opts.seed ?? 0;
  check(Number.isSafeInteger(seed) && seed >= 0, `seed must be a non-negative integer, got ${seed}`);
  const keyed = listing.samples.map((s) => {
    const rel = path.relative(listing.dir, s.path!).split(path.sep).join('/');
    return { s, rel, key: splitKey(seed, listing.domain, rel) };
  }).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : byCodeUnit(a.rel, b.rel)));
  const n = keyed.length;
  const counts = splitCounts(n, opts);
  const sizes = resolveSizes(opts.sizes);
  const fixed = sizes !== null && n >= sizes.train + sizes.test;
  let test = keyed.slice(0, counts.nTest);
  let train = keyed.slice(n - counts.nTrain).reverse();
  let skipped: BadImage[] = [];
  if (onBad === 'error') {
    // Only what the run will read: the requested split(s).
    const used = want === 'test' ? test : want === 'train' ? train : [...test, ...train];
    const bad = await findBad(used.map((k) => k.s));
    if (bad.length > 0) throw new BadImagesError(bad, `domain '${listing.domain}' (${listing.dir})`);
  } else if (onBad === 'skip') {
    const badPaths = new Set<string>();
    const take = async (from: typeof keyed, need: number, taken: Set<string>) => {
      // Walk `from` in order, checking as many candidates at a time as are still needed.
      const out: typeof keyed = [];
      let at = 0;
      while (out.length < need && at < from.length) {
        const chunk = from.slice(at, at + (need - out.length)).filter((k) => !taken.has(k.s.path!));
        at += need - out.length;
        const bad = await findBad(chunk.map((k) => k.s));
        for (const b of bad) { badPaths.add(b.path); skipped.push(b); }
        for (const k of chunk) if (!badPaths.has(k.s.path!)) out.push(k);
      }
      return out;
    };
    if (fixed) {
      test = await take(keyed, sizes.test, new Set());
      const inTest = new Set(test.map((k) => k.s.path!));
      train = await take([...keyed].reverse(), sizes.train, inTest);
    }
    if (!fixed || test.length < sizes!.test || train.length < sizes!.train) {
      // Every image is used (or too many are bad to meet fixed sizes): check all, cut the readable ones.
      const seen = new Set(fixed ? [...test, ...train] : []);
      const rest = keyed.filter((k) => !badPaths.has(k.s.path!) && !seen.has(k));
      const bad = await findBad(rest.map((k) => k.s));
      for (const b of bad) { badPaths.add(b.path); skipped.push(b); }
      const good = keyed.filter((k) => !badPaths.has(k.s.path!));
      const c = splitCounts(good.length, opts);
      test = good.slice(0, c.nTest);
      train = good.slice(good.length - c.nTrain).reverse();
    }
    skipped = skipped.sort((a, b) => byCodeUnit(a.path, b.path));
  }
  const preset = typeof opts.sizes === 'string' ? opts.sizes : null;
  const info: SplitInfo = {
    rule: SPLIT_RULE.name, version: SPLIT_RULE.version, seed, sizes, preset,
    trainFraction: sizes === null ? (opts.trainFraction ?? 0.8) : null, onBadImage: onBad, listed: n,
    nTrain: train.length, nTest: test.length,
    trainFrom: train.length > 0 ? train[train.length - 1]!.key : null,
    testUpTo: test.length > 0 ? test[test.length - 1]!.key : null,
  };
  return { train: train.map((k) => k.s), test: test.map((k) => k.s), info, skipped };
}

function resolveSizes(sizes: FolderOptions['sizes']): DatasetSizes | null {
  if (sizes === undefined) return null;
  const s = typeof sizes === 'string' ? SPLIT_PRESETS[sizes] : sizes;
  return { train: s.train, test: s.test };
}

/** Header-checks samples with a path, a few at a time (off the event loop: sharp reads in its thread pool). */
async function findBad(samples: Sample[]): Promise<BadImage[]> {
  const files = samples.map((s) => s.path).filter((p): p is string => typeof p === 'string');
  const reasons = new Array<string | null>(files.length).fill(null);
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const i = next++;
      reasons[i] = await checkImageFile(files[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(16, files.length) }, worker));
  return files.flatMap((p, i) => (reasons[i] === null ? [] : [{ path: p, reason: reasons[i]! }]));
}

/**
 * A cheap check that a file is a readable image, without decoding it: the decoder's header read (format and
 * size, within the decoder's pixel limit) and, for PNG, JPEG and WebP, the end of the file (the IEND chunk, the
 * EOI marker within its last 4 KiB, the RIFF length), which catches truncated files.
 * @returns null when the file passes, else the reason.
 */
export async function checkImageFile(file: string): Promise<string | null> {
  let size: number;
  try {
    const st = await fs.stat(file);
    if (!st.isFile()) return 'not a file';
    size = st.size;
  } catch {
    return 'cannot be read';
  }
  if (size === 0) return 'empty (0 bytes)';
  let format: string | undefined;
  try {
    const m = await sharp(file, { limitInputPixels: false }).metadata();
    format = m.format;
    if (!m.width || !m.height) return 'no image size in its header';
    if (m.width * m.height > DEFAULT_MAX_PIXELS) return `${m.width}×${m.height} is over the limit of ${DEFAULT_MAX_PIXELS} pixels`;
  } catch (err) {
    return `not a readable image (${(err instanceof Error ? err.message : String(err)).split('\n')[0]})`;
  }
  const tailBytes = Math.min(size, 4096);
  const tail = Buffer.alloc(tailBytes);
  const head = Buffer.alloc(Math.min(size, 12));
  try {
    const h = await fs.open(file, 'r');
    try {
      await h.read(tail, 0, tailBytes, size - tailBytes);
      await h.read(head, 0, head.length, 0);
    } finally {
      await h.close();
    }
  } catch {
    return 'cannot be read';
  }
  if (format === 'png' && !tail.includes(PNG_IEND)) return 'truncated PNG (no IEND chunk at its end)';
  if (format === 'jpeg' && !tail.includes(JPEG_EOI)) return 'truncated JPEG (no end-of-image marker)';
  if (format === 'webp' && head.length >= 12 && head.toString('latin1', 0, 4) === 'RIFF' && head.readUInt32LE(4) + 8 > size) {
    return 'truncated WebP (shorter than its RIFF length)';
  }
  return null;
}

const PNG_IEND = Buffer.from([0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82]);
const JPEG_EOI = Buffer.from([0xff, 0xd9]);

interface DomainListing {
  dir: string;
  domain: string;
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
  return { dir, domain, classFolders, classNames: classFolders.map((c) => c.toLowerCase()), samples };
}

function checkClassNames(expected: string[], found: string[], dir: string): void {
  check(Array.isArray(expected), 'classNames must be an array of strings');
  const want = expected.map((c) => String(c).toLowerCase());
  if (!sameNames(want, found)) {
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
