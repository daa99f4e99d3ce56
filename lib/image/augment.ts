/**
 * Augmentations for IP-CLIP's streams (method §5–6): the ownership watermark, torchvision's RandomResizedCrop and
 * flip, and the strong augmentation (RandAugment over 14 PIL operations, then Cutout).
 *
 * Every pixel operation reproduces what PIL's ImageOps / ImageEnhance / Image.transform compute on 8-bit RGB,
 * including their integer rounding, so that results match the Python reference. All randomness comes from
 * the {@link Rng} passed in: the same seed gives the same image.
 */
import { check } from '../core/errors.js';
import { checkRawImage, roundHalfEven, type RawImage } from './decode.js';
import { cropRaw, resizeImage, resizeShorterCenterCrop } from './preprocess.js';
import type { Rng } from '../core/rng.js';

/** An RGB triple used to fill pixels that come from outside the image. */
export type Rgb = readonly [number, number, number];

/**
 * Fill for Rotate, Shear and Translate: mid grey (128,128,128), the project's choice. The release's
 * RandAugment (FixMatch-derived) leaves PIL's default, black. Grey sits near CLIP's mean colour, so uncovered
 * areas normalise to about 0 (≈ +0.1) rather than to ≈ −1.8 for black, and add no strong dark border.
 * Every geometric op also takes an explicit `fill` for reproducing the black-filled release.
 */
export const GEOMETRIC_FILL: Rgb = [128, 128, 128];

function blank(width: number, height: number): RawImage {
  return { data: new Uint8Array(width * height * 3), width, height };
}

function applyLut(img: RawImage, lut: ArrayLike<number>, perChannel = false): RawImage {
  const out = blank(img.width, img.height);
  const d = img.data;
  for (let i = 0; i < d.length; i++) out.data[i] = perChannel ? lut[(i % 3) * 256 + d[i]] : lut[d[i]];
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Watermark, flip, crops

/**
 * The ownership/authorization watermark: every pixel whose row or column index is even becomes white;
 * only pixels at (odd row, odd column) keep their values. Apply it at the image's original resolution.
 */
export function watermark(img: RawImage): RawImage {
  checkRawImage(img);
  const out = { data: img.data.slice(), width: img.width, height: img.height };
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < img.width; x++) {
      if (y % 2 === 0 || x % 2 === 0) out.data.fill(255, (y * img.width + x) * 3, (y * img.width + x) * 3 + 3);
    }
  }
  return out;
}

/** Mirrors the image left to right. */
export function hflip(img: RawImage): RawImage {
  checkRawImage(img);
  const out = blank(img.width, img.height);
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < img.width; x++) {
      const from = (y * img.width + x) * 3, to = (y * img.width + img.width - 1 - x) * 3;
      out.data[to] = img.data[from]; out.data[to + 1] = img.data[from + 1]; out.data[to + 2] = img.data[from + 2];
    }
  }
  return out;
}

/** The `w`×`h` rectangle whose top-left corner is (`x`, `y`); it must lie inside the image (`ERR_INVALID_ARGUMENT`). */
export function crop(img: RawImage, x: number, y: number, w: number, h: number): RawImage {
  checkRawImage(img);
  const out = cropRaw(img, x, y, w, h);
  return out === img ? { data: img.data.slice(), width: w, height: h } : out;
}

/** A crop rectangle: top-left corner (`x`, `y`) and size `w`×`h`. */
export interface Box { x: number; y: number; w: number; h: number }

/** Options of {@link randomResizedCrop}: area fraction and aspect-ratio (w/h) ranges. */
export interface RandomResizedCropOptions { scale?: [number, number]; ratio?: [number, number] }

/**
 * torchvision's RandomResizedCrop.get_params: up to 10 tries of an area fraction uniform in `scale` and a
 * log-uniform aspect ratio in `ratio`; a try succeeds when the rounded crop fits, and its corner is then
 * uniform. Otherwise the centred crop of the whole image, its ratio clamped to `ratio`.
 */
