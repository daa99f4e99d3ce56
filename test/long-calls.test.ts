// onProgress and signal on every long call: Evaluator.evaluate, PromptModel.classify, Clip.classify and batched
// Clip.encodeImage. Progress counts images after each batch; an abort stops between batches with ERR_ABORTED and
// leaves the objects usable (nothing half-done is kept).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Clip } from '../lib/clip/clip.js';
import { DomainDataset } from '../lib/data/dataset.js';
import { Rng } from '../lib/core/rng.js';
import { Evaluator } from '../lib/ipclip/evaluator.js';
import { PromptModel } from '../lib/ipclip/prompt-model.js';
import type { ProgressEvent } from '../lib/core/progress.js';
import { SYNTH_CLASSES, renderSynthImage } from '../lib/tools/synth/synth.js';
import { TEST_DEVICE, maxAbsDiff } from './helpers/fixtures.js';
import { ProgressBar } from '../lib/tools/progress.js';
import { progressValues } from '../lib/cli/train.js';
import { LOSS_TERMS } from '../lib/ipclip/loss-terms.js';
import { SCENARIO_DESCRIPTORS } from '../lib/ipclip/scenario.js';

const COMPACT_TERMS = SCENARIO_DESCRIPTORS['target-specified'].progressTerms;

const CLASSES = SYNTH_CLASSES.slice(0, 3);

