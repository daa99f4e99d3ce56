// Evaluator: per-set scores against predictions computed independently, zero-shot against Clip.classify,
// method §7 metrics by hand, ownership evidence, errors.
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { watermark } from '../lib/image/augment.js';
import { Clip } from '../lib/clip/clip.js';
import { DomainDataset } from '../lib/data/dataset.js';
import { IpclipError } from '../lib/core/errors.js';
import { Evaluator } from '../lib/ipclip/evaluator.js';
import { decodeImage } from '../lib/image/decode.js';
import { binomialTestGreater, macroF1 } from '../lib/ipclip/metrics.js';
import { preprocess } from '../lib/image/preprocess.js';
import { PromptModel } from '../lib/ipclip/prompt-model.js';
import { Rng } from '../lib/core/rng.js';
import { CLIP_TINY, HAVE_SHARED, TEST_DEVICE, VOCAB_PATH } from './helpers/fixtures.js';

const CLASSES = ['blue', 'green', 'red'];

async function codeOf(p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(IpclipError);
  return (err as IpclipError).code;
}

/** Noisy images per class, varied sizes, one folder per domain. */
async function makeDomain(root: string, domain: string, seed: number): Promise<void> {
  const rng = new Rng(seed);
  const base: [number, number, number][] = [[40, 50, 220], [30, 200, 40], [220, 30, 30]];
  for (const [c, cls] of CLASSES.entries()) {
    const dir = join(root, domain, cls);
    await mkdir(dir, { recursive: true });
    for (let i = 0; i < 5; i++) {
      const w = 30 + rng.int(20);
      const h = 30 + rng.int(20);
      const px = Buffer.alloc(w * h * 3);
      for (let k = 0; k < w * h; k++) for (let ch = 0; ch < 3; ch++) px[k * 3 + ch] = Math.max(0, Math.min(255, Math.round(base[c]![ch]! + 60 * rng.normal())));
      await sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toFile(join(dir, `${i}.png`));
    }
  }
}