export function randomResizedCropBox(width: number, height: number, rng: Rng, opts: RandomResizedCropOptions = {}): Box {
  const [s0, s1] = opts.scale ?? [0.08, 1];
  const [r0, r1] = opts.ratio ?? [3 / 4, 4 / 3];
  check(s0 > 0 && s0 <= s1 && r0 > 0 && r0 <= r1, `bad RandomResizedCrop scale [${s0}, ${s1}] or ratio [${r0}, ${r1}]`);
  const area = width * height;
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * rng.uniform(s0, s1);
    const aspect = Math.exp(rng.uniform(Math.log(r0), Math.log(r1)));
    const w = roundHalfEven(Math.sqrt(targetArea * aspect));
    const h = roundHalfEven(Math.sqrt(targetArea / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const y = rng.int(height - h + 1);
      const x = rng.int(width - w + 1);
      return { x, y, w, h };
    }
  }
  const inRatio = width / height;
  let w = width, h = height;
  if (inRatio < r0) h = roundHalfEven(w / r0);
  else if (inRatio > r1) w = roundHalfEven(h * r1);
  return { x: Math.floor((width - w) / 2), y: Math.floor((height - h) / 2), w, h };
}

/** RandomResizedCrop: a {@link randomResizedCropBox} crop, resized (bicubic, antialiased) to `size`×`size`. */
export async function randomResizedCrop(img: RawImage, size: number, rng: Rng, opts: RandomResizedCropOptions = {}): Promise<RawImage> {
  checkRawImage(img);
  check(Number.isInteger(size) && size > 0, `size must be a positive integer (got ${size})`);
  const b = randomResizedCropBox(img.width, img.height, rng, opts);
  return resizeImage(cropRaw(img, b.x, b.y, b.w, b.h), size, size);
}

// ---------------------------------------------------------------------------------------------------------
// PIL's colour operations

/** PIL's RGB → L: ITU-R 601-2 luma in 16-bit fixed point, rounded: (19595R + 38470G + 7471B + 2^15) >> 16. */
export function luma(r: number, g: number, b: number): number {
  return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
}

/**
 * PIL's Image.blend(degenerate, img, factor) on 8-bit data: `deg + factor·(img − deg)` in float32, truncated;
 * clipped to 0..255 when the factor extrapolates (outside [0, 1]).
 */
function blend(degenerate: Uint8Array, img: RawImage, factor: number): RawImage {
  const alpha = Math.fround(factor);
  const out = blank(img.width, img.height);
  const extrapolate = !(alpha >= 0 && alpha <= 1);
  for (let i = 0; i < img.data.length; i++) {
    const a = degenerate[i];
    const v = Math.fround(a + Math.fround(alpha * (img.data[i] - a)));
    out.data[i] = extrapolate ? (v <= 0 ? 0 : v >= 255 ? 255 : Math.trunc(v)) : Math.trunc(v);
  }
  return out;
}

/** ImageEnhance.Brightness: blend with black; `factor` 0 gives black, 1 the original. */
export function brightness(img: RawImage, factor: number): RawImage {
  checkRawImage(img);
  return blend(new Uint8Array(img.data.length), img, factor);
}

/** ImageEnhance.Color: blend with the image's grey version (PIL luma); 0 gives grey, 1 the original. */
export function color(img: RawImage, factor: number): RawImage {
  checkRawImage(img);
  const grey = new Uint8Array(img.data.length);
  for (let i = 0; i < grey.length; i += 3) grey.fill(luma(img.data[i], img.data[i + 1], img.data[i + 2]), i, i + 3);
  return blend(grey, img, factor);
}

/** ImageEnhance.Contrast: blend with a uniform grey of the image's mean luma, int(mean + 0.5). */
export function contrast(img: RawImage, factor: number): RawImage {
  checkRawImage(img);
  let sum = 0;
  for (let i = 0; i < img.data.length; i += 3) sum += luma(img.data[i], img.data[i + 1], img.data[i + 2]);
  const mean = Math.trunc(sum / (img.width * img.height) + 0.5);
  return blend(new Uint8Array(img.data.length).fill(mean), img, factor);
}

