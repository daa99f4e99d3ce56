/**
 * Image decoding (through sharp, off the event loop) into a plain RGB buffer, and CLIP's normalisation.
 */
import { stat } from 'node:fs/promises';
import sharp from 'sharp';
import { IpclipError, check } from '../core/errors.js';

/**
 * An 8-bit RGB image: 3 channels, rows top to bottom, `data[(y * width + x) * 3 + c]`.
 * @category Images
 */
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/**
 * A file path, encoded image bytes (JPEG, PNG, WebP, GIF, TIFF, AVIF, …) or an already decoded image.
 * @category Images
 */
export type ImageInput = string | Buffer | Uint8Array | RawImage;

/**
 * The largest image (width × height) decoded by default. A few kilobytes of PNG or JPEG can declare
 * gigapixel dimensions (a "decompression bomb"); refusing them before decoding keeps one hostile file
 * from exhausting memory. 100 megapixels is far above any photo in the supported datasets.
 * @category Images
 */
export const DEFAULT_MAX_PIXELS = 100_000_000;

/**
 * CLIP's per-channel mean (R, G, B) on the [0, 1] scale.
 * @category Images
 */
export const CLIP_MEAN: readonly [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
/**
 * CLIP's per-channel standard deviation (R, G, B) on the [0, 1] scale.
 * @category Images
 */
export const CLIP_STD: readonly [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

/**
 * Options for {@link decodeImage}.
 * @category Images
 */
export interface DecodeOptions {
  /** Refuse images with more pixels than this (default {@link DEFAULT_MAX_PIXELS}). */
  maxPixels?: number;
  /** How the input is named in error messages when it is not a path (default "buffer"). */
  label?: string;
}

/** True for a decoded {@link RawImage} (as opposed to a path or encoded bytes). */
export function isRawImage(input: unknown): input is RawImage {
  return typeof input === 'object' && input !== null && !(input instanceof Uint8Array)
    && 'data' in input && 'width' in input && 'height' in input;
}

/** Throws `ERR_INVALID_ARGUMENT` unless `img` is a well-formed 3-channel {@link RawImage}. */
export function checkRawImage(img: RawImage, name = 'image'): void {
  check(img.data instanceof Uint8Array, `${name}: data must be a Uint8Array`);
  check(Number.isInteger(img.width) && img.width > 0 && Number.isInteger(img.height) && img.height > 0,
    `${name}: width and height must be positive integers (got ${img.width}×${img.height})`);
  check(img.data.length === img.width * img.height * 3,
    `${name}: data has ${img.data.length} bytes, expected ${img.width}×${img.height}×3 = ${img.width * img.height * 3}`);
}

/**
 * Decodes `input` into 8-bit RGB the way PIL's `Image.open(p).convert('RGB')` does after EXIF orientation:
 * the first frame of animated images, grey → RGB, CMYK → sRGB, 16-bit → 8-bit, and alpha DROPPED (not
 * composited on a background, as PIL does). A {@link RawImage} is validated and returned as is.
 *
 * Errors: a missing path rejects with `ERR_FILE_NOT_FOUND`; empty, truncated or undecodable data and
 * images over `maxPixels` reject with `ERR_BAD_IMAGE`. Messages name the input.
 * @category Images
 */
export async function decodeImage(input: ImageInput, opts: DecodeOptions = {}): Promise<RawImage> {
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  check(Number.isInteger(maxPixels) && maxPixels > 0, `maxPixels must be a positive integer (got ${maxPixels})`);
  if (isRawImage(input)) {
    checkRawImage(input, opts.label ?? 'image');
    if (input.width * input.height > maxPixels) {
      throw new IpclipError('ERR_BAD_IMAGE', `${opts.label ?? 'image'}: ${input.width}×${input.height} is over the limit of ${maxPixels} pixels`);
    }
    return input;
  }
  let name: string;
  if (typeof input === 'string') {
    name = `"${input}"`;
    try {
      const st = await stat(input);
      if (!st.isFile()) throw new IpclipError('ERR_BAD_IMAGE', `${name} is not a file`);
    } catch (err) {
      if (err instanceof IpclipError) throw err;
      throw new IpclipError('ERR_FILE_NOT_FOUND', `image file ${name} not found`, { cause: err });
    }
  } else if (input instanceof Uint8Array) {
    name = opts.label ?? 'buffer';
    if (input.length === 0) throw new IpclipError('ERR_BAD_IMAGE', `${name} is empty (0 bytes)`);
  } else {
    throw new IpclipError('ERR_INVALID_ARGUMENT', 'an image must be a path, a Buffer/Uint8Array or a RawImage');
  }
  try {
    const { data, info } = await sharp(input, { limitInputPixels: maxPixels, failOn: 'error', pages: 1 })
      .rotate() // apply EXIF orientation
      .removeAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    return toRgb(new Uint8Array(data.buffer, data.byteOffset, data.length), info.width, info.height, info.channels, name);
  } catch (err) {
    if (err instanceof IpclipError) throw err;
    const msg = err instanceof Error ? err.message : String(err);
    if (/pixel limit/i.test(msg)) {
      throw new IpclipError('ERR_BAD_IMAGE', `${name}: image is over the limit of ${maxPixels} pixels (a possible decompression bomb)`, { cause: err });
    }
    throw new IpclipError('ERR_BAD_IMAGE', `${name}: cannot decode image (${msg.split('\n')[0]})`, { cause: err });
  }
}

/** Makes a 3-channel image of sharp's output, whatever band count it reports. */
function toRgb(data: Uint8Array, width: number, height: number, channels: number, name: string): RawImage {
  if (channels === 3) return { data, width, height };
  const n = width * height;
  const out = new Uint8Array(n * 3);
  if (channels === 1 || channels === 2) {
    for (let i = 0; i < n; i++) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = data[i * channels];
  } else if (channels === 4) {
    for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) out[3 * i + c] = data[4 * i + c];
  } else {
    throw new IpclipError('ERR_BAD_IMAGE', `${name}: unsupported channel count ${channels}`);
  }
  return { data: out, width, height };
}

/**
 * Scales 8-bit RGB images to [0, 1], normalises them with {@link CLIP_MEAN}/{@link CLIP_STD} and lays them out
 * as one `[N, 3, H, W]` float32 buffer. All images must have the same size.
 */
export function normalizeToChw(images: RawImage[]): Float32Array {
  check(images.length > 0, 'no images to normalise', 'ERR_EMPTY_INPUT');
  const { width, height } = images[0];
  const plane = width * height;
  const out = new Float32Array(images.length * 3 * plane);
  const scale = [0, 1, 2].map((c) => 1 / (255 * CLIP_STD[c]));
  const shift = [0, 1, 2].map((c) => CLIP_MEAN[c] / CLIP_STD[c]);
  images.forEach((img, n) => {
    checkRawImage(img, `image #${n}`);
    check(img.width === width && img.height === height,
      `image #${n} is ${img.width}×${img.height}, expected ${width}×${height} like image #0`);
    for (let c = 0; c < 3; c++) {
      const base = (n * 3 + c) * plane;
      const s = scale[c], t = shift[c];
      for (let i = 0; i < plane; i++) out[base + i] = img.data[3 * i + c] * s - t;
    }
  });
  return out;
}

/** Python's `round()` (half to even), which torchvision uses for crop sizes and offsets. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
