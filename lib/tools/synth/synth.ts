/**
 * SynthDomains: a small multi-domain image dataset that ipclip renders itself (no download needed).
 * The same object classes appear in four STYLES (photo, clipart, sketch, product) — a stand-in for
 * Office-Home, where domains differ in style, not content — so a small CLIP can be trained on it and
 * IP-CLIP can protect one domain against another.
 *
 * Layout: `<out>/<domain>/<class>/<class>_<iiii>.png` plus `<out>/synth.json` (the manifest, written last).
 * Image `i` of (domain, class) depends only on (seed, domain, class, i), so any subset is reproducible.
 *
 * Captions read "a {domainWord} of a {colour} {class}." with domain words photo → "photo",
 * clipart → "clipart", sketch → "sketch", product → "product photo", and "an" before a vowel
 * ("a photo of an orange star."). Sketches are drawn in grey graphite, so their colour is not visible
 * and their captions name none: "a sketch of a star.".
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { IpclipError, check } from '../../core/errors.js';
import { Rng } from '../../core/rng.js';
import { is, sameNames } from '../../core/is.js';
import { writeFileAtomic } from '../../core/fs.js';
import { drawDomain, type SynthDomain } from './draw.js';
import { COLOUR_NAMES } from './palette.js';
import { SHAPE_NAMES } from './shapes.js';

export type { SynthDomain } from './draw.js';

/**
 * Bumped whenever drawing changes, so cached datasets from older code are regenerated.
 * @category SynthDomains
 */
export const SYNTH_VERSION = 1;

/**
 * The default classes, in order.
 * @category SynthDomains
 */
export const SYNTH_CLASSES: readonly string[] = Object.freeze([
  'circle', 'square', 'triangle', 'star', 'heart', 'arrow', 'cross', 'ring', 'moon', 'lightning',
]);

/**
 * The four domains, in order.
 * @category SynthDomains
 */
export const SYNTH_DOMAINS: readonly SynthDomain[] = Object.freeze(['photo', 'clipart', 'sketch', 'product'] as SynthDomain[]);

/**
 * Colour names objects are painted in (and captions use).
 * @category SynthDomains
 */
export const SYNTH_COLOURS: readonly string[] = Object.freeze([...COLOUR_NAMES]);

/**
 * The word each domain uses in captions.
 * @category SynthDomains
 */
export const SYNTH_DOMAIN_WORDS: Readonly<Record<SynthDomain, string>> = Object.freeze({
  photo: 'photo', clipart: 'clipart', sketch: 'sketch', product: 'product photo',
});

const MANIFEST = 'synth.json';

function article(word: string): string {
  return /^[aeiou]/i.test(word) ? 'an' : 'a';
}

function checkDomain(domain: unknown): asserts domain is SynthDomain {
  check(typeof domain === 'string' && (SYNTH_DOMAINS as readonly string[]).includes(domain),
    `unknown domain ${JSON.stringify(domain)}; expected one of ${SYNTH_DOMAINS.join(', ')}`);
}

function checkClass(cls: unknown): asserts cls is string {
  check(typeof cls === 'string' && SHAPE_NAMES.includes(cls),
    `unknown class ${JSON.stringify(cls)}; expected one of ${SHAPE_NAMES.join(', ')}`);
}

function checkSize(size: unknown): asserts size is number {
  check(Number.isInteger(size) && (size as number) >= 16 && (size as number) <= 1024,
    `size must be an integer from 16 to 1024, got ${String(size)}`);
}

/**
 * The caption for an image: `"a {domainWord} of a {colour} {class}."`, e.g. `captionFor('product', 'star',
 * 'red')` → `"a product photo of a red star."`. A `null`/omitted colour leaves the colour word out (sketches).
 * @category SynthDomains
 */
export function captionFor(domain: SynthDomain, cls: string, colour?: string | null): string {
  checkDomain(domain);
  check(typeof cls === 'string' && cls.length > 0, 'class must be a non-empty string');
  check(colour == null || (typeof colour === 'string' && SYNTH_COLOURS.includes(colour)),
    `unknown colour ${JSON.stringify(colour)}; expected one of ${SYNTH_COLOURS.join(', ')}`);
  const word = SYNTH_DOMAIN_WORDS[domain];
  const thing = colour ? `${colour} ${cls}` : cls;
  return `${article(word)} ${word} of ${article(thing)} ${thing}.`;
}

