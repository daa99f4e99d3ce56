// The training streams as the method defines them (issue 9, items 4, 6, 7 and 14c): what fit() feeds to each
// step. A recording trainer replaces the native step (and the bank pass), so these tests observe the actual
// batches of the loop (indices, per-sample transforms, pixels) without training anything.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError, parseCommand, type Io } from '../lib/cli/args.js';
import { evalCommand } from '../lib/cli/evaluate.js';
import { trainCommand } from '../lib/cli/train.js';
import { Clip } from '../lib/clip/clip.js';
import { DomainDataset, type Sample } from '../lib/data/dataset.js';
import { IpclipError } from '../lib/core/errors.js';
import { BatchLoader, cycledDraws, type Batch } from '../lib/data/loader.js';
import { preprocess } from '../lib/image/preprocess.js';
import { PromptModel } from '../lib/ipclip/prompt-model.js';
import { referenceFits, referenceStreams, trainingStreams } from '../lib/ipclip/scenario.js';
import { StreamSchedule, resolvePairing } from '../lib/ipclip/trainer/streams.js';
import { CHECKPOINT_FILE, IPTrainer, type StepTerms, type TrainBatch, type TrainerOptions } from '../lib/ipclip/trainer/trainer.js';
import type { TransformSpec } from '../lib/image/transforms.js';
import { CLIP_TINY, HAVE_SHARED, TEST_DEVICE, VOCAB_PATH } from './helpers/fixtures.js';

const CLASSES = ['a', 'b', 'c'];
const MEAN = [0.48145466, 0.4578275, 0.40821073];
const STD = [0.26862954, 0.26130258, 0.27577711];
/** Dark solid colours (every channel ≤ 40): a clean image stays dark, a watermarked one is mostly white. */
const DARK: [number, number, number][] = [[40, 10, 10], [10, 40, 10], [10, 10, 40]];

/** `n` in-memory solid dark images of varied sizes, labels cycling over the classes. */
async function darkDataset(n: number, domain: string): Promise<DomainDataset> {
  const samples: Sample[] = [];
  for (let i = 0; i < n; i++) {
    const [r, g, b] = DARK[i % 3]!;
    const buffer = await sharp({ create: { width: 33 + 3 * i, height: 36 + (i % 4), channels: 3, background: { r, g, b } } }).png().toBuffer();
    samples.push({ buffer, label: i % 3 });
  }
  return DomainDataset.fromSamples(samples, CLASSES, { domain });
}

/** Pixel values (0–255, channel-major) of image `k` of a batch, undoing CLIP's normalisation. */
function pixels(b: { images: { data: Float32Array; shape: readonly number[] } }, k: number): number[] {
  const [, , h, w] = b.images.shape as [number, number, number, number];
  const plane = h * w;
  const out: number[] = [];
  for (let c = 0; c < 3; c++) {
    for (let p = 0; p < plane; p++) out.push((b.images.data[(k * 3 + c) * plane + p]! * STD[c]! + MEAN[c]!) * 255);
  }
  return out;
}
const mean = (v: number[]) => v.reduce((s, x) => s + x, 0) / v.length;
/** A clean dark image after any crop/flip: every value within rounding of a channel ≤ 40. */
const isDark = (v: number[]) => Math.max(...v) <= 41;
/** Watermarked (3/4 of the pixels white before the crop): far brighter than any dark image. */
const looksWatermarked = (v: number[]) => mean(v) >= 120;

const ZERO: Omit<StepTerms, 'lr'> = { loss: 0, ceA: 0, ceU: 0, ceSelf: 0, ceCross: 0, mse: 0, kl: 0, entropy: 0, skipped: false };

/** A trainer whose step records the batches fit() feeds it instead of running the model; no bank pass. */
class RecordingTrainer extends IPTrainer {
  readonly fed: { a: Batch; u: Batch; iteration: number }[] = [];
  override async step(a: TrainBatch, u: TrainBatch, opts: { lr?: number } = {}): Promise<StepTerms> {
    this.fed.push({ a: a as Batch, u: u as Batch, iteration: this.iteration });
    this.iteration++;
    return { ...ZERO, lr: opts.lr ?? 0 };
  }
  override async buildBanks(): Promise<void> {}
}

