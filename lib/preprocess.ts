/**
 * CLIP's test-time preprocessing (resize the shorter side with antialiased bicubic, centre crop, normalise)
 * and the resizing it is built on, matching PIL as the reference implementation uses it.
 */
import sharp from 'sharp';
import { IpclipError, check } from './errors.js';
import { checkRawImage, decodeImage, isRawImage, normalizeToChw, roundHalfEven, type ImageInput, type RawImage } from './image.js';
import type { ImageTensor } from './tensor.js';
// PIL's antialiased bicubic resampling (Image.resize(size, BICUBIC), as torchvision calls it for PIL images):
// a separable convolution whose Catmull-Rom kernel (a = -0.5) is widened by the downscaling factor, with
// 8-bit fixed-point weights (22 fractional bits) and the horizontal pass rounded to 8 bits before the vertical.
const PRECISION_BITS = 32 - 8 - 2;
const ONE = 2 ** PRECISION_BITS;
const HALF = 2 ** (PRECISION_BITS - 1);

function bicubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

interface Coeffs { ksize: number; bounds: Int32Array; kk: Int32Array }

/** Per output pixel: the first input index, the tap count, and fixed-point weights (as PIL's precompute_coeffs). */
function coefficients(inSize: number, outSize: number): Coeffs {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 2 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      w[x] = bicubic((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0 ? w[x] / ww : w[x];
      kk[xx * ksize + x] = Math.trunc(v < 0 ? -0.5 + v * ONE : 0.5 + v * ONE);
    }
    bounds[2 * xx] = xmin;
    bounds[2 * xx + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

function clip8(ss: number): number {
  const v = Math.floor(ss / ONE);
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/**
 * Resizes `img` to `width`×`height` with PIL's antialiased bicubic filter; the result equals PIL's byte for byte.
 * Synchronous and on the calling thread: {@link resizeImage} hands large reductions to sharp instead.
 */
export function resizeBicubic(img: RawImage, width: number, height: number): RawImage {
  check(Number.isInteger(width) && width > 0 && Number.isInteger(height) && height > 0,
    `resize target must be positive integers (got ${width}×${height})`);
  checkRawImage(img);
  let src = img;
  const needH = width !== img.width;
  const needV = height !== img.height;
  const vert = coefficients(img.height, height);
  if (needH) {
    // Only the rows the vertical pass reads are resampled horizontally (as PIL does).
    const first = vert.bounds[0];
    const last = vert.bounds[2 * height - 2] + vert.bounds[2 * height - 1];
    const rows = needV ? last - first : img.height;
    const y0 = needV ? first : 0;
    if (needV) for (let i = 0; i < height; i++) vert.bounds[2 * i] -= first;
    const { ksize, bounds, kk } = coefficients(img.width, width);
    const out = new Uint8Array(width * rows * 3);
    for (let y = 0; y < rows; y++) {
      const rowIn = (y + y0) * img.width * 3;
      const rowOut = y * width * 3;
      for (let x = 0; x < width; x++) {
        const xmin = bounds[2 * x], n = bounds[2 * x + 1], k = x * ksize;
        let s0 = HALF, s1 = HALF, s2 = HALF;
        for (let i = 0; i < n; i++) {
          const p = rowIn + (xmin + i) * 3, c = kk[k + i];
          s0 += img.data[p] * c; s1 += img.data[p + 1] * c; s2 += img.data[p + 2] * c;
        }
        out[rowOut + 3 * x] = clip8(s0); out[rowOut + 3 * x + 1] = clip8(s1); out[rowOut + 3 * x + 2] = clip8(s2);
      }
    }
    src = { data: out, width, height: rows };
  }
  if (!needV) return src === img ? { data: img.data.slice(), width, height } : src;
  const { ksize, bounds, kk } = vert;
  const out = new Uint8Array(width * height * 3);
  const stride = width * 3;
  for (let y = 0; y < height; y++) {
    const ymin = bounds[2 * y], n = bounds[2 * y + 1], k = y * ksize;
    for (let x = 0; x < stride; x++) {
      let ss = HALF;
      for (let i = 0; i < n; i++) ss += src.data[(ymin + i) * stride + x] * kk[k + i];
      out[y * stride + x] = clip8(ss);
    }
  }
  return { data: out, width, height };
}

/**
 * Resizes off the event loop where it matters: reductions (the costly case, large photos) run in sharp's
 * thread pool with its Catmull-Rom kernel, which agrees with PIL to a mean of about 1 level in 255·0.3
 * (libvips box-shrinks first by integer factors ≥ 2, a small blur PIL does not have); enlargements, which
 * sharp interpolates differently from PIL, use {@link resizeBicubic} (cheap: the source is small).
 */
export async function resizeImage(img: RawImage, width: number, height: number): Promise<RawImage> {
  checkRawImage(img);
  check(Number.isInteger(width) && width > 0 && Number.isInteger(height) && height > 0,
    `resize target must be positive integers (got ${width}×${height})`);
  if (width > img.width || height > img.height || (width === img.width && height === img.height)) {
    return resizeBicubic(img, width, height);
  }
  const data = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .resize(width, height, { fit: 'fill', kernel: 'cubic', fastShrinkOnLoad: false })
    .raw()
    .toBuffer();
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width, height };
}

/**
 * The size after resizing the shorter side to `size`, keeping the aspect ratio: the longer side is
 * `round(size · long / short)` (half to even), which is what the reference PIL preprocessing produced for
 * the project's fixtures (e.g. 120×333 → 224×622; truncation would give 621 and misses the fixture).
 */
export function shorterSideSize(width: number, height: number, size: number): [number, number] {
  if (width <= height) return [size, Math.max(size, roundHalfEven((size * height) / width))];
  return [Math.max(size, roundHalfEven((size * width) / height)), size];
}

/** Cuts the `width`×`height` rectangle at (`left`, `top`) out of `img`; it must lie inside the image. */
export function cropRaw(img: RawImage, left: number, top: number, width: number, height: number): RawImage {
  check([left, top, width, height].every(Number.isInteger) && left >= 0 && top >= 0 && width > 0 && height > 0
    && left + width <= img.width && top + height <= img.height,
  `crop (${left}, ${top}, ${width}×${height}) does not lie inside the ${img.width}×${img.height} image`);
  if (left === 0 && top === 0 && width === img.width && height === img.height) return img;
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const from = ((top + y) * img.width + left) * 3;
    out.set(img.data.subarray(from, from + width * 3), y * width * 3);
  }
  return { data: out, width, height };
}

/** Options for {@link resizeShorterCenterCrop} and {@link preprocess}. */
export interface PreprocessOptions {
  /** Refuse larger images (default: image.ts's DEFAULT_MAX_PIXELS). */
  maxPixels?: number;
  /** How a non-path input is named in errors (default "buffer"). */
  label?: string;
}

/**
 * CLIP's test transform up to normalisation: decode, resize the shorter side to `size` (antialiased bicubic),
 * and cut the centred `size`×`size` square (offsets round((h − size)/2), round((w − size)/2), half to even,
 * as torchvision's CenterCrop).
 */
export async function resizeShorterCenterCrop(input: ImageInput, size: number, opts: PreprocessOptions = {}): Promise<RawImage> {
  check(Number.isInteger(size) && size > 0, `size must be a positive integer (got ${size})`);
  const img = await decodeImage(input, opts);
  const [w, h] = shorterSideSize(img.width, img.height, size);
  const resized = await resizeImage(img, w, h);
  return cropRaw(resized, roundHalfEven((w - size) / 2), roundHalfEven((h - size) / 2), size, size);
}

/**
 * Turns one image or a list into CLIP's input tensor `[N, 3, size, size]` (the test transform, then CLIP's
 * mean/std). Decoding and reductions run in sharp's thread pool, a few images at a time.
 * An empty list rejects with `ERR_EMPTY_INPUT`; errors name the failing input (its path, or "buffer #i").
 */
export async function preprocess(inputs: ImageInput | ImageInput[], opts: { size: number; maxPixels?: number }): Promise<ImageTensor> {
  check(typeof opts === 'object' && opts !== null, 'preprocess needs options { size }');
  const { size, maxPixels } = opts;
  check(Number.isInteger(size) && size > 0, `size must be a positive integer (got ${size})`);
  const list = Array.isArray(inputs) ? inputs : [inputs];
  if (list.length === 0) throw new IpclipError('ERR_EMPTY_INPUT', 'preprocess: no images given');
  const images = await mapLimit(list, 4, (input, i) =>
    resizeShorterCenterCrop(input, size, { maxPixels, label: isRawImage(input) ? `image #${i}` : `buffer #${i}` }));
  return { data: normalizeToChw(images), shape: [images.length, 3, size, size] };
}

/** `Promise.all(items.map(fn))` with at most `limit` calls in flight, so a large batch does not decode all at once. */
async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
