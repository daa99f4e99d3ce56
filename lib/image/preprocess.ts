/**
 * CLIP's test-time preprocessing (resize the shorter side with antialiased bicubic, centre crop, normalise)
 * and the resizing it is built on, matching PIL as the reference implementation uses it.
 */
import { IpclipError, check } from '../core/errors.js';
import { checkRawImage, decodeImage, isRawImage, normalizeToChw, roundHalfEven, type ImageInput, type RawImage } from './decode.js';
import { loadNative } from '../native/load.js';
import { callNative } from '../native/errors.js';
import type { ImageTensor } from '../core/tensor.js';

/**
 * Resizes `img` to `width`×`height` with PIL's antialiased bicubic filter (`Image.resize(size, BICUBIC)`, as
 * torchvision calls it for PIL images): the result equals PIL's byte for byte, for enlargements and reductions.
 * The native resampler (native/common/resample.cpp) runs on a worker thread, so the event loop keeps turning.
 * It reads `img.data` in place (as sharp does with raw pixels; a copy of a 12 MP photo would block the event
 * loop for about as long as the resize takes): do not change or transfer it until the promise settles.
 */
export async function resizeImage(img: RawImage, width: number, height: number): Promise<RawImage> {
  checkRawImage(img);
  check(Number.isInteger(width) && width > 0 && Number.isInteger(height) && height > 0,
    `resize target must be positive integers (got ${width}×${height})`);
  const data = await callNative(() => loadNative().resizeBicubic(img.data, img.width, img.height, width, height));
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

/**
 * Options for `resizeShorterCenterCrop` and {@link preprocess}.
 * @category Images
 */
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
 * mean/std). Decoding runs in sharp's thread pool and resizing in the addon's, a few images at a time.
 * An empty list rejects with `ERR_EMPTY_INPUT`; errors name the failing input (its path, or "buffer #i").
 * @category Images
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