const specKey = (s: TransformSpec) => `${s.watermark ? 'watermark' : 'clean'}+${s.augment}`;

describe('stream rules without a model', () => {
  it('resolves the pairing per preset and refuses pairing a dataset of its own', () => {
    expect(resolvePairing('authorized', 'paper')).toBe('paired');
    expect(resolvePairing('authorized', 'official')).toBe('independent');
    expect(resolvePairing('authorized', 'paper', 'independent')).toBe('independent');
    expect(resolvePairing('own', 'paper')).toBe('independent');
    expect(() => resolvePairing('own', 'paper', 'paired')).toThrow(IpclipError);
    expect(() => resolvePairing('authorized', 'paper', 'zip' as 'paired')).toThrow(IpclipError);
  });

  it('trains the reference on its scenario\'s authorized stream', () => {
    expect(referenceStreams('authorization').authorized).toEqual({ watermark: true, augment: 'train' });
    expect(referenceStreams('ownership').authorized).toEqual({ augment: 'train' });
    expect(trainingStreams('reference')).toMatchObject({ authorized: { augment: 'train' }, referenceFor: 'target-specified' });
    expect(trainingStreams('reference', 'authorization').authorized).toEqual({ watermark: true, augment: 'train' });
    expect(() => trainingStreams('ownership', 'authorization')).toThrow(IpclipError);
    // Which reference is the baseline of which prompt: the same kind of authorized images.
    expect(referenceFits('authorization', 'authorization')).toBe(true);
    expect(referenceFits('authorization', 'target-specified')).toBe(false);
    expect(referenceFits('ownership', 'target-free')).toBe(true);
  });

  it('merges a single-image last batch into the one before it, and cycles U across its passes', async () => {
    const ds = await darkDataset(9, 'nine');
    const merged = new BatchLoader(ds, { batchSize: 4, size: 8, seed: 1, mergeSingleLast: true, transform: { augment: 'test' }, workers: 0 });
    expect(merged.batchesPerEpoch()).toBe(2);
    expect([merged.batchRange(0), merged.batchRange(1)]).toEqual([[0, 4], [4, 9]]);
    const sizes = [];
    for await (const b of merged.epoch(3)) sizes.push(b.indices.length);
    expect(sizes).toEqual([4, 5]);
    // 10 samples leave a last batch of 2: kept as it is.
    const ten = new BatchLoader(await darkDataset(10, 'ten'), { batchSize: 4, size: 8, seed: 1, mergeSingleLast: true, transform: { augment: 'test' }, workers: 0 });
    expect(ten.batchesPerEpoch()).toBe(3);
    expect(ten.batchRange(2)).toEqual([8, 10]);
    // Samples 7..11 of the endless stream: the last two of pass 0, then the first three of pass 1.
    const o0 = merged.order(0), o1 = merged.order(1);
    expect(cycledDraws(merged, 7, 5)).toEqual([
      { epoch: 0, index: o0[7] }, { epoch: 0, index: o0[8] }, { epoch: 1, index: o1[0] }, { epoch: 1, index: o1[1] }, { epoch: 1, index: o1[2] },
    ]);
    // A draw is the sample exactly as it is at its place in its epoch.
    const train = new BatchLoader(ds, { batchSize: 4, size: 8, seed: 3, transform: { watermark: true, augment: 'train' }, workers: 0 });
    const b1 = await train.batchAt(1, 1);
    const same = await train.batchOf(b1.indices.map((index) => ({ epoch: 1, index })));
    expect(Array.from(same.images.data)).toEqual(Array.from(b1.images.data));
    expect(same.specs).toEqual(b1.indices.map(() => ({ watermark: true, augment: 'train' })));
    await expect(train.batchOf([{ epoch: 0, index: 9 }])).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await Promise.all([merged.close(), ten.close(), train.close()]);
  });

  it('`ipclip train` refuses --reference-for without the reference scenario and --pairing paired with a U of its own', async () => {
    const io = { stdout: { write: () => true }, stderr: { write: () => true } } as unknown as Io;
    const train = (...args: string[]) => trainCommand.run(parseCommand(trainCommand, ['--data', '/nonexistent', '--authorized', 'photo', ...args]), io);
    await expect(train('--scenario', 'ownership', '--reference-for', 'authorization')).rejects.toThrow(UsageError);
    await expect(train('--unauthorized', 'sketch', '--pairing', 'paired')).rejects.toThrow(/--pairing paired/);
    await expect(train('--scenario', 'reference', '--reference-for', 'bogus')).rejects.toThrow(/--reference-for must be one of/);
    await expect(train('--scenario', 'ownership', '--pairing', 'sideways')).rejects.toThrow(/--pairing must be one of/);
  });

  it('schedules independent U as one endless stream beside every A sample once per epoch', async () => {
    const a = new BatchLoader(await darkDataset(10, 'A'), { batchSize: 4, size: 8, seed: 5, mergeSingleLast: true, transform: { augment: 'test' }, workers: 0 });
    const u = new BatchLoader(await darkDataset(7, 'U'), { batchSize: 4, size: 8, seed: 6, transform: { augment: 'test' }, workers: 0 });
    const s = new StreamSchedule(a, u, 'independent');
    const steps = [...s.steps(0, 3 * s.perEpoch)];
    expect(steps.map((x) => x.a.length)).toEqual([4, 4, 2, 4, 4, 2, 4, 4, 2]);
    for (const x of steps) expect(x.u.length).toBe(x.a.length);
    const uSeq = steps.flatMap((x) => x.u);
    expect(uSeq).toEqual(cycledDraws(u, 0, 30));
    expect(uSeq.slice(0, 28).map((d) => d.epoch)).toEqual(Array.from({ length: 28 }, (_, k) => Math.floor(k / 7)));
    expect(() => new StreamSchedule(a, u, 'paired')).toThrow(IpclipError);
    await Promise.all([a.close(), u.close()]);
  });
});

