// IPTrainer: schedules, scenario streams, a short protective training run, exact kill/resume, bad inputs.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Clip } from '../lib/clip/clip.js';
import { DomainDataset } from '../lib/data/dataset.js';
import { IpclipError } from '../lib/core/errors.js';
import { preprocess } from '../lib/image/preprocess.js';
import { PromptModel } from '../lib/ipclip/prompt-model.js';
import { Rng } from '../lib/core/rng.js';
import { bankStreams, trainingStreams } from '../lib/ipclip/scenario.js';
import { learningRate } from '../lib/ipclip/schedule.js';
import type { Tensor, FloatTensor } from '../lib/core/tensor.js';
import { CHECKPOINT_FILE, IPTrainer, type TrainerOptions } from '../lib/ipclip/trainer/trainer.js';
import { CLIP_TINY, HAVE_SHARED, TEST_DEVICE, VOCAB_PATH } from './helpers/fixtures.js';

const CLASSES = ['blue', 'green', 'red'];
const COLOURS: Record<string, [number, number, number]> = { red: [220, 30, 30], green: [30, 200, 40], blue: [40, 50, 230] };

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string> {
  const err = await (typeof p === 'function' ? Promise.resolve().then(p) : p).then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(IpclipError);
  return (err as IpclipError).code;
}

describe('learning-rate schedules', () => {
  it('official: 1e-5 at step 0, then 0.005·(1 + cos(π(t−1)/50)), a 100-step cycle', () => {
    const o = { preset: 'official' as const, lr: 0.01, itersPerEpoch: 7, epochs: 3 };
    expect(learningRate(0, o)).toBe(1e-5);
    expect(learningRate(1, o)).toBeCloseTo(0.01, 12);
    expect(learningRate(26, o)).toBeCloseTo(0.005 * (1 + Math.cos(Math.PI / 2)), 12);
    expect(learningRate(51, o)).toBeCloseTo(0, 12);
    expect(learningRate(101, o)).toBeCloseTo(0.01, 12); // never decays overall
  });

  it('paper: linear warm-up from 1e-5 over the first epoch, then cosine to 0', () => {
    const p = { preset: 'paper' as const, lr: 0.01, itersPerEpoch: 10, epochs: 5 };
    expect(learningRate(0, p)).toBe(1e-5);
    expect(learningRate(5, p)).toBeCloseTo(1e-5 + (0.01 - 1e-5) / 2, 12);
    expect(learningRate(10, p)).toBeCloseTo(0.01, 12);
    expect(learningRate(30, p)).toBeCloseTo(0.005, 12); // half-way through the 40 cosine steps
    expect(learningRate(49, p)).toBeCloseTo(0.005 * (1 + Math.cos((Math.PI * 39) / 40)), 12);
    expect(() => learningRate(-1, p)).toThrow(IpclipError);
    expect(() => learningRate(0, { ...p, epochs: 0 })).toThrow(IpclipError);
  });
});

describe('scenario streams', () => {
  it('gives each scenario its transforms and image source (method §5)', () => {
    expect(trainingStreams('target-specified')).toMatchObject({ authorized: { augment: 'train' }, unauthorized: { augment: 'train' }, source: 'own' });
    expect(trainingStreams('ownership')).toMatchObject({ authorized: { augment: 'train' }, unauthorized: { watermark: true, augment: 'train' }, source: 'authorized' });
    expect(trainingStreams('target-free')).toMatchObject({ authorized: { augment: 'train' }, unauthorized: { augment: 'strong' }, source: 'authorized' });
    expect(trainingStreams('authorization')).toMatchObject({ authorized: { watermark: true, augment: 'train' }, unauthorized: 'authorization-mixture' });
    expect(() => trainingStreams('bogus' as 'ownership')).toThrow(IpclipError);
  });

  it('builds banks with the training transforms (official) or with the random crop replaced by the test transform (paper)', () => {
    expect(bankStreams('ownership', 'official').unauthorized).toEqual({ watermark: true, augment: 'train' });
    expect(bankStreams('ownership', 'paper').unauthorized).toEqual({ watermark: true, augment: 'test' });
    expect(bankStreams('target-free', 'paper').unauthorized).toEqual({ augment: 'strong' });
    const mix = bankStreams('authorization', 'paper').unauthorized as (rng: Rng, i: number) => { augment: string };
    const kinds = new Set(Array.from({ length: 200 }, (_, i) => mix(new Rng(i), i).augment));
    expect([...kinds].sort()).toEqual(['strong', 'test']);
  });
});

