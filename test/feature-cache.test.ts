// The feature cache: stepFeatures(encodeVision(x)) is step(x), stepCached is stepFeatures bit for bit; a cached fit is the image-path fit with the
// frozen transforms; later epochs never run the vision tower; resuming stays exact; bad shapes are refused.
// The two identities run on a float64 CLIP (prompt, banks and Adam then run in float64 too) and must hold to
// 1e-10 of each tensor's scale, whatever the kernel path; the bit-exact resume stays in fp32 (same arithmetic).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Clip } from '../lib/clip/clip.js';
import { DomainDataset, type Sample } from '../lib/data/dataset.js';
import { IpclipError } from '../lib/core/errors.js';
import { BatchLoader } from '../lib/data/loader.js';
import { callNative } from '../lib/native/errors.js';
import type { NativeVisionFeatures } from '../lib/native/types.js';
import { PromptModel } from '../lib/ipclip/prompt-model.js';
import { Rng } from '../lib/core/rng.js';
import { stepLoss } from '../lib/ipclip/scenario.js';
import { learningRate } from '../lib/ipclip/schedule.js';
import type { FloatTensor } from '../lib/core/tensor.js';
import { IPTrainer, type TrainerOptions } from '../lib/ipclip/trainer/trainer.js';
import { EXACT, lossScale, maxAbs, relToScale } from './helpers/exactness.js';
import { CLIP_TINY, HAVE_SHARED, TEST_DEVICE, VOCAB_PATH } from './helpers/fixtures.js';

const CLASSES = ['blue', 'green', 'red'];
const COLOURS: [number, number, number][] = [[40, 50, 230], [30, 200, 40], [220, 30, 30]];

/** Three small PNGs per colour class, each with its own texture. */
async function colourSamples(): Promise<Sample[]> {
  const out: Sample[] = [];
  for (let label = 0; label < 3; label++) {
    for (let i = 0; i < 3; i++) {
      const size = 30 + 5 * i;
      const px = Buffer.alloc(size * size * 3);
      for (let p = 0; p < size * size; p++) {
        const shade = 0.7 + 0.3 * (((p % size) + Math.floor(p / size) * (i + 2)) % 5) / 4;
        px.set(COLOURS[label]!.map((c) => Math.round(c * shade)), p * 3);
      }
      out.push({ buffer: await sharp(px, { raw: { width: size, height: size, channels: 3 } }).png().toBuffer(), label });
    }
  }
  return out;
}

function maxAbsDiff(a: Record<string, FloatTensor>, b: Record<string, FloatTensor>): number {
  expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
  let m = 0;
  for (const k of Object.keys(a)) a[k]!.data.forEach((v, i) => { m = Math.max(m, Math.abs(v - b[k]!.data[i]!)); });
  return m;
}

/** The largest per-tensor difference relative to that tensor's scale; tensors that are zero must match exactly. */
function maxRelToScale(a: Record<string, FloatTensor>, b: Record<string, FloatTensor>): number {
  expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
  let worst = 0;
  let nonZero = 0;
  for (const k of Object.keys(a)) {
    expect(a[k]!.data, k).toBeInstanceOf(Float64Array);
    if (maxAbs(a[k]!.data) === 0 && maxAbs(b[k]!.data) === 0) continue;
    nonZero++;
    worst = Math.max(worst, relToScale(a[k]!.data, b[k]!.data, k));
  }
  expect(nonZero).toBeGreaterThan(0);
  return worst;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(IpclipError);
  return (err as IpclipError).code;
}