/**
 * ImageEnhance.Sharpness: blend with PIL's SMOOTH filter (3×3 kernel 1 1 1 / 1 5 1 / 1 1 1, divided by 13,
 * float32, rounded); the filter leaves the one-pixel border as it is, so the border never changes.
 */
export function sharpness(img: RawImage, factor: number): RawImage {
  checkRawImage(img);
  const { width: w, height: h, data } = img;
  const smooth = data.slice();
  if (w >= 3 && h >= 3) {
    const k1 = Math.fround(1 / 13), k5 = Math.fround(5 / 13);
    const f = Math.fround;
    // One kernel row, as PIL's KERNEL1x3: (p0·k0 + p1·k1) + p2·k2 in float32.
    const row = (i: number, kc: number) => f(f(f(data[i - 3] * k1) + f(data[i] * kc)) + f(data[i + 3] * k1));
    for (let y = 1; y < h - 1; y++) {
      for (let x = 1; x < w - 1; x++) {
        for (let c = 0; c < 3; c++) {
          const i = (y * w + x) * 3 + c;
          let ss = f(0.5);
          ss = f(ss + row(i + w * 3, k1));
          ss = f(ss + row(i, k5));
          ss = f(ss + row(i - w * 3, k1));
          smooth[i] = ss <= 0 ? 0 : ss >= 255 ? 255 : Math.trunc(ss);
        }
      }
    }
  }
  return blend(smooth, img, factor);
}

function histograms(img: RawImage): Uint32Array {
  const hist = new Uint32Array(768);
  for (let i = 0; i < img.data.length; i++) hist[(i % 3) * 256 + img.data[i]]++;
  return hist;
}