/**
 * Renders one `size`×`size` RGB PNG of `cls` in the style of `domain`, with all randomness (position,
 * scale, rotation, colour, texture) drawn from `rng`. `colour` is the palette name shown (null for sketch).
 * @category SynthDomains
 */
export async function renderSynthImage(
  domain: SynthDomain, cls: string, rng: Rng, size = 64,
): Promise<{ png: Buffer; caption: string; colour: string | null }> {
  checkDomain(domain);
  checkClass(cls);
  checkSize(size);
  check(rng instanceof Rng, 'rng must be an Rng');
  const { png, colour } = await drawDomain(domain, cls, rng, size);
  return { png, caption: captionFor(domain, cls, colour), colour };
}

/**
 * Options for {@link generateSynthDomains}.
 * @category SynthDomains
 */
export interface SynthOptions {
  /** Output folder (created if missing). */
  out: string;
  /** Images per (domain, class); a positive integer. */
  perClass: number;
  /** Seed (integer 0 … 2³²−1); default 0. */
  seed?: number;
  /** Image side in pixels (16 … 1024); default 64. */
  size?: number;
  /** Classes to draw, in order; default {@link SYNTH_CLASSES}. */
  classes?: readonly string[];
  /** Domains to draw, in order; default {@link SYNTH_DOMAINS}. */
  domains?: readonly SynthDomain[];
  /** How many images are rendered at once (sharp renders on its own thread pool); default 4. */
  concurrency?: number;
  /** Called after each written image. */
  onProgress?: (done: number, total: number) => void;
  /** Stops generation with `ERR_ABORTED` (the manifest is then not written). */
  signal?: AbortSignal;
}

/**
 * What {@link generateSynthDomains} produced (or found).
 * @category SynthDomains
 */
export interface SynthResult {
  root: string;
  classes: string[];
  domains: SynthDomain[];
  /** Number of images. */
  count: number;
  /** True when a complete dataset with the same parameters was already there and nothing was written. */
  reused: boolean;
}

/**
 * The manifest written to `<out>/synth.json`.
 * @category SynthDomains
 */
export interface SynthManifest {
  version: number;
  seed: number;
  size: number;
  perClass: number;
  classes: string[];
  domains: SynthDomain[];
  /** `"<domain>/<class>/<file>"` → caption. */
  captions: Record<string, string>;
}

/**
 * The file name of image `i` of `cls`.
 * @category SynthDomains
 */
export function synthFileName(cls: string, i: number): string {
  return `${cls}_${String(i).padStart(4, '0')}.png`;
}

function validateList<T extends string>(value: unknown, what: string, known: readonly string[]): T[] {
  check(Array.isArray(value) && value.length > 0, `${what} must be a non-empty array`);
  for (const v of value) {
    check(typeof v === 'string' && known.includes(v), `unknown ${what.replace(/es$|s$/, '')} ${JSON.stringify(v)}; expected one of ${known.join(', ')}`);
  }
  check(new Set(value).size === value.length, `${what} must not repeat`);
  return [...value] as T[];
}

function sameList(a: unknown, b: readonly string[]): boolean {
  return is.stringList(a) && sameNames(a, b);
}

/** Reads the manifest, or null when it is missing or unreadable. */
async function readManifest(root: string): Promise<SynthManifest | null> {
  try {
    const parsed = JSON.parse(await fs.readFile(path.join(root, MANIFEST), 'utf8'));
    return parsed && typeof parsed === 'object' ? parsed as SynthManifest : null;
  } catch {
    return null;
  }
}

async function isFile(file: string): Promise<boolean> {
  try {
    const st = await fs.stat(file);
    return st.isFile() && st.size > 0;
  } catch {
    return false;
  }
}

/**
 * Removes images a previous (other or interrupted) run left behind, so a dataset never mixes runs. Only
 * files this module names are touched: `<known domain>/<known class>/<class>_<digits>.png` and temp files.
 */
