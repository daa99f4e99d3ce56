// The attack suite: the style transforms against properties checkable by hand (AdaIN's output has the target's
// per-channel mean and std; the Fourier swap keeps the phase and takes the target's low-band amplitude; histogram
// matching reproduces the target's histogram), the native step's attack terms against values computed here from
// the step's own logits, and a reduced run of every attack family on a small SynthDomains with the shipped CLIP
// that must move what each attack moves.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attackCommand } from '../lib/cli/attack.js';
import { UsageError, parseCommand } from '../lib/cli/args.js';
import { Clip } from '../lib/clip/clip.js';
import { Rng } from '../lib/core/rng.js';
import { DomainDataset } from '../lib/data/dataset.js';
import {
  adain, amplitude, bandHalfWidth, channelStats, dft2, fourierSwap, histogramMatch, inLowBand, levelHistogram,
  recoveredFraction, resolveBudgets, runAttacks, styleTarget, disguise, type AttackReport,
} from '../lib/ipclip/attacks/index.js';
import { loadImageSet, stratifiedPick, ZeroShot, type ImageSet } from '../lib/ipclip/attacks/common.js';
import { ownershipOfSets } from '../lib/ipclip/attacks/rows.js';
import { binomialTestLess, ownershipEvidence } from '../lib/ipclip/metrics.js';
import { PromptModel } from '../lib/ipclip/prompt-model.js';
import { IPTrainer } from '../lib/ipclip/trainer/trainer.js';
import { writeAttackReport } from '../lib/tools/report/attack-section.js';
import { generateSynthDomains } from '../lib/tools/synth/synth.js';

const SHIPPED = join(import.meta.dirname, '..', 'models', 'synth-clip', 'model.safetensors');

function randomImage(rng: Rng, hw: number, lo = 0.1, hi = 0.9): Float32Array {
  return Float32Array.from({ length: 3 * hw }, () => rng.uniform(lo, hi));
}