describe.skipIf(!HAVE_SHARED)('what fit() feeds the step', () => {
  let clip: Clip;
  let dir: string;
  let twelve: DomainDataset;
  let nine: DomainDataset;
  let seven: DomainDataset;

  beforeAll(async () => {
    clip = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, device: TEST_DEVICE });
    dir = mkdtempSync(join(tmpdir(), 'ipclip-streams-'));
    [twelve, nine, seven] = await Promise.all([darkDataset(12, 'twelve'), darkDataset(9, 'nine'), darkDataset(7, 'seven')]);
  });
  afterAll(() => {
    clip?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function record(opts: TrainerOptions, data: { authorized: DomainDataset; unauthorized?: DomainDataset }) {
    using prompt = await PromptModel.create(clip, CLASSES, { seed: 1 });
    const trainer = new RecordingTrainer(prompt, { workers: 0, ...opts });
    const result = await trainer.fit(data);
    return { fed: trainer.fed, result, trainer };
  }

  /** Each epoch's A indices, in order. */
  const epochsOf = (fed: { a: Batch }[], perEpoch: number) =>
    Array.from({ length: fed.length / perEpoch }, (_, e) => fed.slice(e * perEpoch, (e + 1) * perEpoch).flatMap((f) => f.a.indices));

  it('an epoch is one full pass over A; U wraps around its passes instead of cutting A\'s batch', async () => {
    // |U| = 7 with batches of 4 ends U's pass on a short batch at every step count; before, A's batch was cut
    // to match (skipping authorized samples). |A| = 9: the last single image joins the batch before it.
    const { fed, result } = await record({ scenario: 'target-specified', epochs: 3, batchSize: 4, seed: 2 }, { authorized: nine, unauthorized: seven });
    expect(result.iterations).toBe(6);
    expect(fed.map((f) => f.a.indices.length)).toEqual([4, 5, 4, 5, 4, 5]);
    for (const f of fed) expect(f.u.indices.length).toBe(f.a.indices.length);
    for (const e of epochsOf(fed, 2)) expect([...e].sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    // U's samples in order: 27 = 3 full passes over its 7 images, then 6 of the fourth, each pass a permutation.
    const u = fed.flatMap((f) => f.u.indices);
    expect(u).toHaveLength(27);
    for (let p = 0; p < 3; p++) expect(u.slice(7 * p, 7 * p + 7).sort()).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(new Set(u.slice(21)).size).toBe(6);
    // The labels fed are the samples' own.
    for (const f of fed) {
      expect(Array.from(f.a.labels)).toEqual(f.a.indices.map((i) => nine.samples[i]!.label));
      expect(Array.from(f.u.labels)).toEqual(f.u.indices.map((i) => seven.samples[i]!.label));
    }
  });

  it('pairs U with A\'s images under `paper` and draws them independently under `official` (as the release)', async () => {
    const paper = await record({ scenario: 'ownership', epochs: 2, batchSize: 4, seed: 3 }, { authorized: twelve });
    expect(paper.trainer.options.pairing).toBe('paired');
    for (const f of paper.fed) expect(f.u.indices).toEqual(f.a.indices);
    const official = await record({ scenario: 'ownership', preset: 'official', epochs: 4, batchSize: 4, seed: 3 }, { authorized: twelve });
    expect(official.trainer.options.pairing).toBe('independent');
    // U runs through the authorized images in passes of its own: each block of 12 is a permutation ...
    const u = official.fed.flatMap((f) => f.u.indices);
    for (let p = 0; p < 4; p++) expect(u.slice(12 * p, 12 * p + 12).sort((x, y) => x - y)).toEqual(Array.from({ length: 12 }, (_, i) => i));
    // ... unrelated to A's: an independent shuffle matches A's image at a position with probability 1/12.
    const a = official.fed.flatMap((f) => f.a.indices);
    const matches = a.filter((x, k) => x === u[k]).length;
    expect(matches).toBeLessThanOrEqual(12); // 48 positions: expected 4, binomial sd 1.9
    // The same seen through the labels (3 classes): paired streams agree at every position, independent ones at
    // about a third of them (expected 16 of 48, sd 3.3).
    const labelsA = official.fed.flatMap((f) => Array.from(f.a.labels)), labelsU = official.fed.flatMap((f) => Array.from(f.u.labels));
    expect(labelsA.filter((l, k) => l === labelsU[k]).length).toBeLessThanOrEqual(32);
    for (const f of paper.fed) expect(Array.from(f.u.labels)).toEqual(Array.from(f.a.labels));
    // The option is honoured both ways, and recorded: a paired checkpoint does not resume as independent.
    const indep = await record({ scenario: 'target-free', epochs: 1, batchSize: 4, seed: 3, pairing: 'independent' }, { authorized: twelve });
    expect(indep.fed.some((f) => f.u.indices.join() !== f.a.indices.join())).toBe(true);
    const paired = await record({ scenario: 'target-free', preset: 'official', epochs: 1, batchSize: 4, seed: 3, pairing: 'paired' }, { authorized: twelve });
    for (const f of paired.fed) expect(f.u.indices).toEqual(f.a.indices);
    const ck = mkdtempSync(join(dir, 'ck-'));
    await record({ scenario: 'ownership', epochs: 1, batchSize: 4, seed: 3, checkpointDir: ck }, { authorized: twelve });
    await expect(record({ scenario: 'ownership', epochs: 1, batchSize: 4, seed: 3, checkpointDir: ck, pairing: 'independent' }, { authorized: twelve }))
      .rejects.toMatchObject({ code: 'ERR_MISMATCH' });
  });

  it('gives U the watermark in ownership (A clean)', async () => {
    const { fed } = await record({ scenario: 'ownership', epochs: 1, batchSize: 4, seed: 4 }, { authorized: twelve });
    for (const f of fed) {
      f.a.indices.forEach((_, k) => {
        expect(f.a.specs[k]).toEqual({ augment: 'train' });
        expect(isDark(pixels(f.a, k))).toBe(true);
        expect(f.u.specs[k]).toEqual({ watermark: true, augment: 'train' });
        expect(looksWatermarked(pixels(f.u, k))).toBe(true);
      });
    }
  });

  it('gives U the strong augmentation in target-free', async () => {
    const { fed } = await record({ scenario: 'target-free', epochs: 1, batchSize: 4, seed: 5 }, { authorized: twelve });
    for (const f of fed) {
      // Paired: U's sample k is A's image; strong augmentation ends in a grey Cutout square, so it never equals
      // the dark test-transform image.
      const test = await preprocess(f.u.indices.map((i) => twelve.samples[i]!.buffer!), { size: 32 });
      f.u.indices.forEach((_, k) => {
        expect(f.u.specs[k]).toEqual({ augment: 'strong' });
        const u = pixels(f.u, k), t = pixels({ images: test }, k);
        expect(Math.max(...u.map((v, j) => Math.abs(v - t[j]!)))).toBeGreaterThan(50);
        expect(isDark(pixels(f.a, k))).toBe(true);
      });
    }
  });

  it('gives A the watermark and U the 40/20/40 mixture in authorization', async () => {
    const { fed } = await record({ scenario: 'authorization', epochs: 25, batchSize: 4, seed: 6 }, { authorized: twelve });
    const counts: Record<string, number> = {};
    let n = 0;
    for (const f of fed) {
      f.u.indices.forEach((_, k) => {
        expect(f.a.specs[k]).toEqual({ watermark: true, augment: 'train' });
        expect(looksWatermarked(pixels(f.a, k))).toBe(true);
        const key = specKey(f.u.specs[k]!);
        counts[key] = (counts[key] ?? 0) + 1;
        n++;
        // Clean + train augmentation keeps a dark image dark.
        if (key === 'clean+train') expect(isDark(pixels(f.u, k))).toBe(true);
      });
    }
    expect(n).toBe(300);
    expect(Object.keys(counts).sort()).toEqual(['clean+strong', 'clean+train', 'watermark+strong']);
    // Within 4 binomial standard deviations of the mixture's proportions.
    for (const [key, p] of [['watermark+strong', 0.4], ['clean+train', 0.2], ['clean+strong', 0.4]] as const) {
      expect(Math.abs(counts[key]! - n * p), key).toBeLessThanOrEqual(4 * Math.sqrt(n * p * (1 - p)));
    }
  });

  it('trains the reference of authorization on watermarked images, the default reference on clean ones', async () => {
    const marked = await record({ scenario: 'reference', referenceFor: 'authorization', epochs: 1, batchSize: 4, seed: 7 }, { authorized: twelve });
    const clean = await record({ scenario: 'reference', epochs: 1, batchSize: 4, seed: 7 }, { authorized: twelve });
    for (const f of marked.fed) f.a.indices.forEach((_, k) => expect(looksWatermarked(pixels(f.a, k))).toBe(true));
    for (const f of clean.fed) f.a.indices.forEach((_, k) => expect(isDark(pixels(f.a, k))).toBe(true));
    expect(marked.trainer.options.referenceFor).toBe('authorization');
    using prompt = await PromptModel.create(clip, CLASSES, { seed: 1 });
    expect(() => new IPTrainer(prompt, { scenario: 'ownership', referenceFor: 'authorization' })).toThrow(/reference scenario only/);
    expect(() => new IPTrainer(prompt, { scenario: 'reference', referenceFor: 'reference' as 'ownership' })).toThrow(IpclipError);
    // A checkpoint of one reference does not resume as the other.
    const ck = mkdtempSync(join(dir, 'ck-'));
    await record({ scenario: 'reference', referenceFor: 'authorization', epochs: 1, batchSize: 4, seed: 7, checkpointDir: ck }, { authorized: twelve });
    await expect(record({ scenario: 'reference', epochs: 1, batchSize: 4, seed: 7, checkpointDir: ck }, { authorized: twelve }))
      .rejects.toMatchObject({ code: 'ERR_MISMATCH' });
  });

  it('`ipclip eval` refuses a clean-trained reference for an authorization prompt', async () => {
    const runs = mkdtempSync(join(dir, 'runs-'));
    // The runs record the in-memory authorized domain's name ('twelve'), which eval then expects.
    for (const d of ['twelve', 'sketch']) mkdirSync(join(runs, 'data', d, 'a'), { recursive: true });
    const write = async (name: string, opts: TrainerOptions) =>
      record({ ...opts, epochs: 1, batchSize: 4, seed: 9, checkpointDir: join(runs, name) }, { authorized: twelve });
    await write('auth', { scenario: 'authorization' });
    await write('ref-clean', { scenario: 'reference' });
    const io: Io = { stdout: { write: () => true }, stderr: { write: () => true } } as unknown as Io;
    const run = (ref: string) => evalCommand.run(parseCommand(evalCommand, [
      '--checkpoint', join(runs, 'auth', CHECKPOINT_FILE), '--reference', join(runs, ref), '--data', join(runs, 'data'),
      '--authorized', 'twelve', '--clip', join(runs, 'no-such-clip.safetensors')]), io);
    await expect(run('ref-clean')).rejects.toMatchObject({ code: 'ERR_MISMATCH', message: expect.stringMatching(/--reference-for authorization/) });
    // The right reference passes the check (and then fails later, on the CLIP path this test does not provide).
    await write('ref-marked', { scenario: 'reference', referenceFor: 'authorization' });
    await expect(run('ref-marked')).rejects.not.toMatchObject({ code: 'ERR_MISMATCH' });
  });

  it('`ipclip eval` scores a reference on the sets of the scenario it was trained for (as train does)', async () => {
    const runs = mkdtempSync(join(dir, 'ref-sets-'));
    // Only the authorized domain exists: ownership's sets need no other domain, target-specified's do.
    for (const c of CLASSES) {
      mkdirSync(join(runs, 'data', 'twelve', c), { recursive: true });
      for (let i = 0; i < 4; i++) {
        await sharp({ create: { width: 40, height: 40, channels: 3, background: { r: 10 * i, g: 50, b: 90 } } }).png()
          .toFile(join(runs, 'data', 'twelve', c, `${i}.png`));
      }
    }
    const write = (name: string, opts: TrainerOptions) =>
      record({ ...opts, epochs: 1, batchSize: 4, seed: 9, checkpointDir: join(runs, name) }, { authorized: twelve });
    await write('ref-ownership', { scenario: 'reference', referenceFor: 'ownership' });
    await write('ref-default', { scenario: 'reference' });
    const io: Io = { stdout: { write: () => true }, stderr: { write: () => true } } as unknown as Io;
    const run = (ref: string) => evalCommand.run(parseCommand(evalCommand, [
      '--checkpoint', join(runs, ref), '--data', join(runs, 'data'), '--authorized', 'twelve',
      '--clip', join(runs, 'no-such-clip.safetensors')]), io);
    // The ownership reference's sets (clean and watermarked 'twelve') are read, then the CLIP is missing.
    await expect(run('ref-ownership')).rejects.toMatchObject({ code: 'ERR_FILE_NOT_FOUND', message: expect.stringMatching(/no-such-clip/) });
    await expect(run('ref-default')).rejects.toThrow(/no unauthorized domain to evaluate/);
  });

  it('resumes mid-run with exactly the batches an uninterrupted run feeds (independent U across a pass boundary)', async () => {
    const base: TrainerOptions = { scenario: 'ownership', preset: 'official', epochs: 3, batchSize: 5, seed: 8 };
    const whole = await record(base, { authorized: twelve });
    const ck = mkdtempSync(join(dir, 'ck-'));
    const stop = new AbortController();
    await expect(record({ ...base, checkpointDir: ck, signal: stop.signal, onProgress: (p) => { if (p.iteration === 4) stop.abort(); } }, { authorized: twelve }))
      .rejects.toMatchObject({ code: 'ERR_ABORTED' });
    const rest = await record({ ...base, checkpointDir: ck }, { authorized: twelve });
    expect(rest.result.resumedFrom).toBe(4);
    expect(rest.fed.map((f) => f.iteration)).toEqual([4, 5, 6, 7, 8]);
    rest.fed.forEach((f, j) => {
      const w = whole.fed[4 + j]!;
      for (const s of ['a', 'u'] as const) {
        expect(f[s].indices).toEqual(w[s].indices);
        expect(f[s].specs).toEqual(w[s].specs);
        expect(Array.from(f[s].images.data)).toEqual(Array.from(w[s].images.data));
      }
    });
  });
});
