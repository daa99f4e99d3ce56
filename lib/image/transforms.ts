/**
 * The per-sample transform the data loader applies to each stream (method §5–6): decode, optional watermark at
 * the original resolution, then the test, train or strong augmentation, and finally CLIP's normalisation.
 */
import { check } from '../core/errors.js';
import { decodeImage, normalizeToChw, type ImageInput, type RawImage } from './decode.js';
import { hflip, randomResizedCrop, strongAugment, watermark, type RandomResizedCropOptions } from './augment.js';
import { resizeShorterCenterCrop } from './preprocess.js';
import type { Rng } from '../core/rng.js';
import type { ImageTensor } from '../core/tensor.js';

/**
 * `test`: resize the shorter side + centre crop; `train`: RandomResizedCrop (scale 0.08–1, ratio 3/4–4/3) +
 * horizontal flip with probability 0.5; `strong`: resize + centre crop, RandAugment (10 picks, p 0.5), Cutout.
 * @category Images
 */
export type AugmentKind = 'test' | 'train' | 'strong';

/**
 * What to do to one sample: watermark it (the ownership/authorization key) or not, and how to augment it.
 * @category Images
 */
export interface TransformSpec {
  watermark?: boolean;
  augment: AugmentKind;
  /** `train` only: the RandomResizedCrop area range; default [0.08, 1]. */
  cropScale?: readonly [number, number];
  /** `train` only: random horizontal flips (probability 0.5); default true. */
  flip?: boolean;
}

const KINDS: readonly AugmentKind[] = ['test', 'train', 'strong'];

/**
 * Decodes `input` and turns it into a `size`×`size` RGB image as `spec` says. Random choices come from `rng`
 * only, so a seeded generator reproduces the sample exactly.
 */
export async function applyTransform(
  input: ImageInput, spec: TransformSpec, size: number, rng: Rng, opts: { maxPixels?: number } = {},
): Promise<RawImage> {
  check(typeof spec === 'object' && spec !== null && KINDS.includes(spec.augment),
    `transform augment must be one of ${KINDS.join(', ')} (got ${String(spec?.augment)})`);
  check(Number.isInteger(size) && size > 0, `size must be a positive integer (got ${size})`);
  const s = spec.cropScale;
  check(s === undefined || (Array.isArray(s) && s.length === 2 && s[0] > 0 && s[0] <= s[1] && s[1] <= 1),
    'transform cropScale must be [min, max] with 0 < min <= max <= 1');
  check(spec.flip === undefined || typeof spec.flip === 'boolean', 'transform flip must be a boolean');
  let img = await decodeImage(input, opts);
  if (spec.watermark) img = watermark(img);
  switch (spec.augment) {
    case 'test':
      return resizeShorterCenterCrop(img, size);
    case 'train':
      return randomCropFlip(img, size, rng, { ...(s ? { scale: [s[0], s[1]] } : {}), ...(spec.flip === false ? { flip: false } : {}) });
    case 'strong':
      return strongAugment(img, size, rng);
  }
}

/**
 * The `train` augmentation with its crop range as a parameter: a RandomResizedCrop (`scale`, `ratio`; the
 * defaults are `train`'s) resized to `size`×`size`, then a horizontal flip with probability 0.5 unless `flip` is
 * false (no draw is made then). The IP-CLIP loader and the CLIP pretrainer both cut their training crops here.
 * @category Images
 */
export async function randomCropFlip(img: RawImage, size: number, rng: Rng, opts: RandomResizedCropOptions & { flip?: boolean } = {}): Promise<RawImage> {
  const { flip = true, ...crop } = opts;
  const out = await randomResizedCrop(img, size, rng, crop);
  return flip && rng.chance(0.5) ? hflip(out) : out;
}

/**
 * The unauthorized stream's per-sample choice in the applicability-authorization scenario: 40% watermark +
 * strong augmentation, 20% clean + normal training augmentation, 40% clean + strong augmentation.
 */
export function authorizationMixture(rng: Rng): TransformSpec {
  const u = rng.next();
  if (u < 0.4) return { watermark: true, augment: 'strong' };
  if (u < 0.6) return { watermark: false, augment: 'train' };
  return { watermark: false, augment: 'strong' };
}

/** Normalises equally sized transformed images into CLIP's input tensor `[N, 3, S, S]`. */
export function toImageTensor(images: RawImage[]): ImageTensor {
  const data = normalizeToChw(images);
  return { data, shape: [images.length, 3, images[0].height, images[0].width] };
}