describe('style transforms', () => {
  it('AdaIN gives each channel the target mean and std', () => {
    const rng = new Rng(1);
    const hw = 12 * 12;
    const img = randomImage(rng, hw);
    const target = { mean: [0.2, 0.5, 0.7], std: [0.05, 0.1, 0.2] };
    const out = adain(img, hw, target);
    const s = channelStats(out, hw);
    for (let c = 0; c < 3; c++) {
      expect(s.mean[c]).toBeCloseTo(target.mean[c]!, 10);
      expect(s.std[c]).toBeCloseTo(target.std[c]!, 10);
    }
    // An affine map per channel: the ordering of pixels inside a channel is kept.
    expect(Math.sign(out[5]! - out[9]!)).toBe(Math.sign(img[5]! - img[9]!));
  });

  it('the 2-D DFT matches the definition and inverts', () => {
    const h = 4;
    const w = 6;
    const rng = new Rng(2);
    const x = Float64Array.from({ length: h * w }, () => rng.uniform(-1, 1));
    const f = dft2(x, new Float64Array(h * w), h, w);
    // F(1, 2) by the definition Σ x[y,x] e^{−2πi(ky·y/h + kx·x/w)}.
    let re = 0;
    let im = 0;
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < w; xx++) {
        const a = -2 * Math.PI * ((1 * y) / h + (2 * xx) / w);
        re += x[y * w + xx]! * Math.cos(a);
        im += x[y * w + xx]! * Math.sin(a);
      }
    }
    expect(f.re[1 * w + 2]).toBeCloseTo(re, 10);
    expect(f.im[1 * w + 2]).toBeCloseTo(im, 10);
    const back = dft2(f.re, f.im, h, w, true);
    for (let i = 0; i < h * w; i++) expect(back.re[i]).toBeCloseTo(x[i]!, 10);
  });

  it('the Fourier swap keeps the phase everywhere and takes the target amplitude in the low band only', () => {
    const h = 16;
    const w = 16;
    const hw = h * w;
    const rng = new Rng(3);
    const img = randomImage(rng, hw);
    const tgt = randomImage(rng, hw, 0.3, 0.6);
    const targetAmp = amplitude(tgt, h, w);
    const b = bandHalfWidth(h, w, 0.15);
    expect(b).toBe(2);
    const out = fourierSwap(img, h, w, targetAmp, b);
    const outAmp = amplitude(out, h, w);
    const ownAmp = amplitude(img, h, w);
    let inBand = 0;
    for (let c = 0; c < 3; c++) {
      const fi = dft2(Float64Array.from(img.subarray(c * hw, (c + 1) * hw)), new Float64Array(hw), h, w);
      const fo = dft2(out.slice(c * hw, (c + 1) * hw), new Float64Array(hw), h, w);
      for (let ky = 0; ky < h; ky++) {
        for (let kx = 0; kx < w; kx++) {
          const i = ky * w + kx;
          // Same phase: the two spectra are parallel (cross product 0, dot product positive).
          expect(fi.re[i]! * fo.im[i]! - fi.im[i]! * fo.re[i]!).toBeCloseTo(0, 6);
          expect(fi.re[i]! * fo.re[i]! + fi.im[i]! * fo.im[i]!).toBeGreaterThan(0);
          const want = inLowBand(ky, kx, h, w, b) ? targetAmp[c * hw + i]! : ownAmp[c * hw + i]!;
          expect(outAmp[c * hw + i]).toBeCloseTo(want, 6);
          if (c === 0 && inLowBand(ky, kx, h, w, b)) inBand++;
        }
      }
    }
    expect(inBand).toBe(25); // signed frequencies −2..2 on both axes
    // DC carries the mean: the output's channel means are the target's.
    const s = channelStats(out, hw);
    const t = channelStats(tgt, hw);
    for (let c = 0; c < 3; c++) expect(s.mean[c]).toBeCloseTo(t.mean[c]!, 10);
  });

  it('histogram matching reproduces the target histogram for a source with one pixel per level', () => {
    const hw = 256;
    // Source: channel c holds every level once, in a scrambled order.
    const order = new Rng(4).shuffle(Array.from({ length: 256 }, (_, i) => i));
    const img = new Float32Array(3 * hw);
    for (let c = 0; c < 3; c++) for (let i = 0; i < hw; i++) img[c * hw + i] = order[i]! / 255;
    // Target: 256 pixels per channel on a few levels (hand-set counts).
    const target = new Float64Array(3 * 256);
    const counts: [number, number][] = [[10, 64], [100, 96], [200, 32], [250, 64]];
    for (let c = 0; c < 3; c++) for (const [level, n] of counts) target[c * 256 + level] = n;
    const out = histogramMatch(img, hw, target);
    const hist = levelHistogram(out, hw);
    for (let c = 0; c < 3; c++) for (let l = 0; l < 256; l++) expect(hist[c * 256 + l]).toBe(target[c * 256 + l]);
    // Monotone: a brighter source pixel never maps to a darker level.
    const i0 = order.indexOf(20);
    const i1 = order.indexOf(200);
    expect(out[i1]!).toBeGreaterThanOrEqual(out[i0]!);
  });

  it('styleTarget pools k images, and disguise clamps to valid pixels and keeps the shape', () => {
    const rng = new Rng(5);
    const s = 8;
    const k = 3;
    const norm = (n: number) => ({ data: Float32Array.from({ length: n * 3 * s * s }, () => rng.uniform(-1.5, 1.5)), shape: [n, 3, s, s] });
    const auth = norm(k);
    const u = norm(2);
    for (const m of ['adain', 'fourier', 'histogram'] as const) {
      const out = disguise(u, styleTarget(m, auth, { beta: 0.2 }));
      expect(out.shape).toEqual([2, 3, s, s]);
      // Every value is a normalised pixel of [0, 1]: channel 0's range is [(0 − μ)/σ, (1 − μ)/σ].
      for (let i = 0; i < s * s; i++) {
        expect(out.data[i]!).toBeGreaterThanOrEqual((0 - 0.48145466) / 0.26862954 - 1e-5);
        expect(out.data[i]!).toBeLessThanOrEqual((1 - 0.48145466) / 0.26862954 + 1e-5);
      }
    }
    expect(() => styleTarget('fourier', auth, { beta: 0.6 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  });
});

describe('suite arithmetic', () => {
  it('recovered is the share of the gap to the reference closed, null when there is no gap', () => {
    expect(recoveredFraction(0.1, 0.5, 0.9)).toBeCloseTo(0.5, 12);
    expect(recoveredFraction(0.1, 0.95, 0.9)).toBeCloseTo(1.0625, 12);
    expect(recoveredFraction(0.1, 0.05, 0.9)).toBeCloseTo(-0.0625, 12);
    expect(recoveredFraction(0.9, 0.95, 0.905)).toBeNull();
  });

  it('labelled fractions are class-balanced, at least the minimum, and drawn in the seeded order', () => {
    const labels = Int32Array.from({ length: 40 }, (_, i) => i % 4);
    const order = new Rng(6).shuffle(Array.from({ length: 40 }, (_, i) => i));
    const pick = stratifiedPick(labels, order, 0.2);
    expect(pick).toHaveLength(8);
    const per = [0, 0, 0, 0];
    for (const i of pick) per[labels[i]!]!++;
    expect(per).toEqual([2, 2, 2, 2]);
    expect(stratifiedPick(labels, order, 0.01, 2)).toHaveLength(2);
    expect(new Set(stratifiedPick(labels, order, 1)).size).toBe(40);
  });

  it('budgets are checked and name the bad one', () => {
    expect(resolveBudgets({}).targetFractions).toEqual([0.01, 0.05, 0.1]);
    expect(() => resolveBudgets({ sourceFraction: 0 })).toThrow(/sourceFraction/);
    expect(() => resolveBudgets({ styleK: [0] })).toThrow(/styleK/);
    expect(() => resolveBudgets({ batchSize: 1 })).toThrow(/batchSize/);
  });
});

/** Mean per-image entropy and the entropy of the mean prediction of softmax rows `[N, C]`. */
function entropies(p: Float32Array, c: number): { mean: number; marginal: number } {
  const n = p.length / c;
  let mean = 0;
  const bar = new Float64Array(c);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < c; j++) {
      const v = p[i * c + j]!;
      if (v > 0) mean -= (v * Math.log(v)) / n;
      bar[j]! += v / n;
    }
  }
  let marginal = 0;
  for (const v of bar) if (v > 0) marginal -= v * Math.log(v);
  return { mean, marginal };
}

