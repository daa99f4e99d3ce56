/**
 * Style disguise (black box, no training): move each unauthorized image's low-level statistics towards those of
 * k authorized images, then ask the protected prompt. IP-CLIP's domain tokens are per-layer token means and
 * standard deviations, so an input that looks like the authorized domain in its low-level statistics is the
 * natural way around it. Three transforms, each on RGB pixels in [0, 1] (planes `[3, H, W]`):
 * - AdaIN in pixel space: each channel shifted and scaled to the target's per-channel mean and std;
 * - Fourier amplitude swap (the low-frequency square of half-width ⌊β·min(H, W)⌋ around DC): the target's
 *   amplitude there, the image's own phase everywhere;
 * - histogram matching: each channel's 8-bit levels mapped so that its CDF follows the target's.
 * The attacked prompt sees the result clamped to [0, 1] and normalised with CLIP's mean and std.
 */
import { CLIP_MEAN, CLIP_STD } from '../../image/decode.js';
import { check } from '../../core/errors.js';
import type { ImageTensor } from '../../core/tensor.js';

/**
 * The style transforms of the suite.
 * @category Attacks
 */
export type StyleMethod = 'adain' | 'fourier' | 'histogram';

/** Every style transform, in report order. */
export const STYLE_METHODS: readonly StyleMethod[] = ['adain', 'fourier', 'histogram'];

/**
 * Per-channel mean and population standard deviation of one image's planes `[3, H, W]`.
 * @category Attacks
 */
export function channelStats(img: Float32Array | Float64Array, hw: number): { mean: number[]; std: number[] } {
  const mean: number[] = [];
  const std: number[] = [];
  for (let c = 0; c < 3; c++) {
    let s = 0;
    for (let i = 0; i < hw; i++) s += img[c * hw + i]!;
    const m = s / hw;
    let v = 0;
    for (let i = 0; i < hw; i++) v += (img[c * hw + i]! - m) ** 2;
    mean.push(m);
    std.push(Math.sqrt(v / hw));
  }
  return { mean, std };
}

/**
 * Pixel AdaIN: `(x − μ_x) / σ_x · σ_t + μ_t` per channel (a flat channel keeps σ = 0 and takes μ_t). Unclamped.
 * @category Attacks
 */
export function adain(img: Float32Array, hw: number, target: { mean: number[]; std: number[] }): Float64Array {
  const { mean, std } = channelStats(img, hw);
  const out = new Float64Array(3 * hw);
  for (let c = 0; c < 3; c++) {
    const scale = std[c]! > 1e-12 ? target.std[c]! / std[c]! : 0;
    for (let i = 0; i < hw; i++) out[c * hw + i] = (img[c * hw + i]! - mean[c]!) * scale + target.mean[c]!;
  }
  return out;
}

/** A complex plane: real and imaginary parts, row-major `[H, W]`. */
export interface Spectrum {
  re: Float64Array;
  im: Float64Array;
}

const twiddles = new Map<number, { cos: Float64Array; sin: Float64Array }>();

/** cos and sin of 2πj/n, j = 0..n−1 (cached per n). */
function twiddle(n: number): { cos: Float64Array; sin: Float64Array } {
  let t = twiddles.get(n);
  if (!t) {
    t = { cos: new Float64Array(n), sin: new Float64Array(n) };
    for (let j = 0; j < n; j++) {
      t.cos[j] = Math.cos((2 * Math.PI * j) / n);
      t.sin[j] = Math.sin((2 * Math.PI * j) / n);
    }
    twiddles.set(n, t);
  }
  return t;
}

function dft1(re: Float64Array, im: Float64Array, n: number, stride: number, offset: number, sign: number, tmpRe: Float64Array, tmpIm: Float64Array): void {
  const tw = twiddle(n);
  for (let k = 0; k < n; k++) {
    let sr = 0;
    let si = 0;
    for (let t = 0; t < n; t++) {
      const j = (k * t) % n;
      const c = tw.cos[j]!;
      const s = sign * tw.sin[j]!;
      const xr = re[offset + t * stride]!;
      const xi = im[offset + t * stride]!;
      sr += xr * c - xi * s;
      si += xr * s + xi * c;
    }
    tmpRe[k] = sr;
    tmpIm[k] = si;
  }
  for (let k = 0; k < n; k++) {
    re[offset + k * stride] = tmpRe[k]!;
    im[offset + k * stride] = tmpIm[k]!;
  }
}

/**
 * The 2-D discrete Fourier transform of a real plane `[H, W]` (`inverse`: of a spectrum, divided by H·W), rows
 * then columns. O(H·W·(H + W)): plenty for CLIP-sized inputs.
 * @category Attacks
 */