/** ImageOps.autocontrast (cutoff 0): per channel, stretch [lowest, highest] value to [0, 255] (truncated). */
export function autoContrast(img: RawImage): RawImage {
  checkRawImage(img);
  const hist = histograms(img);
  const lut = new Uint8Array(768);
  for (let c = 0; c < 3; c++) {
    const h = hist.subarray(c * 256, c * 256 + 256);
    let lo = 0, hi = 255;
    while (lo < 255 && h[lo] === 0) lo++;
    while (hi > 0 && h[hi] === 0) hi--;
    for (let i = 0; i < 256; i++) {
      if (hi <= lo) { lut[c * 256 + i] = i; continue; }
      const scale = 255 / (hi - lo);
      const v = Math.trunc(i * scale - lo * scale);
      lut[c * 256 + i] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
  return applyLut(img, lut, true);
}

/**
 * ImageOps.equalize: per channel, value i maps to (step/2 + pixels below i) // step, with
 * step = (pixels − pixels of the highest present value) // 256, clipped to 255; a channel with one value or
 * step 0 (fewer than ~256 pixels) is left as is.
 */
export function equalize(img: RawImage): RawImage {
  checkRawImage(img);
  const hist = histograms(img);
  const lut = new Uint8Array(768);
  for (let c = 0; c < 3; c++) {
    const h = hist.subarray(c * 256, c * 256 + 256);
    let total = 0, last = 0, present = 0;
    for (let i = 0; i < 256; i++) if (h[i]) { total += h[i]; last = h[i]; present++; }
    const step = present <= 1 ? 0 : Math.floor((total - last) / 256);
    let n = Math.floor(step / 2);
    for (let i = 0; i < 256; i++) {
      lut[c * 256 + i] = step === 0 ? i : Math.min(255, Math.floor(n / step));
      n += h[i];
    }
  }
  return applyLut(img, lut, true);
}

/** Returns a copy of the image unchanged (RandAugment's Identity). */
export function identity(img: RawImage): RawImage {
  checkRawImage(img);
  return { data: img.data.slice(), width: img.width, height: img.height };
}

/** ImageOps.posterize: keep the `bits` (1–8) most significant bits of every channel value. */
export function posterize(img: RawImage, bits: number): RawImage {
  checkRawImage(img);
  check(Number.isInteger(bits) && bits >= 1 && bits <= 8, `posterize bits must be an integer in 1..8 (got ${bits})`);
  const mask = (0xff << (8 - bits)) & 0xff;
  return applyLut(img, Array.from({ length: 256 }, (_, i) => i & mask));
}

/** ImageOps.solarize: invert (255 − v) every channel value at or above `threshold`. */
export function solarize(img: RawImage, threshold: number): RawImage {
  checkRawImage(img);
  return applyLut(img, Array.from({ length: 256 }, (_, i) => (i < threshold ? i : 255 - i)));
}

// ---------------------------------------------------------------------------------------------------------
// PIL's geometric operations (nearest neighbour)

/**
 * Image.transform(size, AFFINE, a, NEAREST, fillcolor): output pixel (x, y) takes the input pixel at
 * (a0·(x+½) + a1·(y+½) + a2, a3·(x+½) + a4·(y+½) + a5), floored, or `fill` when that lies outside.
 * Like PIL, pure scaling/translation uses doubles and other matrices 16.16 fixed point, so that boundary
 * cases round the same way.
 */
export function affineNearest(img: RawImage, a: readonly number[], fill: Rgb = GEOMETRIC_FILL): RawImage {
  checkRawImage(img);
  check(a.length === 6 && a.every(Number.isFinite), 'an affine matrix needs 6 finite numbers');
  const { width: w, height: h } = img;
  const out = blank(w, h);
  const put = (x: number, y: number, xin: number, yin: number) => {
    const o = (y * w + x) * 3;
    if (xin >= 0 && xin < w && yin >= 0 && yin < h) {
      const i = (yin * w + xin) * 3;
      out.data[o] = img.data[i]; out.data[o + 1] = img.data[i + 1]; out.data[o + 2] = img.data[i + 2];
    } else {
      out.data[o] = fill[0]; out.data[o + 1] = fill[1]; out.data[o + 2] = fill[2];
    }
  };
  const coord = (v: number) => (v < 0 ? -1 : Math.trunc(v));
  const fits = (x: number, y: number) => Math.abs(x * a[0] + y * a[1] + a[2]) < 32768 && Math.abs(x * a[3] + y * a[4] + a[5]) < 32768;
  if (a[1] === 0 && a[3] === 0) {
    let yo = a[5] + a[4] * 0.5;
    for (let y = 0; y < h; y++, yo += a[4]) {
      let xo = a[2] + a[0] * 0.5;
      for (let x = 0; x < w; x++, xo += a[0]) put(x, y, coord(xo), coord(yo));
    }
  } else if (fits(0, 0) && fits(w, h) && fits(0, h) && fits(w, 0)) {
    const fix = (v: number) => Math.floor(v * 65536 + 0.5);
    const [a0, a1, a3, a4] = [fix(a[0]), fix(a[1]), fix(a[3]), fix(a[4])];
    let a2 = fix(a[2] + a[0] * 0.5 + a[1] * 0.5), a5 = fix(a[5] + a[3] * 0.5 + a[4] * 0.5);
    for (let y = 0; y < h; y++, a2 += a1, a5 += a4) {
      let xx = a2, yy = a5;
      for (let x = 0; x < w; x++, xx += a0, yy += a3) put(x, y, Math.floor(xx / 65536), Math.floor(yy / 65536));
    }
  } else {
    let xo = a[2] + a[1] * 0.5 + a[0] * 0.5, yo = a[5] + a[4] * 0.5 + a[3] * 0.5;
    for (let y = 0; y < h; y++, xo += a[1], yo += a[4]) {
      let xx = xo, yy = yo;
      for (let x = 0; x < w; x++, xx += a[0], yy += a[3]) put(x, y, coord(xx), coord(yy));
    }
  }
  return out;
}

/** ShearX as RandAugment uses it: AFFINE (1, shear, 0, 0, 1, 0), i.e. row y shifts by shear·y (top row fixed). */
export function shearX(img: RawImage, shear: number, fill: Rgb = GEOMETRIC_FILL): RawImage {
  return affineNearest(img, [1, shear, 0, 0, 1, 0], fill);
}

/** ShearY: AFFINE (1, 0, 0, shear, 1, 0), column x shifts by shear·x (left column fixed). */
export function shearY(img: RawImage, shear: number, fill: Rgb = GEOMETRIC_FILL): RawImage {
  return affineNearest(img, [1, 0, 0, shear, 1, 0], fill);
}

/** TranslateX: AFFINE (1, 0, pixels, 0, 1, 0); a positive value moves the content left by `pixels`. */
export function translateX(img: RawImage, pixels: number, fill: Rgb = GEOMETRIC_FILL): RawImage {
  return affineNearest(img, [1, 0, pixels, 0, 1, 0], fill);
}

/** TranslateY: AFFINE (1, 0, 0, 0, 1, pixels); a positive value moves the content up by `pixels`. */
export function translateY(img: RawImage, pixels: number, fill: Rgb = GEOMETRIC_FILL): RawImage {
  return affineNearest(img, [1, 0, 0, 0, 1, pixels], fill);
}

/**
 * Image.rotate(degrees) (NEAREST, same size): counter-clockwise about the image centre; multiples of 180°
 * (and of 90° on a square) are exact transposes, as in PIL.
 */
export function rotate(img: RawImage, degrees: number, fill: Rgb = GEOMETRIC_FILL): RawImage {
  checkRawImage(img);
  check(Number.isFinite(degrees), `rotation must be a finite number of degrees (got ${degrees})`);
  const { width: w, height: h } = img;
  const angle = ((degrees % 360) + 360) % 360;
  if (angle === 0) return identity(img);
  const turn = (src: (x: number, y: number) => [number, number]) => {
    const out = blank(w, h);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      const [sx, sy] = src(x, y);
      out.data.set(img.data.subarray((sy * w + sx) * 3, (sy * w + sx) * 3 + 3), (y * w + x) * 3);
    }
    return out;
  };
  if (angle === 180) return turn((x, y) => [w - 1 - x, h - 1 - y]);
  if (w === h && angle === 90) return turn((x, y) => [w - 1 - y, x]);
  if (w === h && angle === 270) return turn((x, y) => [y, h - 1 - x]);
  const rad = -(angle * Math.PI) / 180;
  const r15 = (v: number) => Math.round(v * 1e15) / 1e15; // PIL rounds the matrix to 15 decimals
  const m = [r15(Math.cos(rad)), r15(Math.sin(rad)), 0, r15(-Math.sin(rad)), r15(Math.cos(rad)), 0];
  const cx = w / 2, cy = h / 2;
  m[2] = m[0] * -cx + m[1] * -cy + cx;
  m[5] = m[3] * -cx + m[4] * -cy + cy;
  return affineNearest(img, m, fill);
}

// ---------------------------------------------------------------------------------------------------------
// RandAugment and Cutout

/** A RandAugment operation: the PIL function and how magnitude v (1..9) becomes its parameter. */
export interface RandAugmentOp {
  name: string;
  apply: (img: RawImage, param: number) => RawImage;
  /** The parameter for magnitude v; signed operations draw their sign from `rng` (one draw). */
  param: (v: number, img: RawImage, rng: Rng) => number;
}

// The magnitude arithmetic follows the reference (FixMatch's RandAugmentMC) in double precision:
// float parameter = v·max/10 + bias, integer parameter = int(v·max/10) + bias.
const enhanceFactor = (v: number) => (v * 0.9) / 10 + 0.05;
const signed = (x: number, rng: Rng) => (rng.chance(0.5) ? -x : x);
const none = () => 0;

/** The 14 operations of the spec's strong augmentation, with their magnitude mappings. */
export const RAND_AUGMENT_OPS: readonly RandAugmentOp[] = [
  { name: 'AutoContrast', apply: (img) => autoContrast(img), param: none },
  { name: 'Brightness', apply: brightness, param: enhanceFactor },
  { name: 'Color', apply: color, param: enhanceFactor },
  { name: 'Contrast', apply: contrast, param: enhanceFactor },
  { name: 'Equalize', apply: (img) => equalize(img), param: none },
  { name: 'Identity', apply: (img) => identity(img), param: none },
  { name: 'Posterize', apply: posterize, param: (v) => Math.trunc((v * 4) / 10) + 4 },
  { name: 'Rotate', apply: (img, p) => rotate(img, p), param: (v, _img, rng) => signed(Math.trunc((v * 30) / 10), rng) },
  { name: 'Sharpness', apply: sharpness, param: enhanceFactor },
  { name: 'ShearX', apply: (img, p) => shearX(img, p), param: (v, _img, rng) => signed((v * 0.3) / 10, rng) },
  { name: 'ShearY', apply: (img, p) => shearY(img, p), param: (v, _img, rng) => signed((v * 0.3) / 10, rng) },
  { name: 'Solarize', apply: solarize, param: (v) => 256 - Math.trunc((v * 256) / 10) },
  { name: 'TranslateX', apply: (img, p) => translateX(img, p), param: (v, img, rng) => Math.trunc(signed((v * 0.3) / 10, rng) * img.width) },
  { name: 'TranslateY', apply: (img, p) => translateY(img, p), param: (v, img, rng) => Math.trunc(signed((v * 0.3) / 10, rng) * img.height) },
];

/** Options of {@link randAugment}: number of picks and the probability of applying each. */
export interface RandAugmentOptions { n?: number; p?: number }

/**
 * RandAugment as the spec defines it: `n` operations picked uniformly with replacement; for each, a
 * magnitude v uniform in 1..9 is drawn and the operation is applied with probability `p`.
 */
export function randAugment(img: RawImage, rng: Rng, opts: RandAugmentOptions = {}): RawImage {
  checkRawImage(img);
  const n = opts.n ?? 10, p = opts.p ?? 0.5;
  check(Number.isInteger(n) && n >= 0 && p >= 0 && p <= 1, `randAugment needs an integer n ≥ 0 and p in [0, 1] (got ${n}, ${p})`);
  const picks = Array.from({ length: n }, () => RAND_AUGMENT_OPS[rng.int(RAND_AUGMENT_OPS.length)]);
  let out = img;
  for (const op of picks) {
    const v = rng.intBetween(1, 9);
    if (rng.chance(p)) out = op.apply(out, op.param(v, out, rng));
  }
  return out === img ? identity(img) : out;
}

/** Options of {@link cutout}: side of the square and its colour. */
export interface CutoutOptions { size?: number; fill?: Rgb }

/**
 * Cutout: paints a `size`×`size` square (default 16, grey 127) centred on a uniformly drawn pixel (cx, cy),
 * covering columns cx − size/2 … cx + size/2 − 1 (rows likewise), clipped at the borders.
 * (The reference's PIL rectangle covers size+1 pixels and slides rather than clips at the left/top edge; the
 * spec's clipped square is used here.)
 */
export function cutout(img: RawImage, rng: Rng, opts: CutoutOptions = {}): RawImage {
  checkRawImage(img);
  const size = opts.size ?? 16;
  const fill = opts.fill ?? [127, 127, 127];
  check(Number.isInteger(size) && size >= 0, `cutout size must be a non-negative integer (got ${size})`);
  const cx = rng.int(img.width), cy = rng.int(img.height);
  const half = Math.floor(size / 2);
  const x0 = Math.max(0, cx - half), x1 = Math.min(img.width, cx - half + size);
  const y0 = Math.max(0, cy - half), y1 = Math.min(img.height, cy - half + size);
  const out = identity(img);
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) out.data.set(fill, (y * img.width + x) * 3);
  }
  return out;
}

/**
 * The strong augmentation of the target-free and authorization scenarios: resize the shorter side and centre
 * crop to `size`, RandAugment (10 picks, p 0.5), then Cutout (16 px, grey 127).
 */
export async function strongAugment(img: RawImage, size: number, rng: Rng): Promise<RawImage> {
  const base = await resizeShorterCenterCrop(img, size);
  return cutout(randAugment(base, rng, { n: 10, p: 0.5 }), rng, { size: 16 });
}
