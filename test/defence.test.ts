// The disguised-unauthorized defence (lib/ipclip/trainer/disguise.ts): the blended disguise against a pixel AdaIN
// computed by hand on a tiny image, the draws' ranges and determinism, the PNG round trip, the augmented U set
// (its size, its labels, a disguised sample's pixels against the transform of the loaded images), and the
// trainer's handling of the option (refused where it does not apply, recorded in checkpoints, changing training).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Clip } from '../lib/clip/clip.js';
import { DomainDataset } from '../lib/data/dataset.js';
import { CLIP_MEAN, CLIP_STD } from '../lib/image/decode.js';
import { loadImageSet, pick } from '../lib/ipclip/attacks/common.js';
import { styleTarget } from '../lib/ipclip/attacks/style.js';
import { readCheckpoint } from '../lib/ipclip/checkpoint.js';
import { PromptModel } from '../lib/ipclip/prompt-model.js';
import {
  DEFAULT_DISGUISE, blendDisguise, disguiseDraws, planesToPng, resolveDisguise, withDisguisedUnauthorized,
} from '../lib/ipclip/trainer/disguise.js';
import { IPTrainer } from '../lib/ipclip/trainer/trainer.js';
import { generateSynthDomains } from '../lib/tools/synth/synth.js';

const SHIPPED = join(import.meta.dirname, '..', 'models', 'synth-clip', 'model.safetensors');

/** RGB planes in [0, 1] → a CLIP-normalised `[1, 3, H, W]` tensor. */
function normalised(px: number[], hw: number) {
  const data = Float32Array.from(px, (v, i) => (v - CLIP_MEAN[Math.floor(i / hw)]!) / CLIP_STD[Math.floor(i / hw)]!);
  return { data, shape: [1, 3, Math.sqrt(hw), Math.sqrt(hw)] };
}

describe('the disguise of one image', () => {
  it('is (1 − α)·x + α·AdaIN(x) towards the authorized image, as computed by hand on a 2 × 2 image', () => {
    // Every channel of x is [0.1, 0.3, 0.5, 0.7]: mean 0.4, population std √0.05. The authorized image's channels
    // are [0.2, 0.2, 0.6, 0.6]: mean 0.4, std 0.2. AdaIN(x) = 0.4 + (x − 0.4)·0.2/√0.05 = 0.4 + (x − 0.4)·0.894427…
    const x = Float32Array.from([0.1, 0.3, 0.5, 0.7, 0.1, 0.3, 0.5, 0.7, 0.1, 0.3, 0.5, 0.7]);
    const target = styleTarget('adain', normalised([0.2, 0.2, 0.6, 0.6, 0.2, 0.2, 0.6, 0.6, 0.2, 0.2, 0.6, 0.6], 4));
    const full = blendDisguise(x, target, 1);
    const half = blendDisguise(x, target, 0.5);
    const adain = [0.131672, 0.310557, 0.489443, 0.668328];
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < 4; i++) {
        expect(full[4 * c + i]).toBeCloseTo(adain[i]!, 5);
        expect(half[4 * c + i]).toBeCloseTo(0.5 * x[4 * c + i]! + 0.5 * adain[i]!, 5);
      }
    }
  });

  it('clamps to [0, 1]', () => {
    // x = [0, 0, 0, 1] → mean 0.25, std √0.1875; towards mean 0.9, std 0.3: the bright pixel lands above 1.
    const x = Float32Array.from([0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]);
    const target = styleTarget('adain', normalised([0.6, 0.6, 1.2, 1.2, 0.6, 0.6, 1.2, 1.2, 0.6, 0.6, 1.2, 1.2].map((v) => v * 0.75), 4));
    const out = blendDisguise(x, target, 1);
    expect(Math.max(...out)).toBe(1);
    expect(Math.min(...out)).toBeGreaterThanOrEqual(0);
  });

  it('round-trips through PNG to the nearest 8-bit level', async () => {
    const px = Float64Array.from({ length: 3 * 6 }, (_, i) => (i * 37 % 101) / 100);
    const png = await planesToPng(px, 2, 3);
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([3, 2, 3]);
    for (let i = 0; i < 6; i++) for (let c = 0; c < 3; c++) expect(Math.abs(data[3 * i + c]! / 255 - px[c * 6 + i]!)).toBeLessThanOrEqual(0.5 / 255 + 1e-9);
  });
});