function softmaxOf(z: Float32Array | Float64Array, c: number): Float32Array {
  const out = new Float32Array(z.length);
  for (let i = 0; i < z.length / c; i++) {
    let m = -Infinity;
    for (let j = 0; j < c; j++) m = Math.max(m, z[i * c + j]!);
    let s = 0;
    for (let j = 0; j < c; j++) s += Math.exp(z[i * c + j]! - m);
    for (let j = 0; j < c; j++) out[i * c + j] = Math.exp(z[i * c + j]! - m) / s;
  }
  return out;
}

async function checksum(prompt: PromptModel): Promise<number> {
  let s = 0;
  for (const [name, t] of Object.entries(await prompt.state())) if (name.startsWith('domain_tokens.') || name.startsWith('image_tokens.')) for (const v of t.data) s += v * v;
  return s;
}

describe("the native step's attack terms", () => {
  let clip: Clip;
  let prompt: PromptModel;
  const n = 4;

  beforeAll(async () => {
    clip = await Clip.load(SHIPPED);
    prompt = await PromptModel.create(clip, ['circle', 'square', 'star'], { seed: 3 });
    const s = clip.config.vision.imageSize;
    const rng = new Rng(8);
    const images = Float32Array.from({ length: n * 3 * s * s }, () => rng.uniform(-1.5, 1.5));
    await prompt.exclusive('test', (native) => native.cacheFeatures('authorized', n, Int32Array.from([0, 1, 2, 3]), images, [n, 3, s, s]));
  }, 120_000);

  afterAll(() => {
    prompt?.dispose();
    clip?.dispose();
  });

  const labels = Int32Array.from([0, 2, 1, 2]);
  const step = (extra: Record<string, unknown>) => prompt.exclusive('test', (native) => native.stepCached(Int32Array.from([0, 1, 2, 3]), labels,
    new Int32Array(0), new Int32Array(0), { unauthorized: false, lr: 0.01, update: false, returnOutputs: true, ...extra }));

  it('each term equals its definition computed from the step\'s own logits', async () => {
    const plain = await step({});
    const z = plain.outputs!.zA.data;
    const c = 3;
    const p = softmaxOf(z, c);
    const ce = -[0, 1, 2, 3].reduce((a, i) => a + Math.log(p[i * c + labels[i]!]!), 0) / n;
    expect(plain.terms.loss).toBeCloseTo(ce, 5);
    expect((await step({ lossWeights: { ceA: 2.5 } })).terms.loss).toBeCloseTo(2.5 * ce, 5);
    const { mean, marginal } = entropies(p, c);
    expect((await step({ lossWeights: { ceA: 0, entropyA: 1 } })).terms.loss).toBeCloseTo(mean, 5);
    expect((await step({ lossWeights: { ceA: 0, diversityA: 1 } })).terms.loss).toBeCloseTo(-marginal, 5);
    expect((await step({ lossWeights: { ceA: 0, entropyA: 1, diversityA: 1 } })).terms.loss).toBeCloseTo(mean - marginal, 5);
    // KL(q ‖ p) against hand-set soft targets, one with a zero entry (0 · log 0 = 0).
    const q = Float32Array.from([0.5, 0.5, 0, 0.2, 0.3, 0.5, 1, 0, 0, 0.1, 0.1, 0.8]);
    let kl = 0;
    for (let i = 0; i < n * c; i++) if (q[i]! > 0) kl += (q[i]! * (Math.log(q[i]!) - Math.log(p[i]!))) / n;
    expect((await step({ lossWeights: { ceA: 0, distillA: 1 }, distillTargets: { data: q, shape: [n, c] } })).terms.loss).toBeCloseTo(kl, 5);
    // The reported CE is CE whatever its weight.
    expect((await step({ lossWeights: { ceA: 0, entropyA: 1 } })).terms.ceA).toBeCloseTo(ce, 5);
  });

  it('refuses distillation without targets of the batch\'s shape, and unknown keys', async () => {
    await expect(step({ lossWeights: { ceA: 0, distillA: 1 } })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(step({ lossWeights: { ceA: 0, distillA: 1 }, distillTargets: { data: new Float32Array(6), shape: [2, 3] } }))
      .rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(step({ lossWeights: { ceA: 0, bogus: 1 } })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });
});

describe('the attack suite on a small SynthDomains with the shipped CLIP', () => {
  let dir: string;
  let clip: Clip;
  let prompt: PromptModel;
  let data: { authorized: { train: DomainDataset; test: DomainDataset }; unauthorized: { train: DomainDataset; test: DomainDataset } };
  let report: AttackReport;
  let sumBefore: number;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ipclip-attacks-'));
    const synth = await generateSynthDomains({ out: join(dir, 'synth'), perClass: 12, seed: 0, size: 64, domains: ['photo', 'sketch'] });
    clip = await Clip.load(SHIPPED);
    const photo = await DomainDataset.splits(synth.root, { domain: 'photo', seed: 0, trainFraction: 0.6 });
    const sketch = await DomainDataset.splits(synth.root, { domain: 'sketch', seed: 0, trainFraction: 0.6 });
    data = { authorized: photo, unauthorized: sketch };
    prompt = await PromptModel.create(clip, photo.train.classNames, { seed: 0 });
    await new IPTrainer(prompt, { scenario: 'target-specified', epochs: 6, lr: 0.0005, batchSize: 8, seed: 0, featureCache: true })
      .fit({ authorized: photo.train, unauthorized: sketch.train });
    sumBefore = await checksum(prompt);
    report = await runAttacks({
      prompt, data, seed: 0,
      budgets: { sourceFraction: 0.3, targetFractions: [0.5], styleK: [4], steps: 12, evalEvery: 4, lr: 0.005 },
    });
  }, 600_000);

  afterAll(async () => {
    prompt?.dispose();
    clip?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('leaves the attacked prompt untouched and reports every family', async () => {
    expect(await checksum(prompt)).toBe(sumBefore);
    const kinds = report.rows.map((r) => `${r.attack}/${r.variant}`);
    expect(kinds).toEqual([
      'zero-shot/plain-template', 'source-finetune/all-params', 'source-finetune/reinit-domain', 'target-finetune/fine-tune',
      'source-free/information-maximisation', 'source-free/distill-zero-shot', 'style/adain', 'style/fourier', 'style/histogram',
    ]);
    // The protection worked on this run (the suite has something to attack), and the floor is zero-shot CLIP.
    expect(report.zeroShot.unauthorized - report.protected.unauthorized).toBeGreaterThan(0.2);
    const floor = report.rows[0]!;
    expect(floor.after).toEqual(report.zeroShot);
    expect(floor.recovered).toBe(1);
    for (const r of report.rows) {
      expect(r.before).toEqual(report.protected);
      if (r.recovered !== null) expect(r.recovered).toBeCloseTo((r.after.unauthorized - r.before.unauthorized) / (r.reference - r.before.unauthorized), 12);
      expect(r.sentence.length).toBeGreaterThan(20);
      if (r.steps > 0) {
        expect(r.selection).toContain('attacker-optimistic');
        expect(r.selectedStep! % 4 === 0 || r.selectedStep === r.steps).toBe(true);
      }
    }
  });

  it('target fine-tuning on labelled sketch images recovers sketch, and is compared with a fresh prompt', () => {
    const t = report.rows.find((r) => r.attack === 'target-finetune')!;
    expect(t.budget.labelled).toBe(true);
    expect(t.after.unauthorized).toBeGreaterThan(t.before.unauthorized + 0.05);
    expect(t.fresh).toBeDefined();
    expect(t.advantage).toBeCloseTo(t.after.unauthorized - t.fresh!.unauthorized, 12);
  });

  it('style disguise leaves authorized images alone and zero-shot CLIP still reads the disguised images', () => {
    for (const r of report.rows.filter((x) => x.attack === 'style')) {
      expect(r.steps).toBe(0);
      expect(r.after.authorized).toBe(r.before.authorized);
      expect(r.zeroShotAfter).toBeGreaterThan(report.chance);
    }
  });

  it('writes attack.json and a self-contained page with one bar per attacked row and one sentence per row', async () => {
    const files = await writeAttackReport(join(dir, 'out'), report);
    const json = JSON.parse(await readFile(files.json, 'utf8')) as AttackReport;
    expect(json.rows).toHaveLength(report.rows.length);
    const html = await readFile(files.html, 'utf8');
    expect(html).not.toMatch(/<script|(?:src|href)="https?:/);
    expect(html.match(/<rect class="bar"/g)?.length).toBe(report.rows.filter((r) => r.attack !== 'zero-shot' && r.recovered !== null).length);
    expect(html.match(/<li class="sentence"/g)).toHaveLength(report.rows.length);
  });
});

describe('ownership under attack', () => {
  let dir: string;
  let clip: Clip;
  let photo: { train: DomainDataset; test: DomainDataset };
  let sketch: { train: DomainDataset; test: DomainDataset };
  let clean: ImageSet;
  let marked: ImageSet;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ipclip-attacks-own-'));
    const synth = await generateSynthDomains({ out: join(dir, 'synth'), perClass: 12, seed: 1, size: 64, domains: ['photo', 'sketch'] });
    clip = await Clip.load(SHIPPED);
    photo = await DomainDataset.splits(synth.root, { domain: 'photo', seed: 1, trainFraction: 0.6 });
    sketch = await DomainDataset.splits(synth.root, { domain: 'sketch', seed: 1, trainFraction: 0.6 });
    clean = await loadImageSet(photo.test, clip.config.vision.imageSize);
    marked = await loadImageSet(photo.test, clip.config.vision.imageSize, { watermark: true });
  }, 600_000);

  afterAll(async () => {
    clip?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('independently trained prompts (3 seeds) and zero-shot CLIP are not found to be the owner\'s model', async () => {
    const verdicts: { who: string; supported: boolean; pCollapse: number; clean: number; marked: number }[] = [];
    for (const seed of [11, 12, 13]) {
      // Someone else's model: the same classes, trained on the same kind of data without any watermark.
      const other = await PromptModel.create(clip, photo.train.classNames, { seed });
      try {
        await new IPTrainer(other, { scenario: 'reference', epochs: 3, lr: 0.001, batchSize: 8, seed, featureCache: true }).fit({ authorized: photo.train });
        const e = await ownershipOfSets(other, clean, marked);
        const n = clean.labels.length;
        verdicts.push({ who: `prompt seed ${seed}`, supported: e.supported, clean: e.cleanAccuracy, marked: e.watermarkedAccuracy,
          pCollapse: binomialTestLess(Math.round(e.watermarkedAccuracy * n), n, e.cleanAccuracy) });
      } finally {
        other.dispose();
      }
    }
    const zs = await ZeroShot.create(clip, photo.train.classNames);
    const n = clean.labels.length;
    const zc = await zs.accuracy(clean);
    const zm = await zs.accuracy(marked);
    const ze = ownershipEvidence({ correct: Math.round(zc * n), n }, { correct: Math.round(zm * n), n }, photo.train.classNames.length);
    verdicts.push({ who: 'zero-shot CLIP', supported: ze.supported, clean: zc, marked: zm, pCollapse: binomialTestLess(Math.round(zm * n), n, zc) });
    console.log(`ownership of innocent models: ${JSON.stringify(verdicts)}`);
    // verify-ownership's rule (clean above chance and watermarked not, alpha 0.01) accuses none of them.
    for (const v of verdicts) expect(v.supported, v.who).toBe(false);
  }, 600_000);

  it('measures whether the watermark evidence survives source fine-tuning', async () => {
    const owned = await PromptModel.create(clip, photo.train.classNames, { seed: 1 });
    try {
      await new IPTrainer(owned, { scenario: 'ownership', epochs: 6, lr: 0.0005, batchSize: 8, seed: 1, featureCache: true }).fit({ authorized: photo.train });
      const r = await runAttacks({
        prompt: owned, data: { authorized: photo, unauthorized: sketch }, attacks: ['source-finetune'], ownership: true, seed: 1,
        budgets: { sourceFraction: 0.3, steps: 12, evalEvery: 4, lr: 0.002 },
      });
      for (const row of r.rows) {
        expect(row.ownership).toBeDefined();
        // The evidence before the attack is the prompt's own, measured once.
        expect(row.ownership!.before.cleanAccuracy).toBeCloseTo(r.protected.authorized, 12);
        console.log(`ownership after ${row.variant}: before ${row.ownership!.before.verdict}; after ${row.ownership!.after.verdict}`);
      }
    } finally {
      owned.dispose();
    }
  }, 600_000);
});

describe('ipclip attack flags', () => {
  const io = { stdout: process.stdout, stderr: process.stderr };
  const run = (argv: string[]) => attackCommand.run(parseCommand(attackCommand, argv), io as never);

  it('refuses a missing prompt, an unknown attack and bad budgets as usage errors, before any model work', async () => {
    await expect(run(['--data', '.'])).rejects.toThrow(UsageError);
    await expect(run(['--prompt', 'package.json', '--data', '.', '--attacks', 'style,bogus'])).rejects.toThrow(/unknown attack 'bogus'/);
    await expect(run(['--prompt', 'package.json', '--data', '.', '--target-fractions', '0.1,2'])).rejects.toThrow(/target-fractions/);
    await expect(run(['--prompt', 'package.json', '--data', '.', '--style-k', '0'])).rejects.toThrow(/style-k/);
    await expect(run(['--prompt', 'package.json', '--data', '.', '--fourier-beta', '0.7'])).rejects.toThrow(/fourier-beta/);
  });
});