describe('progress and abort', () => {
  let root: string;
  let clip: Clip;
  let prompt: PromptModel;
  let photo: DomainDataset;
  let sketch: DomainDataset;
  let files: string[];

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'ipclip-long-'));
    const rng = new Rng(9);
    files = [];
    for (const domain of ['photo', 'sketch'] as const) {
      for (const cls of CLASSES) {
        mkdirSync(join(root, domain, cls), { recursive: true });
        // photo: 3 per class (9), sketch: 2 per class (6)
        for (let i = 0; i < (domain === 'photo' ? 3 : 2); i++) {
          const f = join(root, domain, cls, `${i}.png`);
          writeFileSync(f, (await renderSynthImage(domain, cls, rng.fork(`${domain}${cls}${i}`), 32)).png);
          if (domain === 'photo') files.push(f);
        }
      }
    }
    clip = await Clip.load('synth-clip', { device: TEST_DEVICE });
    prompt = await PromptModel.create(clip, CLASSES, { seed: 2 });
    photo = await DomainDataset.fromFolder(root, { domain: 'photo' });
    sketch = await DomainDataset.fromFolder(root, { domain: 'sketch' });
  });
  afterAll(() => {
    prompt?.dispose();
    clip?.dispose();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('Evaluator.evaluate reports images over all sets after each batch, and an abort rejects and leaves it usable', async () => {
    const ev = new Evaluator(clip, { batchSize: 4, workers: 0 });
    const events: ProgressEvent[] = [];
    const report = await ev.evaluate(prompt, { authorized: photo, unauthorized: { sketch } }, { onProgress: (e) => events.push({ ...e }) });
    // 9 photo images in batches of 4 (4, 4, 1), then 6 sketch images (4, 2): 15 in all.
    expect(events).toEqual([4, 8, 9, 13, 15].map((done) => ({ done, total: 15 })));
    const controller = new AbortController();
    const seen: number[] = [];
    const aborted = ev.evaluate(prompt, { authorized: photo, unauthorized: { sketch } }, {
      signal: controller.signal, onProgress: ({ done }) => { seen.push(done); if (done >= 8) controller.abort(); },
    });
    await expect(aborted).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    expect(seen).toEqual([4, 8]); // stopped before the third batch
    // Nothing half-done stays behind: the same evaluation again gives the same report.
    expect(await ev.evaluate(prompt, { authorized: photo, unauthorized: { sketch } })).toEqual(report);
    const pre = new AbortController();
    pre.abort();
    await expect(ev.evaluate(prompt, { authorized: photo, unauthorized: { sketch } }, { signal: pre.signal })).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    await expect(ev.evaluateSet(prompt, photo, { signal: pre.signal })).rejects.toMatchObject({ code: 'ERR_ABORTED' });
  });

  it('PromptModel.classify and Clip.classify count images per batch and stop between batches', async () => {
    const events: number[] = [];
    const all = await prompt.classify(files, { batchSize: 4, onProgress: (e) => { expect(e.total).toBe(9); events.push(e.done); } });
    expect(events).toEqual([4, 8, 9]);
    const c = new AbortController();
    await expect(prompt.classify(files, { batchSize: 4, signal: c.signal, onProgress: () => c.abort() })).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    expect((await prompt.classify(files)).map((p) => p.index)).toEqual(all.map((p) => p.index));

    const zs: number[] = [];
    const labels = CLASSES.map((x) => `a ${x}`);
    const byBatch = await clip.classify(files, labels, { batchSize: 2, onProgress: (e) => { expect(e.total).toBe(9); zs.push(e.done); } });
    expect(zs).toEqual([2, 4, 6, 8, 9]);
    const whole = await clip.classify(files, labels, { batchSize: 9 });
    byBatch.forEach((p, i) => {
      expect(p.index).toBe(whole[i]!.index);
      p.scores.forEach((s, j) => expect(s).toBeCloseTo(whole[i]!.scores[j]!, 5));
    });
    const d = new AbortController();
    await expect(clip.classify(files, labels, { batchSize: 2, signal: d.signal, onProgress: () => d.abort() })).rejects.toMatchObject({ code: 'ERR_ABORTED' });
  });

  it('batched encodeImage gives the one-call embeddings and statistics, with progress', async () => {
    const one = await clip.encodeImage(files, { returnStats: true, returnLayers: true });
    const events: number[] = [];
    const batched = await clip.encodeImage(files, { batchSize: 4, returnStats: true, returnLayers: true, onProgress: (e) => events.push(e.done) });
    expect(events).toEqual([4, 8, 9]);
    expect(batched.embeds.shape).toEqual(one.embeds.shape);
    expect(batched.stats!.shape).toEqual(one.stats!.shape);   // [L, N, 2, W]: batches joined on axis 1
    expect(batched.layers!.shape).toEqual(one.layers!.shape);
    expect(maxAbsDiff(batched.embeds.data, one.embeds.data)).toBeLessThan(1e-4);
    expect(maxAbsDiff(batched.stats!.data, one.stats!.data)).toBeLessThan(1e-4);
    expect(maxAbsDiff(batched.layers!.data, one.layers!.data)).toBeLessThan(1e-4);
    // A preprocessed tensor is cut the same way.
    const t = await clip.preprocess(files);
    const fromTensor = await clip.encodeImage(t, { batchSize: 2 });
    expect(maxAbsDiff(fromTensor.data, one.embeds.data)).toBeLessThan(1e-4);
    const c = new AbortController();
    await expect(clip.encodeImage(files, { batchSize: 4, signal: c.signal, onProgress: () => c.abort() })).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    await expect(clip.encodeImage(files, { batchSize: 0 })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });
});

describe('the compact progress line', () => {
  const p = {
    iteration: 1234, totalIterations: 5000, epoch: 9, etaSeconds: 3725, lr: 1e-5,
    terms: { loss: -0.812345, ceA: 0.123456, ceU: 4.12345, ceSelf: 0.3, ceCross: 4.9, mse: 0.02, kl: 0.1, entropy: 1.2 },
  } as unknown as Parameters<typeof progressValues>[0];

  it('shows the scenario\'s terms (ceA, ceU) and lr by default and every term with --verbose', () => {
    expect(Object.keys(progressValues(p, COMPACT_TERMS))).toEqual(['ceA', 'ceU', 'lr']);
    expect(Object.keys(progressValues(p, LOSS_TERMS))).toEqual([...LOSS_TERMS, 'lr']);
  });

  it('fits 80 columns in a log (4-digit counts, an ETA in hours) and on an 80-column terminal, bar included', () => {
    const info = { etaSeconds: 3725, note: 'epoch 10/50', values: progressValues(p, COMPACT_TERMS) };
    const plain = new ProgressBar(5000, { tty: false, label: 'train', now: () => 0 }).line(1234, info);
    expect(plain.length).toBeLessThanOrEqual(80);
    const short = { etaSeconds: 150, note: 'epoch 10/20', values: { ceA: 0.05123, ceU: 4.912, lr: 0.001 } };
    const tty = new ProgressBar(760, { tty: true, label: 'train', now: () => 0, stream: { write: () => true, columns: 80 } }).line(380, short);
    expect(tty.length).toBeLessThan(80);
    expect(tty).toMatch(/^train █+░+ 380\/760/);
    // The verbose line of the same step is what overflowed before.
    const verbose = new ProgressBar(5000, { tty: false, label: 'train', now: () => 0 }).line(1234, { ...info, values: progressValues(p, LOSS_TERMS) });
    expect(verbose.length).toBeGreaterThan(80);
  });
});