describe('the draws', () => {
  it('are copies × n, in range, distinct authorized images, every method, and a pure function of the seed', () => {
    const d = resolveDisguise({ copies: 2, maxK: 5, minStrength: 0.6 })!;
    const draws = disguiseDraws(50, 20, d, 7);
    expect(draws).toHaveLength(100);
    expect(draws.map((x) => x.source)).toEqual([...Array.from({ length: 50 }, (_, i) => i), ...Array.from({ length: 50 }, (_, i) => i)]);
    for (const x of draws) {
      expect(x.authorized.length).toBeGreaterThanOrEqual(1);
      expect(x.authorized.length).toBeLessThanOrEqual(5);
      expect(new Set(x.authorized).size).toBe(x.authorized.length);
      for (const j of x.authorized) expect(j >= 0 && j < 20).toBe(true);
      expect(x.strength >= 0.6 && x.strength <= 1).toBe(true);
    }
    expect(new Set(draws.map((x) => x.method))).toEqual(new Set(['adain', 'fourier', 'histogram']));
    expect(new Set(draws.map((x) => x.authorized.length)).size).toBe(5);
    expect(disguiseDraws(50, 20, d, 7)).toEqual(draws);
    expect(disguiseDraws(50, 20, d, 8)).not.toEqual(draws);
    // k never exceeds the authorized images there are.
    expect(Math.max(...disguiseDraws(10, 2, resolveDisguise(true)!, 1).map((x) => x.authorized.length))).toBe(2);
  });

  it('refuses bad settings', () => {
    expect(resolveDisguise(undefined)).toBeNull();
    expect(resolveDisguise(false)).toBeNull();
    expect(resolveDisguise(true)).toEqual(DEFAULT_DISGUISE);
    for (const bad of [{ copies: 0 }, { maxK: 1.5 }, { minStrength: 0 }, { minStrength: 1.1 }, { methods: [] }, { methods: ['blur'] }, { fourierBeta: 0.5 }]) {
      expect(() => resolveDisguise(bad as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    }
  });
});

describe('training with disguised unauthorized images', () => {
  let dir: string;
  let clip: Clip;
  let photo: DomainDataset;
  let sketch: DomainDataset;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ipclip-defence-'));
    const synth = await generateSynthDomains({ out: join(dir, 'synth'), perClass: 2, seed: 0, size: 32, domains: ['photo', 'sketch'] });
    clip = await Clip.load(SHIPPED);
    photo = await DomainDataset.fromFolder(synth.root, { domain: 'photo' });
    sketch = await DomainDataset.fromFolder(synth.root, { domain: 'sketch' });
  }, 120_000);

  afterAll(async () => {
    clip?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('appends copies × |U| disguised samples whose pixels are the drawn transform of the loaded images', async () => {
    const size = clip.config.vision.imageSize;
    const d = resolveDisguise({ copies: 2, methods: ['adain'] })!;
    const u = await withDisguisedUnauthorized(photo, sketch, d, { size, seed: 3 });
    expect(u.length).toBe(3 * sketch.length);
    expect(u.domain).toBe('sketch');
    expect(u.classNames).toEqual(sketch.classNames);
    expect(u.samples.slice(0, sketch.length)).toEqual(sketch.samples);
    for (let i = 0; i < u.length; i++) expect(u.samples[i]!.label).toBe(sketch.samples[i % sketch.length]!.label);
    // Sample n + 5 is copy 0 of image 5: rebuild it from the loaded sets and the draw.
    const a = await loadImageSet(photo, size);
    const s = await loadImageSet(sketch, size);
    const draw = disguiseDraws(sketch.length, photo.length, d, 3)[5]!;
    const plane = 3 * size * size;
    const px = Float32Array.from(s.images.data.subarray(5 * plane, 6 * plane), (v, i) => v * CLIP_STD[Math.floor(i / (size * size))]! + CLIP_MEAN[Math.floor(i / (size * size))]!);
    const want = blendDisguise(px, styleTarget('adain', pick(a, draw.authorized).images), draw.strength);
    const { data } = await sharp(u.samples[sketch.length + 5]!.buffer!).raw().toBuffer({ resolveWithObject: true });
    const hw = size * size;
    let worst = 0;
    for (let i = 0; i < hw; i++) for (let c = 0; c < 3; c++) worst = Math.max(worst, Math.abs(data[3 * i + c]! / 255 - want[c * hw + i]!));
    expect(worst).toBeLessThanOrEqual(0.5 / 255 + 1e-6);
    // The disguise did something: the copy is not its source image.
    let moved = 0;
    for (let i = 0; i < plane; i++) moved = Math.max(moved, Math.abs(want[i]! - px[i]!));
    expect(moved).toBeGreaterThan(0.05);
  }, 60_000);

  it('is refused by the official preset and by scenarios without a U dataset', async () => {
    const prompt = await PromptModel.create(clip, photo.classNames, { seed: 1 });
    try {
      expect(() => new IPTrainer(prompt, { scenario: 'target-specified', preset: 'official', disguisedUnauthorized: true }))
        .toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringContaining("'paper' preset") }));
      expect(() => new IPTrainer(prompt, { scenario: 'target-free', disguisedUnauthorized: true }))
        .toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringContaining('target-specified') }));
      expect(new IPTrainer(prompt, { scenario: 'target-specified' }).options.disguisedUnauthorized).toBeNull();
    } finally {
      prompt.dispose();
    }
  });

  it('changes what a fit learns, is recorded in the checkpoint, and a resume must match it', async () => {
    const fit = async (disguisedUnauthorized: boolean, checkpointDir?: string) => {
      const prompt = await PromptModel.create(clip, photo.classNames, { seed: 2 });
      await new IPTrainer(prompt, {
        scenario: 'target-specified', epochs: 1, batchSize: 10, lr: 0.01, seed: 2, featureCache: true, disguisedUnauthorized,
        ...(checkpointDir ? { checkpointDir } : {}),
      }).fit({ authorized: photo, unauthorized: sketch });
      const state = await prompt.state();
      prompt.dispose();
      return state;
    };
    const ckpt = join(dir, 'run');
    const plain = await fit(false);
    const defended = await fit(true, ckpt);
    // The unauthorized bank is built from the U stream, disguised copies included; the trained domain projector
    // saw them in every step.
    const diff = (name: string) => Math.max(...Array.from(plain[name]!.data, (v, i) => Math.abs(v - defended[name]!.data[i]!)));
    expect(diff('target_feat_bank')).toBeGreaterThan(0);
    expect(diff('domain_tokens.linear1.0.weight')).toBeGreaterThan(0);
    const meta = (await readCheckpoint(join(ckpt, 'last.safetensors'))).meta!;
    expect(meta.training!.disguisedUnauthorized).toEqual(DEFAULT_DISGUISE);
    // The same folder without the defence is another run.
    await expect(fit(false, ckpt)).rejects.toMatchObject({ code: 'ERR_MISMATCH', message: expect.stringContaining('disguisedUnauthorized') });
  }, 240_000);
});
