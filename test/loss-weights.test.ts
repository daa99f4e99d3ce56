// The scenario reaches the native step as data: a loss-weights table (lib/scenarios.ts) and whether the step has
// an unauthorized batch. A custom table must reach the total exactly as the loss formula of method §4 says
// (total = CE_A + Σ w_k · term_k, the CE and MSE terms clamped at 5), and a malformed table is refused by the
// binding with ERR_INVALID_ARGUMENT, never a crash. float64 CLIP: the total is then exact to ~1e-15.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Clip } from '../lib/clip/clip.js';
import { IpclipError } from '../lib/core/errors.js';
import { callNative } from '../lib/native/errors.js';
import type { LossWeights } from '../lib/native/types.js';
import { PromptModel } from '../lib/ipclip/prompt-model.js';
import { Rng } from '../lib/core/rng.js';
import { SCENARIO_LOSS, stepLoss } from '../lib/ipclip/scenario.js';
import { lossWeights } from './helpers/exactness.js';
import { CLIP_TINY, HAVE_SHARED, VOCAB_PATH } from './helpers/fixtures.js';

const CLASSES = ['cat', 'dog', 'bird'];
const KEYS = ['ceU', 'ceSelf', 'ceCross', 'mse', 'entropy', 'kl'] as const;
const CLAMPED = new Set(['ceU', 'ceSelf', 'ceCross', 'mse']);
const ZERO: LossWeights = { ceU: 0, ceSelf: 0, ceCross: 0, mse: 0, entropy: 0, kl: 0 };

async function codeOf(p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(IpclipError);
  return (err as IpclipError).code;
}

describe('the loss-weights table', () => {
  it("holds method §4's weights for every scenario and preset (the test helper's independent copy)", () => {
    for (const scenario of ['target-specified', 'ownership', 'target-free', 'authorization'] as const) {
      for (const preset of ['paper', 'official'] as const) {
        const { ceA, ...rest } = lossWeights(scenario, preset);
        expect(ceA).toBe(1);
        expect(stepLoss(scenario, preset)).toEqual({ preset, unauthorized: true, lossWeights: rest });
      }
    }
    expect(stepLoss('reference', 'official')).toEqual({ preset: 'official', unauthorized: false, lossWeights: ZERO });
    expect(SCENARIO_LOSS.reference.unauthorized).toBe(false);
  });
});