export function dft2(re: Float64Array, im: Float64Array, h: number, w: number, inverse = false): Spectrum {
  const R = Float64Array.from(re);
  const I = Float64Array.from(im);
  const sign = inverse ? 1 : -1;
  const tr = new Float64Array(Math.max(h, w));
  const ti = new Float64Array(Math.max(h, w));
  for (let y = 0; y < h; y++) dft1(R, I, w, 1, y * w, sign, tr, ti);
  for (let x = 0; x < w; x++) dft1(R, I, h, w, x, sign, tr, ti);
  if (inverse) {
    for (let i = 0; i < h * w; i++) {
      R[i] = R[i]! / (h * w);
      I[i] = I[i]! / (h * w);
    }
  }
  return { re: R, im: I };
}

/** Whether frequency (ky, kx) of an H×W spectrum lies in the low band of half-width `b` (signed frequencies). */
export function inLowBand(ky: number, kx: number, h: number, w: number, b: number): boolean {
  const sy = Math.min(ky, h - ky);
  const sx = Math.min(kx, w - kx);
  return sy <= b && sx <= b;
}

/** The low band's half-width for a fraction β of the shorter side. */
export function bandHalfWidth(h: number, w: number, beta: number): number {
  return Math.floor(beta * Math.min(h, w));
}

/**
 * The amplitude spectrum `[3, H, W]` of an image's three planes.
 * @category Attacks
 */
export function amplitude(img: Float32Array | Float64Array, h: number, w: number): Float64Array {
  const hw = h * w;
  const out = new Float64Array(3 * hw);
  for (let c = 0; c < 3; c++) {
    const f = dft2(Float64Array.from(img.subarray(c * hw, (c + 1) * hw)), new Float64Array(hw), h, w);
    for (let i = 0; i < hw; i++) out[c * hw + i] = Math.hypot(f.re[i]!, f.im[i]!);
  }
  return out;
}

/**
 * Fourier amplitude swap: in the low band of half-width `b`, the image's amplitude becomes `targetAmplitude`'s
 * (`[3, H, W]`); its phase is kept at every frequency, and the amplitude outside the band too. Unclamped. The band
 * is symmetric, so the result stays real.
 * @category Attacks
 */
export function fourierSwap(img: Float32Array, h: number, w: number, targetAmplitude: Float64Array, b: number): Float64Array {
  const hw = h * w;
  const out = new Float64Array(3 * hw);
  for (let c = 0; c < 3; c++) {
    const f = dft2(Float64Array.from(img.subarray(c * hw, (c + 1) * hw)), new Float64Array(hw), h, w);
    for (let ky = 0; ky < h; ky++) {
      for (let kx = 0; kx < w; kx++) {
        if (!inLowBand(ky, kx, h, w, b)) continue;
        const i = ky * w + kx;
        const a = Math.hypot(f.re[i]!, f.im[i]!);
        const phase = a > 0 ? Math.atan2(f.im[i]!, f.re[i]!) : 0;
        const t = targetAmplitude[c * hw + i]!;
        f.re[i] = t * Math.cos(phase);
        f.im[i] = t * Math.sin(phase);
      }
    }
    const back = dft2(f.re, f.im, h, w, true);
    out.set(back.re, c * hw);
  }
  return out;
}

/**
 * Counts of the 256 8-bit levels of each channel (`[3 × 256]`) of images in [0, 1] (rounded to the nearest level).
 * @category Attacks
 */
export function levelHistogram(img: Float32Array | Float64Array, hw: number, into = new Float64Array(3 * 256)): Float64Array {
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < hw; i++) into[c * 256 + toLevel(img[c * hw + i]!)]! += 1;
  }
  return into;
}

function toLevel(v: number): number {
  return Math.min(255, Math.max(0, Math.round(v * 255)));
}

/**
 * Histogram matching per channel: level v goes to the smallest level u whose target CDF reaches the image's CDF
 * at v. Output in [0, 1] (levels / 255).
 * @category Attacks
 */
export function histogramMatch(img: Float32Array, hw: number, targetHistogram: Float64Array): Float64Array {
  const out = new Float64Array(3 * hw);
  const own = levelHistogram(img, hw);
  for (let c = 0; c < 3; c++) {
    const ownCdf = cdf(own.subarray(c * 256, (c + 1) * 256));
    const tCdf = cdf(targetHistogram.subarray(c * 256, (c + 1) * 256));
    const map = new Int32Array(256);
    let u = 0;
    for (let v = 0; v < 256; v++) {
      // Both CDFs are non-decreasing, so u only moves forward; the 1e-12 absorbs round-off in the sums.
      while (u < 255 && tCdf[u]! < ownCdf[v]! - 1e-12) u++;
      map[v] = u;
    }
    for (let i = 0; i < hw; i++) out[c * hw + i] = map[toLevel(img[c * hw + i]!)]! / 255;
  }
  return out;
}