/**
 * Two domains of the same three colour classes. Every pixel carries the class colour (so random crops keep
 * it) and the domain's texture: `dots` (dark dots every 4 px) or `stripes` (white rows every 3 px).
 */
async function makeDomains(root: string, perClass: number): Promise<void> {
  for (const domain of ['dots', 'stripes']) {
    for (const cls of CLASSES) {
      const dir = join(root, domain, cls);
      await mkdir(dir, { recursive: true });
      for (let i = 0; i < perClass; i++) {
        const size = 36 + 4 * i;
        const px = Buffer.alloc(size * size * 3);
        const [r, g, b] = COLOURS[cls]!;
        for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) {
          const shade = 0.75 + 0.25 * ((x + y + 5 * i) % 7) / 6;
          let c = [r * shade, g * shade, b * shade];
          if (domain === 'dots' && x % 4 === 0 && y % 4 === 0) c = [10, 10, 10];
          if (domain === 'stripes' && y % 3 === 0) c = [250, 250, 250];
          px.set(c.map(Math.round), (y * size + x) * 3);
        }
        await sharp(px, { raw: { width: size, height: size, channels: 3 } }).png().toFile(join(dir, `${i}.png`));
      }
    }
  }
}

describe.skipIf(!HAVE_SHARED)('IPTrainer', () => {
  let clip: Clip;
  let root: string;
  let dots: DomainDataset;
  let stripes: DomainDataset;

  beforeAll(async () => {
    clip = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, device: TEST_DEVICE });
    root = mkdtempSync(join(tmpdir(), 'ipclip-trainer-'));
    await makeDomains(root, 4);
    dots = await DomainDataset.fromFolder(root, { domain: 'dots' });
    stripes = await DomainDataset.fromFolder(root, { domain: 'stripes' });
  });
  afterAll(() => {
    clip?.dispose();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  async function accuracyOn(prompt: PromptModel, d: DomainDataset): Promise<number> {
    const preds = await prompt.classify(await preprocess(d.samples.map((s) => s.path!), { size: 32 }));
    return preds.filter((p, i) => p.index === d.samples[i]!.label).length / d.length;
  }

  async function stateOf(prompt: PromptModel): Promise<Record<string, FloatTensor>> {
    return prompt.state();
  }

  function expectSameState(a: Record<string, FloatTensor>, b: Record<string, FloatTensor>): void {
    expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
    for (const k of Object.keys(a)) expect(Array.from(b[k]!.data), k).toEqual(Array.from(a[k]!.data));
  }

  it('target-specified training keeps the authorized domain and suppresses the unauthorized one (vs a reference)', async () => {
    // The colour classes transfer across the two textures, so an unprotected prompt trained on A alone (the
    // reference, CE_A only) also works on U; the protected prompt must work on A and fail on U.
    const opts = { epochs: 12, batchSize: 4, lr: 0.01, seed: 1 };
    using reference = await PromptModel.create(clip, CLASSES, { seed: 1 });
    await new IPTrainer(reference, { ...opts, scenario: 'reference' }).fit({ authorized: dots });
    using prompt = await PromptModel.create(clip, CLASSES, { seed: 1 });
    const before = { a: await accuracyOn(prompt, dots), u: await accuracyOn(prompt, stripes) };
    const seen: number[] = [];
    const trainer = new IPTrainer(prompt, {
      ...opts, scenario: 'target-specified',
      onProgress: (p) => { seen.push(p.iteration); expect(p.totalIterations).toBe(36); expect(Number.isFinite(p.terms.loss)).toBe(true); },
    });
    const result = await trainer.fit({ authorized: dots, unauthorized: stripes });
    const after = { a: await accuracyOn(prompt, dots), u: await accuracyOn(prompt, stripes) };
    const ref = { a: await accuracyOn(reference, dots), u: await accuracyOn(reference, stripes) };
    expect(seen).toEqual(Array.from({ length: 36 }, (_, i) => i + 1));
    expect(result.iterations).toBe(36);
    expect(result.history.map((h) => h.epoch)).toEqual(Array.from({ length: 12 }, (_, i) => i));
    expect(result.history.at(-1)!.terms.ceA).toBeLessThan(result.history[0]!.terms.ceA);
    expect(after.a).toBeGreaterThanOrEqual(Math.max(before.a, 0.75));
    expect(ref.u).toBeGreaterThanOrEqual(0.6);
    expect(after.u).toBeLessThanOrEqual(Math.min(before.u, 1 / 3));
    expect(after.u).toBeLessThanOrEqual(ref.u - 0.3);
  });

  it('builds banks by the rules: authorized slots only for correct predictions', async () => {
    using prompt = await PromptModel.create(clip, CLASSES, { seed: 2 });
    const trainer = new IPTrainer(prompt, { scenario: 'target-specified', batchSize: 4, seed: 2 });
    await trainer.buildBanks({ authorized: dots, unauthorized: stripes });
    const s = await prompt.state();
    const filled = (name: string) => Array.from({ length: 15 }, (_, i) => s[name]!.data.subarray(i * 32, i * 32 + 32).some((v) => v !== 0));
    // Paper-preset banks see the test transform, so the expected slots follow from the test-transform predictions:
    // A: per class, the correctly predicted images (at most 5); U: per predicted class, every image (at most 5).
    const slots = async (d: DomainDataset, rule: 'authorized' | 'unauthorized') => {
      const preds = await prompt.predict(await preprocess(d.samples.map((x) => x.path!), { size: 32 }));
      const perClass = [0, 0, 0];
      preds.forEach((p, i) => { if (rule === 'unauthorized' || p === d.samples[i]!.label) perClass[p]!++; });
      return { total: perClass.reduce((a, c) => a + Math.min(c, 5), 0), perClass };
    };
    const a = await slots(dots, 'authorized');
    const u = await slots(stripes, 'unauthorized');
    expect(filled('source_feat_bank').filter(Boolean).length).toBe(a.total);
    expect(filled('target_feat_bank').filter(Boolean).length).toBe(u.total);
    for (let c = 0; c < 3; c++) {
      // Slot class = label (A) / prediction (U): the filled slots of class c are its first min(n_c, 5).
      expect(filled('target_feat_bank').slice(5 * c, 5 * c + 5).filter(Boolean).length).toBe(Math.min(u.perClass[c]!, 5));
    }
    expect(Array.from(s.target_feat_conf!.data).filter((v) => v > 0).length).toBe(u.total);
  });

  /** Runs `fit` to completion (resuming whatever `dir` holds), returning the final state. */
  async function fitAll(opts: TrainerOptions, data: { authorized: DomainDataset; unauthorized?: DomainDataset }) {
    using prompt = await PromptModel.create(clip, CLASSES, { seed: 5 });
    const trainer = new IPTrainer(prompt, opts);
    const result = await trainer.fit(data);
    return { state: await stateOf(prompt), result, skipped: trainer.skippedUpdates };
  }

  it('abort mid-run, then resume in a new trainer: same final parameters as an uninterrupted run', async () => {
    // U (12 images, batches of 5) is cycled over A's epochs (12 images, 3 per epoch): cycle positions must resume too.
    const small = stripes.subset([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    const base: TrainerOptions = { scenario: 'target-specified', epochs: 3, batchSize: 5, seed: 7, preset: 'official' };
    const data = { authorized: dots, unauthorized: small };
    const clean = await fitAll({ ...base, checkpointDir: mkdtempSync(join(root, 'ck-')) }, data);
    const dir = mkdtempSync(join(root, 'ck-'));
    const ctrl = new AbortController();
    {
      using prompt = await PromptModel.create(clip, CLASSES, { seed: 5 });
      const trainer = new IPTrainer(prompt, {
        ...base, checkpointDir: dir, signal: ctrl.signal, onProgress: (p) => { if (p.iteration === 4) ctrl.abort(); },
      });
      expect(await codeOf(trainer.fit(data))).toBe('ERR_ABORTED');
      expect(trainer.iteration).toBe(4);
    }
    expect(existsSync(join(dir, CHECKPOINT_FILE))).toBe(true);
    const resumed = await fitAll({ ...base, checkpointDir: dir }, data);
    expect(resumed.result.resumedFrom).toBe(4);
    expect(resumed.result.iterations).toBe(9);
    expectSameState(clean.state, resumed.state);
    expect(resumed.result.history).toEqual(clean.result.history);
  });

  it('a crash between checkpoints (paired ownership streams) resumes from the last one exactly', async () => {
    const base: TrainerOptions = { scenario: 'ownership', epochs: 2, batchSize: 4, seed: 3, checkpointEvery: 2 };
    const clean = await fitAll(base, { authorized: dots });
    const dir = mkdtempSync(join(root, 'ck-'));
    {
      using prompt = await PromptModel.create(clip, CLASSES, { seed: 5 });
      const trainer = new IPTrainer(prompt, { ...base, checkpointDir: dir, onProgress: (p) => { if (p.iteration === 5) throw new Error('simulated crash'); } });
      await expect(trainer.fit({ authorized: dots })).rejects.toThrow('simulated crash');
    }
    const resumed = await fitAll({ ...base, checkpointDir: dir }, { authorized: dots });
    expect(resumed.result.resumedFrom).toBe(4); // the checkpoint of iteration 4; iteration 5 is redone
    expectSameState(clean.state, resumed.state);
  });

  it('reference training optimises CE_A only', async () => {
    using prompt = await PromptModel.create(clip, CLASSES, { seed: 1 });
    const trainer = new IPTrainer(prompt, { scenario: 'reference', epochs: 1, batchSize: 4 });
    await trainer.fit({ authorized: dots });
    const batch = { images: await preprocess(dots.samples.slice(0, 4).map((s) => s.path!), { size: 32 }), labels: Int32Array.from(dots.samples.slice(0, 4), (s) => s.label) };
    const t = await trainer.step(batch, batch, { update: false });
    expect(t.loss).toBeCloseTo(t.ceA, 5);
    const banks = await prompt.state();
    expect(banks.source_feat_bank!.data.every((v) => v === 0)).toBe(true); // the reference builds no banks
  });

  it('refuses bad inputs with clear errors and leaves the prompt untouched', async () => {
    using prompt = await PromptModel.create(clip, CLASSES, { seed: 1 });
    const trainer = new IPTrainer(prompt, { scenario: 'target-specified', batchSize: 4 });
    const empty = DomainDataset.fromSamples([], CLASSES);
    expect(await codeOf(trainer.fit({ authorized: empty, unauthorized: stripes }))).toBe('ERR_EMPTY_INPUT');
    expect(await codeOf(trainer.fit({ authorized: dots }))).toBe('ERR_INVALID_ARGUMENT'); // no target domain
    const other = DomainDataset.fromSamples(dots.samples, ['cyan', 'magenta', 'yellow']);
    expect(await codeOf(trainer.fit({ authorized: dots, unauthorized: other }))).toBe('ERR_MISMATCH');
    expect(await codeOf(Promise.resolve().then(() => new IPTrainer(prompt, { scenario: 'ownership', batchSize: 1 })))).toBe('ERR_INVALID_ARGUMENT');
    expect(await codeOf(Promise.resolve().then(() => new IPTrainer(prompt, { scenario: 'nope' as 'ownership' })))).toBe('ERR_INVALID_ARGUMENT');
    // The trainer takes the prompt model alone; the old (clip, prompt, options) call is refused, naming the new one.
    const old = () => new (IPTrainer as unknown as new (...a: unknown[]) => IPTrainer)(clip, prompt, { scenario: 'ownership' });
    expect(old).toThrow(/new IPTrainer\(promptModel, options\)/);
    expect(new IPTrainer(prompt, { scenario: 'ownership' }).clip).toBe(clip);

    const before = await prompt.state();
    const images = await preprocess(dots.samples.slice(0, 4).map((s) => s.path!), { size: 32 });
    const labels = Int32Array.from(dots.samples.slice(0, 4), (s) => s.label);
    const nan = { images: { data: images.data.slice(), shape: images.shape }, labels };
    nan.images.data[7] = NaN;
    expect(await codeOf(trainer.step({ images, labels }, nan))).toBe('ERR_NON_FINITE');
    expect(await codeOf(trainer.step({ images, labels }, { images, labels: Int32Array.from([0, 1, 2, 3]) }))).toBe('ERR_INVALID_ARGUMENT');
    expect(trainer.iteration).toBe(0);
    // Finite inputs whose loss overflows: the native step skips the update and the trainer counts it.
    const huge = { images: { data: images.data.map((v) => v * 1e37), shape: images.shape }, labels };
    const t = await trainer.step(huge, huge);
    expect(t.skipped).toBe(true);
    expect(trainer.skippedUpdates).toBe(1);
    expectSameState(before, await prompt.state());

    // An unreadable image fails with the sample named; a checkpoint of another run is refused.
    const broken = join(root, 'broken');
    await mkdir(join(broken, 'dots', 'blue'), { recursive: true });
    await writeFile(join(broken, 'dots', 'blue', 'x.png'), 'not an image');
    const bad = DomainDataset.fromSamples([...dots.samples, { path: join(broken, 'dots', 'blue', 'x.png'), label: 0 }], CLASSES);
    expect(await codeOf(trainer.fit({ authorized: bad, unauthorized: stripes }))).toBe('ERR_BAD_IMAGE');
    const dir = mkdtempSync(join(root, 'ck-'));
    await fitAll({ scenario: 'ownership', epochs: 1, batchSize: 4, checkpointDir: dir }, { authorized: dots });
    expect(await codeOf(fitAll({ scenario: 'target-free', epochs: 1, batchSize: 4, checkpointDir: dir }, { authorized: dots }))).toBe('ERR_MISMATCH');
  });
});