describe.skipIf(!HAVE_SHARED)('custom loss weights in the native step', () => {
  let clip: Clip;
  let prompt: PromptModel;
  let size: number;
  const rng = new Rng(21);
  const yA = Int32Array.from([0, 1, 2]), yU = Int32Array.from([2, 2, 0]);
  let xA: { data: Float32Array; shape: number[] };
  let xU: { data: Float32Array; shape: number[] };

  beforeAll(async () => {
    clip = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, device: 'cpu', dtype: 'float64' });
    prompt = await PromptModel.create(clip, CLASSES, { seed: 2 });
    size = clip.config.vision.imageSize;
    const images = () => ({ data: Float32Array.from({ length: 3 * 3 * size * size }, () => rng.normal()), shape: [3, 3, size, size] });
    xA = images();
    xU = images();
  });
  afterAll(() => {
    prompt?.dispose();
    clip?.dispose();
  });

  const step = (opts: object) => callNative(() => prompt.native.step(xA.data, xA.shape, yA, xU.data, xU.shape, yU,
    { lr: 0.01, update: false, ...opts }));

  it('all-zero weights: the total is CE_A; one weight w_k: total − CE_A = w_k · term_k (clamped as reported)', async () => {
    const zero = await step({ preset: 'paper', lossWeights: ZERO });
    expect(zero.terms.loss).toBe(zero.terms.ceA);
    // The other terms are still computed and reported (here with weight 0): the checks below are not vacuous.
    for (const k of KEYS) expect(Math.abs(zero.terms[k]), k).toBeGreaterThan(0);
    for (const k of KEYS) {
      const w = 0.75; // exact in binary: the product adds no rounding of its own
      const r = await step({ preset: 'paper', lossWeights: { ...ZERO, [k]: w } });
      expect(r.terms.ceA).toBe(zero.terms.ceA); // no update between the steps: the same terms
      const term = CLAMPED.has(k) ? Math.min(r.terms[k], 5) : r.terms[k];
      expect(Math.abs(r.terms.loss - r.terms.ceA - w * term), k).toBeLessThanOrEqual(1e-12 * (Math.abs(r.terms.ceA) + Math.abs(term)));
    }
  });

  it('unauthorized: false is the CE_A-only step: no unauthorized batch needed, no weights read, other terms 0', async () => {
    const r = await callNative(() => prompt.native.step(xA.data, xA.shape, yA, new Float32Array(0), [0], new Int32Array(0),
      { unauthorized: false, lr: 0, update: false }));
    expect(r.terms.loss).toBe(r.terms.ceA);
    for (const k of KEYS) expect(r.terms[k], k).toBe(0);
  });

  it('ceUPerSample: the CE_U term is the mean of each sample\'s CE bounded on its own (hand-computed from the logits)', async () => {
    // Per-sample CE from the step's own logits, by the textbook formula: −z_y + log Σ exp z.
    const ref = await step({ preset: 'paper', lossWeights: ZERO, returnOutputs: true });
    const z = ref.outputs!.zU;
    const C = z.shape[1]!;
    const ce = Array.from(yU, (y, b) => {
      const row = Array.from(z.data.subarray(b * C, (b + 1) * C));
      const m = Math.max(...row);
      return -row[y]! + m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
    });
    expect(Math.abs(ce.reduce((a, v) => a + v, 0) / ce.length - ref.terms.ceU)).toBeLessThan(1e-12);
    // A bound between the samples' CEs: some are bounded, some are not, so per-sample and batch-mean bounding differ.
    const sorted = [...ce].sort((a, b) => a - b);
    const bound = (sorted[0]! + sorted[1]!) / 2;
    const w = 0.75;
    const r = await step({ preset: 'paper', lossWeights: { ...ZERO, ceU: w }, ceUPerSample: bound });
    const expected = ce.reduce((a, v) => a + Math.min(v, bound), 0) / ce.length;
    expect(Math.abs(r.terms.loss - r.terms.ceA - w * expected)).toBeLessThan(1e-12);
    expect(Math.abs(expected - Math.min(ref.terms.ceU, bound))).toBeGreaterThan(1e-3); // not the batch-mean bound
    expect(r.terms.ceU).toBe(ref.terms.ceU); // the reported term stays the unbounded batch mean
    // Bounded below every sample's CE, the term is constant: it passes no gradient (only CE_A's remains); bounded
    // above them all, it passes CE_U's whole gradient.
    const gradientsOf = async (opts: object) => { await step({ preset: 'paper', ...opts }); return prompt.native.gradients(); };
    const onlyA = await gradientsOf({ lossWeights: ZERO });
    const maxDiff = (g: Record<string, { data: Float32Array }>) =>
      Math.max(...Object.entries(g).map(([k, t]) => Math.max(...Array.from(t.data, (v, i) => Math.abs(v - onlyA[k]!.data[i]!)))));
    expect(maxDiff(await gradientsOf({ lossWeights: { ...ZERO, ceU: w }, ceUPerSample: sorted[0]! / 2 }))).toBeLessThanOrEqual(1e-12);
    expect(maxDiff(await gradientsOf({ lossWeights: { ...ZERO, ceU: w }, ceUPerSample: 1e6 }))).toBeGreaterThan(1e-6);
    for (const bad of [0, -1, Number.NaN, '5']) {
      expect(await codeOf(step({ preset: 'paper', lossWeights: ZERO, ceUPerSample: bad })), String(bad)).toBe('ERR_INVALID_ARGUMENT');
    }
  });

  it('refuses malformed tables with ERR_INVALID_ARGUMENT', async () => {
    const { ceU: _dropped, ...missing } = ZERO;
    const bad: unknown[] = [
      undefined, null, 3, 'weights', [0, 0, 0, 0, 0, 0], missing,
      { ...ZERO, kl: Number.NaN }, { ...ZERO, mse: Number.POSITIVE_INFINITY }, { ...ZERO, entropy: '1' },
      { ...ZERO, ceB: 1 }, // an unknown key is a mistake, not ignored (ceA, entropyA, diversityA, distillA are the attack suite's)
      { ...ZERO, ceA: '1' }, { ...ZERO, distillA: Number.NaN },
    ];
    for (const lossWeights of bad) {
      expect(await codeOf(step({ preset: 'paper', lossWeights })), JSON.stringify(lossWeights) ?? String(lossWeights)).toBe('ERR_INVALID_ARGUMENT');
    }
    expect(await codeOf(step({ preset: 'neither', lossWeights: ZERO }))).toBe('ERR_INVALID_ARGUMENT');
    // The prompt is unharmed.
    expect(Number.isFinite((await step({ ...stepLoss('target-free', 'paper') })).terms.loss)).toBe(true);
  });
});