async function removeOldImages(root: string): Promise<void> {
  for (const domain of SYNTH_DOMAINS) {
    for (const cls of SHAPE_NAMES) {
      const dir = path.join(root, domain, cls);
      let names: string[];
      try {
        names = await fs.readdir(dir);
      } catch {
        continue;
      }
      const ours = new RegExp(`^${cls}_\\d{4,}\\.png(\\.tmp-\\d+-\\d+)?$`);
      await Promise.all(names.filter((n) => ours.test(n)).map((n) => fs.rm(path.join(dir, n), { force: true })));
      await fs.rmdir(dir).catch(() => undefined); // only succeeds when empty
    }
    await fs.rmdir(path.join(root, domain)).catch(() => undefined);
  }
}

/**
 * Renders the dataset into `out` (or reuses it). A complete dataset with the same version, seed, size,
 * perClass, classes and domains is detected from its manifest and returned at once (`reused: true`);
 * anything else — a different parameter, a missing manifest after an interrupted run, a missing image —
 * is regenerated from scratch. Images are written atomically and the manifest last.
 * @category SynthDomains
 */
export async function generateSynthDomains(options: SynthOptions): Promise<SynthResult> {
  check(options && typeof options === 'object', 'options must be an object');
  const { out, perClass, seed = 0, size = 64, concurrency = 4, onProgress, signal } = options;
  check(typeof out === 'string' && out.length > 0, 'out must be a non-empty path');
  check(Number.isInteger(perClass) && perClass >= 1 && perClass <= 100_000, `perClass must be an integer from 1 to 100000, got ${String(perClass)}`);
  check(Number.isInteger(seed) && seed >= 0 && seed <= 0xffffffff, `seed must be an integer from 0 to 4294967295, got ${String(seed)}`);
  checkSize(size);
  check(Number.isInteger(concurrency) && concurrency >= 1 && concurrency <= 256, `concurrency must be an integer from 1 to 256, got ${String(concurrency)}`);
  check(onProgress === undefined || typeof onProgress === 'function', 'onProgress must be a function');
  const classes = validateList<string>(options.classes ?? SYNTH_CLASSES, 'classes', SHAPE_NAMES);
  const domains = validateList<SynthDomain>(options.domains ?? SYNTH_DOMAINS, 'domains', SYNTH_DOMAINS);
  const root = path.resolve(out);
  const count = perClass * classes.length * domains.length;

  const jobs: { domain: SynthDomain; cls: string; i: number; key: string }[] = [];
  for (const domain of domains) for (const cls of classes) for (let i = 0; i < perClass; i++) {
    jobs.push({ domain, cls, i, key: `${domain}/${cls}/${synthFileName(cls, i)}` });
  }

  const old = await readManifest(root);
  if (old && old.version === SYNTH_VERSION && old.seed === seed && old.size === size && old.perClass === perClass &&
      sameList(old.classes, classes) && sameList(old.domains, domains) && old.captions && typeof old.captions === 'object' &&
      Object.keys(old.captions).length === count && jobs.every((j) => typeof old.captions[j.key] === 'string')) {
    const present = await Promise.all(jobs.map((j) => isFile(path.join(root, j.key))));
    if (present.every(Boolean)) return { root, classes, domains, count, reused: true };
  }

  try {
    // The manifest goes first, so an interruption from here on leaves a dataset that is never reused.
    await fs.rm(path.join(root, MANIFEST), { force: true });
    await removeOldImages(root);
    for (const domain of domains) for (const cls of classes) await fs.mkdir(path.join(root, domain, cls), { recursive: true });
  } catch (err) {
    if (err instanceof IpclipError) throw err;
    throw new IpclipError('ERR_IO', `cannot prepare ${root}: ${(err as Error).message}`, { cause: err });
  }

  const base = new Rng(seed);
  const captions: Record<string, string> = {};
  let next = 0;
  let done = 0;
  let failed = false; // once one render fails, the other workers stop instead of writing on
  const worker = async (): Promise<void> => {
    try {
      while (next < jobs.length && !failed) {
        if (signal?.aborted) throw new IpclipError('ERR_ABORTED', 'SynthDomains generation was aborted');
        const job = jobs[next++];
        const rng = base.fork(`${job.domain}/${job.cls}/${job.i}`);
        const { png, caption } = await renderSynthImage(job.domain, job.cls, rng, size);
        await writeFileAtomic(path.join(root, job.key), png);
        captions[job.key] = caption;
        done++;
        onProgress?.(done, count);
      }
    } catch (err) {
      failed = true;
      throw err;
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, jobs.length) }, worker));

  // Captions in job order (not completion order) so the manifest is byte-identical for a seed.
  const ordered: Record<string, string> = {};
  for (const j of jobs) ordered[j.key] = captions[j.key];
  const manifest: SynthManifest = { version: SYNTH_VERSION, seed, size, perClass, classes, domains, captions: ordered };
  await writeFileAtomic(path.join(root, MANIFEST), JSON.stringify(manifest, null, 1) + '\n');
  return { root, classes, domains, count, reused: false };
}