function cdf(hist: Float64Array): Float64Array {
  const out = new Float64Array(256);
  let total = 0;
  for (let i = 0; i < 256; i++) total += hist[i]!;
  let s = 0;
  for (let i = 0; i < 256; i++) {
    s += hist[i]!;
    out[i] = total > 0 ? s / total : (i + 1) / 256;
  }
  return out;
}

/** CLIP-normalised planes `[3, S, S]` → RGB in [0, 1]. */
export function toPixels(x: Float32Array): Float32Array {
  const hw = x.length / 3;
  const out = new Float32Array(x.length);
  for (let c = 0; c < 3; c++) for (let i = 0; i < hw; i++) out[c * hw + i] = x[c * hw + i]! * CLIP_STD[c]! + CLIP_MEAN[c]!;
  return out;
}

/** RGB in [0, 1] (clamped here) → CLIP-normalised planes. */
export function fromPixels(p: Float64Array | Float32Array, into: Float32Array, offset = 0): void {
  const hw = p.length / 3;
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < hw; i++) into[offset + c * hw + i] = (Math.min(1, Math.max(0, p[c * hw + i]!)) - CLIP_MEAN[c]!) / CLIP_STD[c]!;
  }
}

/**
 * The target a style transform moves images towards, from k authorized images (CLIP-normalised tensor):
 * AdaIN: the mean over the k images of their per-channel means and stds; Fourier: their mean amplitude
 * spectrum; histogram: their pooled level histogram.
 * @category Attacks
 */
export interface StyleTarget {
  method: StyleMethod;
  apply(img: Float32Array): Float64Array;
}

/**
 * Builds a style transform towards the given authorized images (`[k, 3, S, S]`, CLIP-normalised).
 * @category Attacks
 */
export function styleTarget(method: StyleMethod, authorized: ImageTensor, opts: { beta?: number } = {}): StyleTarget {
  const [k, c, h, w] = authorized.shape as [number, number, number, number];
  check(k >= 1 && c === 3, 'styleTarget: needs [k ≥ 1, 3, H, W] authorized images');
  const hw = h * w;
  const images = Array.from({ length: k }, (_, i) => toPixels(authorized.data.subarray(i * 3 * hw, (i + 1) * 3 * hw)));
  if (method === 'adain') {
    const mean = [0, 0, 0];
    const std = [0, 0, 0];
    for (const img of images) {
      const s = channelStats(img, hw);
      for (let ch = 0; ch < 3; ch++) {
        mean[ch]! += s.mean[ch]! / k;
        std[ch]! += s.std[ch]! / k;
      }
    }
    return { method, apply: (img) => adain(img, hw, { mean, std }) };
  }
  if (method === 'fourier') {
    const beta = opts.beta ?? 0.1;
    check(beta > 0 && beta < 0.5, `styleTarget: beta must be in (0, 0.5), got ${beta}`);
    const amp = new Float64Array(3 * hw);
    for (const img of images) {
      const a = amplitude(img, h, w);
      for (let i = 0; i < amp.length; i++) amp[i]! += a[i]! / k;
    }
    const b = bandHalfWidth(h, w, beta);
    return { method, apply: (img) => fourierSwap(img, h, w, amp, b) };
  }
  check(method === 'histogram', `unknown style method '${String(method)}' (${STYLE_METHODS.join(', ')})`);
  const hist = new Float64Array(3 * 256);
  for (const img of images) levelHistogram(img, hw, hist);
  return { method, apply: (img) => histogramMatch(img, hw, hist) };
}

/**
 * Every image of a CLIP-normalised batch through a style transform (pixels, transform, clamp, normalise).
 * @category Attacks
 */
export function disguise(images: ImageTensor, target: StyleTarget): ImageTensor {
  const [n, c, h, w] = images.shape as [number, number, number, number];
  const plane = c * h * w;
  const out = new Float32Array(images.data.length);
  for (let i = 0; i < n; i++) {
    const px = toPixels(images.data.subarray(i * plane, (i + 1) * plane));
    fromPixels(target.apply(px), out, i * plane);
  }
  return { data: out, shape: [n, c, h, w] };
}
