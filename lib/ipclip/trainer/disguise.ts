/**
 * The disguised-unauthorized defence (`disguisedUnauthorized`, beyond the paper; docs/method.md): before a
 * target-specified fit, each unauthorized training image also enters the unauthorized stream disguised as the
 * authorized domain, with the black-box style transforms of the attack suite (lib/ipclip/attacks/style.ts): pixel
 * AdaIN, the Fourier amplitude swap and histogram matching towards k authorized training images. Every copy draws
 * its own transform, k and strength, so the prompt learns to refuse the whole family rather than one setting of it;
 * the disguised copies are ordinary U samples (labels kept) and take every unauthorized-side loss term and the
 * unauthorized bank.
 */
import sharp from 'sharp';
import { check } from '../../core/errors.js';
import { assertOneOf, assertPositiveInteger, is, show } from '../../core/is.js';
import { Rng } from '../../core/rng.js';
import { DomainDataset, type Sample } from '../../data/dataset.js';
import { loadImageSet, pick, type ImageSet } from '../attacks/common.js';
import { STYLE_METHODS, styleTarget, toPixels, type StyleMethod, type StyleTarget } from '../attacks/style.js';

/**
 * Settings of the disguised-unauthorized defence ({@link TrainerOptions.disguisedUnauthorized}); `true` takes every
 * default.
 * @category Training
 */
export interface DisguiseOptions {
  /** Disguised copies of each unauthorized training image added to the unauthorized stream (default 1). */
  copies?: number;
  /** Each copy aims at k authorized training images, k drawn uniformly from 1…maxK (default 8, the attack's k). */
  maxK?: number;
  /**
   * Each copy is `(1 − α)·x + α·T(x)` in pixels, α drawn uniformly from [minStrength, 1] (default 0.5): partial
   * disguises too, so that an attacker cannot slip under the defence by disguising less.
   */
  minStrength?: number;
  /** The transforms drawn from, uniformly (default all: adain, fourier, histogram). */
  methods?: StyleMethod[];
  /** The Fourier swap's band, half-width / side (default 0.1, the attack's). */
  fourierBeta?: number;
}

/**
 * {@link DisguiseOptions} with the defaults filled in (what a run records in its checkpoints).
 * @category Training
 */
export interface ResolvedDisguise {
  copies: number;
  maxK: number;
  minStrength: number;
  methods: StyleMethod[];
  fourierBeta: number;
}

/** The defaults of {@link DisguiseOptions}. */
export const DEFAULT_DISGUISE: Readonly<ResolvedDisguise> = Object.freeze({
  copies: 1, maxK: 8, minStrength: 0.5, methods: [...STYLE_METHODS], fourierBeta: 0.1,
});

/**
 * `true` / an options object → the resolved settings; `false` / undefined → null (the defence off).
 * @throws IpclipError `ERR_INVALID_ARGUMENT` naming the bad field.
 */
export function resolveDisguise(v: boolean | DisguiseOptions | undefined): ResolvedDisguise | null {
  if (v === undefined || v === false) return null;
  if (v === true) return { ...DEFAULT_DISGUISE, methods: [...DEFAULT_DISGUISE.methods] };
  check(v !== null && typeof v === 'object' && !Array.isArray(v), `disguisedUnauthorized must be true, false or an options object, got ${show(v)}`);
  const out: ResolvedDisguise = { ...DEFAULT_DISGUISE, ...v, methods: [...(v.methods ?? DEFAULT_DISGUISE.methods)] };
  assertPositiveInteger(out.copies, 'disguisedUnauthorized.copies', 64);
  assertPositiveInteger(out.maxK, 'disguisedUnauthorized.maxK', 4096);
  check(is.finiteNumber(out.minStrength) && out.minStrength > 0 && out.minStrength <= 1,
    `disguisedUnauthorized.minStrength must be in (0, 1], got ${show(out.minStrength)}`);
  check(out.methods.length > 0, 'disguisedUnauthorized.methods must be a non-empty list');
  for (const m of out.methods) assertOneOf(m, 'disguisedUnauthorized.methods', STYLE_METHODS);
  check(is.finiteNumber(out.fourierBeta) && out.fourierBeta > 0 && out.fourierBeta < 0.5,
    `disguisedUnauthorized.fourierBeta must be in (0, 0.5), got ${show(out.fourierBeta)}`);
  return out;
}

/**
 * One disguise: `(1 − strength)·x + strength·T(x)` on RGB pixels in [0, 1] (`[3, H, W]`), clamped to [0, 1].
 * @category Training
 */