/**
 * Options for {@link renderContactSheet}.
 * @category SynthDomains
 */
export interface ContactSheetOptions {
  /** Pixel side of each cell; default twice the image size (at least 96). */
  cell?: number;
  /** Which image of each (domain, class) to show; default 0. */
  index?: number;
  /** Draw domain and class names around the grid; default true. */
  labels?: boolean;
}

/**
 * Writes a PNG overview of a generated dataset at `root` to `file`: one row per domain, one column per
 * class, showing image `index` of each, so a person can check at a glance that the classes are
 * recognisable and the domains look different. Returns the sheet's size.
 * @category SynthDomains
 */
export async function renderContactSheet(root: string, file: string, options: ContactSheetOptions = {}): Promise<{ file: string; width: number; height: number }> {
  check(typeof root === 'string' && root.length > 0, 'root must be a non-empty path');
  check(typeof file === 'string' && file.length > 0, 'file must be a non-empty path');
  const manifest = await readManifest(root);
  if (!manifest) throw new IpclipError('ERR_FILE_NOT_FOUND', `no readable ${MANIFEST} in ${root}`);
  const { index = 0, labels = true } = options;
  const cell = options.cell ?? Math.max(96, manifest.size * 2);
  check(Number.isInteger(cell) && cell >= 8 && cell <= 1024, 'cell must be an integer from 8 to 1024');
  check(Number.isInteger(index) && index >= 0 && index < manifest.perClass, `index must be an integer from 0 to ${manifest.perClass - 1}`);
  const pad = 4;
  const left = labels ? 90 : 0;
  const top = labels ? 20 : 0;
  const width = left + manifest.classes.length * (cell + pad) + pad;
  const height = top + manifest.domains.length * (cell + pad) + pad;
  const tiles: sharp.OverlayOptions[] = [];
  for (const [r, domain] of manifest.domains.entries()) {
    for (const [c, cls] of manifest.classes.entries()) {
      const src = path.join(root, domain, cls, synthFileName(cls, index));
      // Nearest-neighbour keeps the real pixels visible instead of smoothing them away.
      const input = await sharp(src).resize(cell, cell, { kernel: 'nearest' }).png().toBuffer()
        .catch((err: Error) => { throw new IpclipError('ERR_BAD_IMAGE', `cannot read ${src}: ${err.message}`, { cause: err }); });
      tiles.push({ input, left: left + pad + c * (cell + pad), top: top + pad + r * (cell + pad) });
    }
  }
  if (labels) {
    const esc = (s: string) => s.replace(/[<>&"]/g, (ch) => `&#${ch.charCodeAt(0)};`);
    const text = [
      ...manifest.domains.map((d, r) => `<text x="4" y="${top + pad + r * (cell + pad) + cell / 2 + 4}">${esc(d)}</text>`),
      ...manifest.classes.map((c, i) => `<text x="${left + pad + i * (cell + pad) + 2}" y="14">${esc(c)}</text>`),
    ].join('');
    tiles.push({ input: Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12" fill="#222">${text}</svg>`), left: 0, top: 0 });
  }
  try {
    await fs.mkdir(path.dirname(path.resolve(file)), { recursive: true });
    await sharp({ create: { width, height, channels: 3, background: '#d8d8d8' } }).composite(tiles).png().toFile(file);
  } catch (err) {
    throw new IpclipError('ERR_IO', `cannot write ${file}: ${(err as Error).message}`, { cause: err });
  }
  return { file, width, height };
}