describe.skipIf(!HAVE_SHARED)('Evaluator', () => {
  let clip: Clip;
  let root: string;
  let a: DomainDataset;
  let u: DomainDataset;
  let prompt: PromptModel;
  let reference: PromptModel;

  beforeAll(async () => {
    clip = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, device: TEST_DEVICE });
    root = mkdtempSync(join(tmpdir(), 'ipclip-eval-'));
    await makeDomain(root, 'one', 1);
    await makeDomain(root, 'two', 2);
    a = await DomainDataset.fromFolder(root, { domain: 'one' });
    u = await DomainDataset.fromFolder(root, { domain: 'two' });
    prompt = await PromptModel.create(clip, CLASSES, { seed: 1 });
    reference = await PromptModel.create(clip, CLASSES, { seed: 2 });
  });
  afterAll(() => {
    prompt?.dispose();
    reference?.dispose();
    clip?.dispose();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  /** Predictions of `p` on the test transform of `d` (optionally watermarked first), computed without the Evaluator. */
  async function predictions(p: PromptModel, d: DomainDataset, marked = false): Promise<Int32Array> {
    const inputs = await Promise.all(d.samples.map(async (s) => (marked ? watermark(await decodeImage(s.path!)) : s.path!)));
    return p.predict(await preprocess(inputs, { size: 32 }));
  }

  function score(pred: Int32Array, d: DomainDataset) {
    const labels = d.labels();
    const correct = pred.filter((x, i) => x === labels[i]).length;
    return { accuracy: correct / d.length, correct, n: d.length, macroF1: macroF1(pred, labels, CLASSES.length) };
  }

  it('scores each set with the prompt, the reference and zero-shot CLIP; metrics per method §7', async () => {
    const ev = new Evaluator(clip, { batchSize: 4 });
    const report = await ev.evaluate(prompt, { authorized: a, unauthorized: { two: u, twoMarked: { dataset: u, watermark: true } }, reference });
    expect(report.unauthorized).toEqual(['two', 'twoMarked']);
    expect(report.sets.authorized).toEqual(score(await predictions(prompt, a), a));
    expect(report.sets.two).toEqual(score(await predictions(prompt, u), u));
    expect(report.sets.twoMarked).toEqual(score(await predictions(prompt, u, true), u));
    expect(report.reference!.two).toEqual(score(await predictions(reference, u), u));
    // Zero-shot: CLIP's own top label with 'a photo of a {}.'.
    const ranked = await clip.classify(u.samples.map((s) => s.path!), CLASSES);
    const zsCorrect = ranked.filter((r, i) => r.label === CLASSES[u.samples[i]!.label]).length;
    expect(report.zeroShot!.two).toBeCloseTo(zsCorrect / u.length, 12);
    // Method §7 by hand.
    const acc = (k: string) => report.sets[k]!.accuracy;
    const ref = (k: string) => report.reference![k]!.accuracy;
    const chance = 1 / 3;
    const sup = (k: string) => (ref(k) - chance > 0 ? Math.min(1, Math.max(0, (ref(k) - acc(k)) / (ref(k) - chance))) : acc(k) <= chance ? 1 : 0);
    const R = ref('authorized') > 0 ? Math.min(1, acc('authorized') / ref('authorized')) : 1;
    const S = (sup('two') + sup('twoMarked')) / 2;
    expect(report.chance).toBeCloseTo(chance, 15);
    expect(report.metrics!.retention).toBeCloseTo(R, 12);
    expect(report.metrics!.suppression).toBeCloseTo(S, 12);
    expect(report.metrics!.protection).toBeCloseTo(R + S > 0 ? (2 * R * S) / (R + S) : 0, 12);
    expect(report.metrics!.dropA).toBeCloseTo(ref('authorized') - acc('authorized'), 12);
    expect(report.metrics!.dropU).toBeCloseTo((ref('two') - acc('two') + ref('twoMarked') - acc('twoMarked')) / 2, 12);
  });

  it('reports no metrics without a reference, and no zero-shot when disabled', async () => {
    const report = await new Evaluator(clip, { zeroShot: false }).evaluate(prompt, { authorized: a, unauthorized: u });
    expect(report.metrics).toBeNull();
    expect(report.reference).toBeNull();
    expect(report.zeroShot).toBeNull();
    expect(Object.keys(report.sets)).toEqual(['authorized', 'unauthorized']);
  });

  it('gives ownership evidence: clean vs watermarked accuracy with one-sided binomial tests', async () => {
    const own = await new Evaluator(clip).evaluateOwnership(prompt, a, { alpha: 0.05 });
    expect(own.clean).toEqual(score(await predictions(prompt, a), a));
    expect(own.watermarked).toEqual(score(await predictions(prompt, a, true), a));
    expect(own.evidence.pValueCleanAboveChance).toBeCloseTo(binomialTestGreater(own.clean.correct, a.length, 1 / 3), 12);
    expect(own.evidence.pValueWatermarkedAboveChance).toBeCloseTo(binomialTestGreater(own.watermarked.correct, a.length, 1 / 3), 12);
    const p = own.evidence;
    expect(p.supported).toBe(p.pValueCleanAboveChance < 0.05 && p.pValueWatermarkedAboveChance >= 0.05);
  });

  it('refuses sets with other classes, no unauthorized sets, and empty sets', async () => {
    const ev = new Evaluator(clip, { zeroShot: false });
    const other = DomainDataset.fromSamples(u.samples, ['x', 'y', 'z']);
    expect(await codeOf(ev.evaluate(prompt, { authorized: a, unauthorized: { other } }))).toBe('ERR_MISMATCH');
    expect(await codeOf(ev.evaluate(prompt, { authorized: a, unauthorized: {} }))).toBe('ERR_EMPTY_INPUT');
    expect(await codeOf(ev.evaluate(prompt, { authorized: a, unauthorized: { authorized: u } }))).toBe('ERR_INVALID_ARGUMENT');
    expect(await codeOf(ev.evaluateSet(prompt, DomainDataset.fromSamples([], CLASSES)))).toBe('ERR_EMPTY_INPUT');
    using four = await PromptModel.create(clip, [...CLASSES, 'cyan']);
    expect(await codeOf(ev.evaluate(prompt, { authorized: a, unauthorized: u, reference: four }))).toBe('ERR_MISMATCH');
    expect(() => new Evaluator(clip, { template: 'no placeholder' })).toThrow(IpclipError);
  });
});