export function blendDisguise(pixels: Float32Array, target: StyleTarget, strength: number): Float64Array {
  const t = target.apply(pixels);
  const out = new Float64Array(t.length);
  for (let i = 0; i < t.length; i++) out[i] = Math.min(1, Math.max(0, (1 - strength) * pixels[i]! + strength * t[i]!));
  return out;
}

/** What one disguised copy drew. */
export interface DisguiseDraw {
  /** Index of the unauthorized image disguised. */
  source: number;
  method: StyleMethod;
  /** Indices of the authorized images aimed at (k = their count). */
  authorized: number[];
  strength: number;
}

/**
 * The draws of every disguised copy (a pure function of `seed`): copy c of image i is entry `c·n + i`.
 * @category Training
 */
export function disguiseDraws(n: number, nAuthorized: number, d: ResolvedDisguise, seed: number): DisguiseDraw[] {
  check(nAuthorized >= 1, 'the disguise needs at least one authorized image');
  const rng = new Rng(seed).fork('disguised-unauthorized');
  const out: DisguiseDraw[] = [];
  for (let c = 0; c < d.copies; c++) {
    for (let i = 0; i < n; i++) {
      const method = d.methods[rng.int(d.methods.length)]!;
      const k = Math.min(nAuthorized, 1 + rng.int(d.maxK));
      // k distinct authorized images: the first k of a partial Fisher–Yates shuffle.
      const idx = Array.from({ length: nAuthorized }, (_, j) => j);
      for (let j = 0; j < k; j++) {
        const r = j + rng.int(nAuthorized - j);
        [idx[j], idx[r]] = [idx[r]!, idx[j]!];
      }
      out.push({ source: i, method, authorized: idx.slice(0, k), strength: rng.uniform(d.minStrength, 1) });
    }
  }
  return out;
}

/** RGB planes in [0, 1] → lossless PNG bytes (8-bit, rounded). */
export async function planesToPng(pixels: Float64Array | Float32Array, height: number, width: number): Promise<Buffer> {
  const hw = height * width;
  const raw = Buffer.alloc(3 * hw);
  for (let i = 0; i < hw; i++) {
    for (let c = 0; c < 3; c++) raw[3 * i + c] = Math.round(255 * Math.min(1, Math.max(0, pixels[c * hw + i]!)));
  }
  return sharp(raw, { raw: { width, height, channels: 3 } }).png({ compressionLevel: 1 }).toBuffer();
}

/**
 * The disguised copies of in-memory sets (CLIP-normalised `[N, 3, S, S]`, CLIP's test transform) as PNG samples,
 * in {@link disguiseDraws} order, each with its source image's label.
 */
export async function disguisedCopies(authorized: ImageSet, unauthorized: ImageSet, d: ResolvedDisguise, seed: number): Promise<{ samples: Sample[]; draws: DisguiseDraw[] }> {
  const [n, , h, w] = unauthorized.images.shape as [number, number, number, number];
  const plane = 3 * h * w;
  const draws = disguiseDraws(n, authorized.labels.length, d, seed);
  const samples: Sample[] = [];
  for (const draw of draws) {
    const target = styleTarget(draw.method, pick(authorized, draw.authorized).images, { beta: d.fourierBeta });
    const px = toPixels(unauthorized.images.data.subarray(draw.source * plane, (draw.source + 1) * plane));
    samples.push({ buffer: await planesToPng(blendDisguise(px, target, draw.strength), h, w), label: unauthorized.labels[draw.source]! });
  }
  return { samples, draws };
}

/**
 * The unauthorized training set with its disguised copies appended: its own samples first (unchanged), then
 * `copies × |U|` disguised ones (at CLIP's input size, as the attack's transforms see them), same domain and classes.
 * @throws IpclipError loader errors (an unreadable image).
 */
export async function withDisguisedUnauthorized(authorized: DomainDataset, unauthorized: DomainDataset, d: ResolvedDisguise,
  opts: { size: number; seed: number; workers?: number }): Promise<DomainDataset> {
  const load = { ...(opts.workers !== undefined ? { workers: opts.workers } : {}) };
  const a = await loadImageSet(authorized, opts.size, load);
  const u = await loadImageSet(unauthorized, opts.size, load);
  const { samples } = await disguisedCopies(a, u, d, opts.seed);
  const domain = unauthorized.domain;
  return DomainDataset.fromSamples([...unauthorized.samples, ...samples.map((s) => ({ ...s, domain }))], unauthorized.classNames, { domain });
}