describe.skipIf(!HAVE_SHARED)('feature cache', () => {
  let clip: Clip;
  let clip64: Clip; // float64 on the CPU: the exactness checks
  let data: DomainDataset;
  let size: number;
  const opts: TrainerOptions = { scenario: 'ownership', epochs: 2, batchSize: 4, bankBatchSize: 4, lr: 0.01, seed: 3, workers: 0 };

  beforeAll(async () => {
    clip = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, device: TEST_DEVICE });
    clip64 = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, device: 'cpu', dtype: 'float64' });
    size = clip.config.vision.imageSize;
    data = DomainDataset.fromSamples(await colourSamples(), CLASSES, { domain: 'colours' });
  });
  afterAll(() => {
    clip?.dispose();
    clip64?.dispose();
  });

  function randomImages(rng: Rng, n: number): { data: Float32Array; shape: number[] } {
    return { data: Float32Array.from({ length: n * 3 * size * size }, () => rng.normal()), shape: [n, 3, size, size] };
  }

  it('stepFeatures(encodeVision(x)) gives the same terms and gradients as step(x) (float64, 1e-10 of scale)', async () => {
    using prompt = await PromptModel.create(clip64, CLASSES, { seed: 4 });
    const native = prompt.native;
    const rng = new Rng(11);
    const xA = randomImages(rng, 3), xU = randomImages(rng, 3);
    const yA = Int32Array.from([0, 1, 2]), yU = Int32Array.from([2, 2, 1]);
    const stepOpts = { ...stepLoss('target-specified', 'paper'), lr: 0.01, weightDecay: 5e-4, update: false, returnOutputs: true, trainEnhancer: true };
    const byImages = await native.step(xA.data, xA.shape, yA, xU.data, xU.shape, yU, stepOpts);
    const gradImages = native.gradients();
    const fA = await native.encodeVision(xA.data, xA.shape), fU = await native.encodeVision(xU.data, xU.shape);
    expect(fA.embeds.shape).toEqual([3, clip.config.embedDim]);
    expect(fA.stats.shape).toEqual([clip.config.vision.layers, 3, 2, clip.config.vision.width]);
    const byFeatures = await native.stepFeatures(fA, yA, fU, yU, stepOpts);
    const gradFeatures = native.gradients();
    expect(fA.embeds.data).toBeInstanceOf(Float64Array);
    expect(fA.stats.data).toBeInstanceOf(Float64Array);
    // Each term against its own size; the total (a nearly cancelling sum) against the sum of the terms' sizes.
    for (const [k, v] of Object.entries(byImages.terms)) {
      const scale = k === 'loss' ? lossScale(byImages.terms, 'target-specified', 'paper') : Math.abs(v);
      expect(scale, k).toBeGreaterThan(0);
      expect(Math.abs(byFeatures.terms[k as keyof typeof byImages.terms] - v), k).toBeLessThanOrEqual(EXACT * scale);
    }
    expect(Object.keys(gradFeatures).sort()).toEqual(Object.keys(gradImages).sort());
    expect(Object.keys(gradImages).length).toBeGreaterThan(0);
    // A bias feeding a training-mode BatchNorm (the enhancer's pre_project) has a zero gradient by construction (the
    // batch mean is subtracted): it is 0 or a few ulps of round-off depending on the CPU's kernels (exactly 0 on an
    // AVX-512 Xeon). Such tensors are compared against a thousandth of the largest gradient's size instead of their own.
    const largest = Math.max(...Object.values(gradImages).map((g) => Math.max(...Array.from(g.data, Math.abs))));
    expect(largest).toBeGreaterThan(0);
    for (const k of Object.keys(gradImages)) {
      expect(gradImages[k]!.data, k).toBeInstanceOf(Float64Array);
      const a = gradFeatures[k]!.data, b = gradImages[k]!.data;
      const own = Math.max(...Array.from(a, Math.abs), ...Array.from(b, Math.abs));
      if (own < 1e-3 * largest) {
        const diff = Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i]!)));
        expect(diff, k).toBeLessThanOrEqual(EXACT * 1e-3 * largest);
      } else {
        expect(relToScale(a, b, k), k).toBeLessThanOrEqual(EXACT);
      }
    }
  });

  it('stepCached on cached rows is bit-identical to stepFeatures on the same batch; uncached rows are refused', async () => {
    using prompt = await PromptModel.create(clip, CLASSES, { seed: 5 });
    const native = prompt.native;
    const rng = new Rng(12);
    const xA = randomImages(rng, 3), xU = randomImages(rng, 3);
    const yA = Int32Array.from([0, 1, 2]), yU = Int32Array.from([2, 0, 1]);
    const stepOpts = { ...stepLoss('ownership', 'paper'), lr: 0.01, weightDecay: 5e-4, update: false, returnOutputs: true };
    const byFeatures = await native.stepFeatures(await native.encodeVision(xA.data, xA.shape), yA,
      await native.encodeVision(xU.data, xU.shape), yU, stepOpts);
    const gradFeatures = native.gradients();
    // Rows stored out of order in caches larger than the batch, gathered back in batch order.
    await native.cacheFeatures('authorized', 5, Int32Array.from([4, 0, 2]), xA.data, xA.shape);
    await native.cacheFeatures('unauthorized', 7, Int32Array.from([1, 6, 3]), xU.data, xU.shape);
    const byCache = await native.stepCached(Int32Array.from([4, 0, 2]), yA, Int32Array.from([1, 6, 3]), yU, stepOpts);
    expect(byCache.terms).toEqual(byFeatures.terms);
    expect(Number.isFinite(byCache.terms.loss)).toBe(true);
    for (const k of Object.keys(byFeatures.outputs!) as (keyof NonNullable<typeof byFeatures.outputs>)[])
      expect(byCache.outputs![k].data, k).toEqual(byFeatures.outputs![k].data);
    expect(maxAbsDiff(native.gradients(), gradFeatures)).toBe(0);
    // A sample never cached, one outside the stream, and a cache cleared: ERR_INVALID_ARGUMENT, nothing updated.
    for (const idx of [[4, 0, 1], [4, 0, 5]])
      expect(await codeOf(callNative(() => native.stepCached(Int32Array.from(idx), yA, Int32Array.from([1, 6, 3]), yU, stepOpts)))).toBe('ERR_INVALID_ARGUMENT');
    expect(await codeOf(callNative(() => native.cacheFeatures('authorized', 2, Int32Array.from([0, 1, 2]), xA.data, xA.shape)))).toBe('ERR_INVALID_ARGUMENT');
    expect(await codeOf(callNative(() => native.cacheFeatures('authorized', 5, Int32Array.from([0, 1]), xA.data, xA.shape)))).toBe('ERR_INVALID_ARGUMENT');
    await native.clearFeatures();
    expect(await codeOf(callNative(() => native.stepCached(Int32Array.from([4, 0, 2]), yA, Int32Array.from([1, 6, 3]), yU, stepOpts)))).toBe('ERR_INVALID_ARGUMENT');
  });

  it('a cached 2-epoch fit equals the image path with the same frozen transforms, and epoch 2 never runs the vision tower', async () => {
    // Ownership's transforms under the cache are the test transform (A) and watermark + test transform (U):
    // both deterministic, so the image path fed by loaders with exactly those transforms, in the trainer's
    // batch order (the A loader's seed), is the same computation with the vision tower run every step.
    using cachedPrompt = await PromptModel.create(clip64, CLASSES, { seed: 9 });
    const native = cachedPrompt.native;
    const cache = native.cacheFeatures.bind(native);
    const callsAtIteration: number[] = [];
    let iterationsSeen = 0;
    // The bound method is read-only on the prototype: shadow it with an own property. cacheFeatures is the only
    // call of a cached fit that runs the vision tower (stepCached gathers the cached rows).
    Object.defineProperty(native, 'cacheFeatures', {
      value: (...args: Parameters<typeof cache>) => { callsAtIteration.push(iterationsSeen); return cache(...args); },
    });
    const cached = new IPTrainer(cachedPrompt, { ...opts, featureCache: true, onProgress: () => { iterationsSeen++; } });
    const result = await cached.fit({ authorized: data });
    expect(result.history).toHaveLength(2);
    expect(iterationsSeen).toBe(4); // 9 samples, batch 4, a last single image merged into the batch before: 2 per epoch
    // One pass per stream (A and watermarked U), in batches of bankBatchSize, all before the first step.
    expect(callsAtIteration).toEqual([0, 0, 0, 0, 0, 0]);

    using imagePrompt = await PromptModel.create(clip64, CLASSES, { seed: 9 });
    const plain = new IPTrainer(imagePrompt, opts);
    await plain.buildBanks({ authorized: data });
    const loader = (transform: { watermark?: boolean; augment: 'test' }) => new BatchLoader(data, {
      batchSize: 4, size, seed: plain.streamSeeds.authorized, shuffle: true, transform, mergeSingleLast: true, workers: 0,
    });
    const aL = loader({ augment: 'test' }), uL = loader({ watermark: true, augment: 'test' });
    try {
      const perEpoch = aL.batchesPerEpoch();
      for (let it = 0; it < 2 * perEpoch; it++) {
        const [e, b] = [Math.floor(it / perEpoch), it % perEpoch];
        const lr = learningRate(it, { preset: 'paper', lr: 0.01, itersPerEpoch: perEpoch, epochs: 2 });
        await plain.step(await aL.batchAt(e, b), await uL.batchAt(e, b), { lr });
      }
    } finally {
      await aL.close();
      await uL.close();
    }
    // float64: the features are computed in batches of 32 (cache) vs 4 and 5 (image path), a different summation
    // order that fp32 rounding and Adam would turn into parameter differences of order 1e-5.
    expect(maxRelToScale(await cachedPrompt.state(), await imagePrompt.state())).toBeLessThanOrEqual(EXACT);
    // The comparison is not vacuous: training moved the parameters far more than the tolerance.
    using fresh = await PromptModel.create(clip64, CLASSES, { seed: 9 });
    expect(maxAbsDiff(await fresh.state(), await cachedPrompt.state())).toBeGreaterThan(1e-3);
  });

  it('resumes a cached run exactly (the cache is rebuilt from the seed)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ipclip-fcache-'));
    try {
      const cachedOpts = { ...opts, scenario: 'target-free' as const, featureCache: true };
      using whole = await PromptModel.create(clip, CLASSES, { seed: 6 });
      await new IPTrainer(whole, cachedOpts).fit({ authorized: data });
      using resumed = await PromptModel.create(clip, CLASSES, { seed: 6 });
      const stop = new AbortController();
      const first = new IPTrainer(resumed, { ...cachedOpts, checkpointDir: dir, signal: stop.signal, onProgress: (p) => { if (p.iteration === 3) stop.abort(); } });
      expect(await codeOf(first.fit({ authorized: data }))).toBe('ERR_ABORTED');
      // The same run without the cache would mix two augmentation rules: its checkpoint is refused.
      using other = await PromptModel.create(clip, CLASSES, { seed: 6 });
      expect(await codeOf(new IPTrainer(other, { ...cachedOpts, featureCache: false, checkpointDir: dir }).fit({ authorized: data })))
        .toBe('ERR_MISMATCH');
      using again = await PromptModel.create(clip, CLASSES, { seed: 6 });
      const r = await new IPTrainer(again, { ...cachedOpts, checkpointDir: dir }).fit({ authorized: data });
      expect(r.resumedFrom).toBe(3);
      expect(maxAbsDiff(await whole.state(), await again.state())).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses features whose shapes do not match the model with ERR_INVALID_ARGUMENT', async () => {
    using prompt = await PromptModel.create(clip, CLASSES, { seed: 1 });
    const native = prompt.native;
    const x = randomImages(new Rng(2), 2);
    const f = await native.encodeVision(x.data, x.shape);
    const y = Int32Array.from([0, 1]);
    const o = { ...stepLoss('target-specified', 'paper'), lr: 0.01, weightDecay: 0, update: false, returnOutputs: false, trainEnhancer: false };
    const [L, B, , W] = f.stats.shape as [number, number, number, number];
    const D = f.embeds.shape[1]!;
    const bad: NativeVisionFeatures[] = [
      { embeds: { data: new Float32Array(B * (D + 1)), shape: [B, D + 1] }, stats: f.stats },
      { embeds: f.embeds, stats: { data: new Float32Array((L + 1) * B * 2 * W), shape: [L + 1, B, 2, W] } },
      { embeds: f.embeds, stats: { data: new Float32Array(L * B * 2 * (W - 1)), shape: [L, B, 2, W - 1] } },
      { embeds: f.embeds, stats: { data: new Float32Array(L * (B + 1) * 2 * W), shape: [L, B + 1, 2, W] } },
      { embeds: f.embeds, stats: { data: new Float32Array(3), shape: [L, B, 2, W] } },
      { embeds: f.embeds } as unknown as NativeVisionFeatures,
    ];
    for (const b of bad) {
      expect(await codeOf(callNative(() => native.stepFeatures(b, y, f, y, o)))).toBe('ERR_INVALID_ARGUMENT');
      expect(await codeOf(callNative(() => native.stepFeatures(f, y, b, y, o)))).toBe('ERR_INVALID_ARGUMENT');
    }
    expect(await codeOf(callNative(() => native.stepFeatures(f, Int32Array.from([0]), f, y, o)))).toBe('ERR_INVALID_ARGUMENT');
    const r = await native.stepFeatures(f, y, f, y, o); // the good features pass
    expect(Number.isFinite(r.terms.loss)).toBe(true);
  });
});
