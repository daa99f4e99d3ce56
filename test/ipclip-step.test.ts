// Parity with the authors' released trainer: one IP-CLIP step on clip-tiny (../shared/fixtures/ipclip-step).
// The release's state is imported through PromptModel.load (its own format, converted to safetensors), the banks
// are rebuilt from the recorded bank batches, and the four preset × scenario cases must give the recorded
// terms, logits, domain tokens and gradients.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Clip } from '../lib/clip/clip.js';
import { PromptModel } from '../lib/ipclip/prompt-model.js';
import { readSafetensors, writeSafetensors, type SafetensorsContent, type TensorToWrite } from '../lib/io/safetensors.js';
import type { Tensor } from '../lib/core/tensor.js';
import { IPTrainer, type TrainBatch } from '../lib/ipclip/trainer/trainer.js';
import { EXACT, clipBudget, lossScale, lossWeights, maxAbs, relToScale } from './helpers/exactness.js';
import { CLIP_TINY, HAVE_SHARED, TEST_DEVICE, VOCAB_PATH, floatData, shared } from './helpers/fixtures.js';

const STEP = shared('fixtures', 'ipclip-step', 'step.safetensors');
const HAVE = HAVE_SHARED && existsSync(STEP);
const CASES = ['official/target-specified', 'official/target-free', 'paper/target-specified', 'paper/target-free'] as const;
const TERMS = ['ceA', 'ceU', 'ceSelf', 'ceCross', 'mse', 'kl', 'entropy', 'loss'] as const;

/** Largest |a_i − b_i| − tol_i (≤ 0 when all pass), with where it happened; `tol` per entry or one for all. */
function worst(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number | ((i: number) => number)): { excess: number; at: number } {
  expect(actual.length).toBe(expected.length);
  let excess = 0;
  let at = -1;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!) - (typeof tol === 'number' ? tol : tol(i));
    if (!(d <= excess)) { excess = d; at = i; } // NaN counts as a failure
  }
  return { excess, at };
}

/** Every |actual_i − expected_i| ≤ tol, an absolute bound derived from the scale of the quantity (below). */
function expectWithin(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  expect(tol, `${what}: tolerance`).toBeGreaterThan(0);
  const w = worst(actual, expected, tol);
  expect(w.excess, `${what}: index ${w.at}: ${actual[w.at]} vs ${expected[w.at]} (tolerance ${tol})`).toBeLessThanOrEqual(0);
}

/**
 * fp32 tolerances against the release. Both sides compute in fp32 and sum in different orders (other BLAS, other
 * vector widths), so the tolerances are derived from the size of the summed quantities, never from the size of a
 * result that may be near 0. ε = clipBudget(config) (helpers/exactness.ts) is the relative error budget of a
 * unit-norm CLIP embedding; s is the logit scale.
 * - Logit z = s·⟨f, t⟩, ‖f‖ = ‖t‖ = 1: Σ|f_j t_j| ≤ 1 (Cauchy–Schwarz), so s is the scale of the sum, and f and t
 *   each contribute ε: |Δz| ≤ 2ε·s, for a logit of 0.02 as for one of 10.
 * - Domain tokens (two linears on the vision statistics): max|Δd| ≤ 2ε·max|d|. Bank entries (unit embeddings): ε.
 * - CE and entropy are Lipschitz in the logits (max norm): CE with constant 2 (its gradient p − onehot has L1 norm
 *   ≤ 2), the entropy with 2·ln C (Σ_c p_c|log p_c + H| ≤ 2H ≤ 2 ln C): |ΔT| ≤ (2 + 2 ln C)·2ε·s.
 * - MSE = mean (dA − dU)²: |ΔMSE| ≤ 2·max|dA − dU|·(max|ΔdA| + max|ΔdU|).
 * - KL over unit text features (|t| ≤ 1): per image and coordinate its gradient in (t^A, t^U) has L1 norm ≤ 2 + 2·4
 *   (log-probability differences are at most 4), summed over the D coordinates: |ΔKL| ≤ 10·D·ε.
 * - The total: Σ|w_i|·tol_i, the weighted terms' tolerances (it nearly cancels: −0.03 in official/target-free).
 * - Gradients: the backward pass doubles the stages (2ε per term) and the total's gradient is the terms' gradients
 *   weighted by w_i: max|Δg| ≤ 2ε·Σ|w_i|·max|g| for each parameter tensor.
 * Measured (2026-12-01, `npx vitest run test/ipclip-step.test.ts`, AVX2 and ATEN_CPU_CAPABILITY=default):
 * |Δz| ≤ 4.4e-7·s, domain tokens 4e-7 of their scale, terms ≤ 1e-6, gradients ≤ 3.3e-6 of their scale: every
 * bound holds with a margin of 100× or more, and a real error (a sign, a weight, a mask) is far above it.
 */
interface Tolerances { eps: number; s: number; classes: number; embedDim: number }

function termTolerances(t: Tolerances, scenario: string, preset: string, dA: ArrayLike<number>, dU: ArrayLike<number>): Record<string, number> {
  const dz = 2 * t.eps * t.s;
  const logitTerm = (2 + 2 * Math.log(t.classes)) * dz;
  let dMax = 0;
  let diffMax = 0;
  for (let i = 0; i < dA.length; i++) {
    dMax = Math.max(dMax, Math.abs(dA[i]!), Math.abs(dU[i]!));
    diffMax = Math.max(diffMax, Math.abs(dA[i]! - dU[i]!));
  }
  const tol: Record<string, number> = {
    ceA: logitTerm, ceU: logitTerm, ceSelf: logitTerm, ceCross: logitTerm, entropy: logitTerm,
    mse: 2 * diffMax * 2 * (2 * t.eps * dMax),
    kl: 10 * t.embedDim * t.eps,
  };
  tol.loss = Object.entries(lossWeights(scenario, preset)).reduce((sum, [k, w]) => sum + Math.abs(w) * tol[k]!, 0);
  return tol;
}

function gradientTolerance(t: Tolerances, scenario: string, preset: string): number {
  return 2 * t.eps * Object.values(lossWeights(scenario, preset)).reduce((sum, w) => sum + Math.abs(w), 0);
}

/**
 * `image_tokens.lin.bias` adds one scalar to every coordinate of the image tokens, which the text tower's first
 * LayerNorm removes: its exact gradient is 0, and both implementations return fp32 cancellation noise.
 */
const ZERO_GRADIENT = new Set(['image_tokens.lin.bias']);

function labels(content: SafetensorsContent, name: string): Int32Array {
  const t = content.tensors[name]!;
  return Int32Array.from(t.data as BigInt64Array, (v) => Number(v));
}

function tensor(content: SafetensorsContent, name: string): Tensor {
  return { data: floatData(content, name), shape: content.tensors[name]!.shape };
}

describe.skipIf(!HAVE)('IP-CLIP step parity with the release (ipclip-step fixture)', () => {
  let clip: Clip;
  let fx: SafetensorsContent;
  let classNames: string[];
  let terms: Record<string, Record<string, number>>;
  let dir: string;
  let releaseFile: string;
  let prompt: PromptModel;
  let batchA: TrainBatch;
  let batchU: TrainBatch;
  let tol: Tolerances;

  beforeAll(async () => {
    clip = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, device: TEST_DEVICE });
    fx = await readSafetensors(STEP);
    classNames = JSON.parse(fx.metadata.classnames!) as string[];
    terms = JSON.parse(fx.metadata.terms!) as Record<string, Record<string, number>>;
    // The release's state as the release writes it: its names, its unused parameters and BatchNorm counters.
    dir = mkdtempSync(join(tmpdir(), 'ipclip-step-'));
    releaseFile = join(dir, 'release.safetensors');
    const state: Record<string, TensorToWrite> = {};
    for (const [name, t] of Object.entries(fx.tensors)) if (name.startsWith('state.')) state[name.slice(6)] = { data: t.data, shape: t.shape };
    await writeSafetensors(releaseFile, state);
    prompt = await PromptModel.load(clip, releaseFile, { classNames });
    batchA = { images: tensor(fx, 'inputs.imagesA'), labels: labels(fx, 'inputs.labelsA') };
    batchU = { images: tensor(fx, 'inputs.imagesU'), labels: labels(fx, 'inputs.labelsU') };
    tol = { eps: clipBudget(clip.config), s: clip.logitScale, classes: classNames.length, embedDim: clip.config.embedDim };
  });

  afterAll(() => {
    prompt?.dispose();
    clip?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('imports the release state: every fixture parameter is in the prompt, unused ones are not', async () => {
    const state = await prompt.state();
    expect(prompt.nCtx).toBe(10);
    for (const name of Object.keys(fx.tensors).filter((n) => n.startsWith('state.'))) {
      const key = name.slice(6);
      if (key.startsWith('style_mapping_tokens.') || /running_|num_batches|logit_scale/.test(key)) {
        expect(state[key], key).toBeUndefined();
        continue;
      }
      expect(state[key], key).toBeDefined();
      expect(Array.from(state[key]!.data)).toEqual(Array.from(floatData(fx, name)));
    }
  });

  it('gives the release initial logits on the bank batches', async () => {
    for (const s of ['A', 'U']) {
      const { logits } = await prompt.logits(tensor(fx, `inputs.bankImages${s}`));
      expect(logits.shape).toEqual([12, 5]);
      expectWithin(logits.data, floatData(fx, `expected.initialLogitsBank${s}`), 2 * tol.eps * tol.s, `initial logits ${s}`);
    }
  });

  it('rebuilds the same banks from the bank batches (authorized and unauthorized rules)', async () => {
    const p = await PromptModel.load(clip, releaseFile, { classNames });
    try {
      await p.resetBanks();
      const empty = await p.state();
      expect(empty.source_feat_bank!.data.every((v) => v === 0)).toBe(true);
      await p.updateBanks(tensor(fx, 'inputs.bankImagesA'), labels(fx, 'inputs.bankLabelsA'), 'authorized');
      await p.updateBanks(tensor(fx, 'inputs.bankImagesU'), labels(fx, 'inputs.bankLabelsU'), 'unauthorized');
      const state = await p.state();
      expectWithin(state.source_feat_bank!.data, floatData(fx, 'state.source_feat_bank'), tol.eps, 'source bank');
      expectWithin(state.target_feat_bank!.data, floatData(fx, 'state.target_feat_bank'), tol.eps, 'target bank');
    } finally {
      p.dispose();
    }
  });

  for (const name of CASES) {
    it(`matches the release's ${name} step: terms, total, logits, domain tokens, gradients`, async () => {
      const [preset, scenario] = name.split('/') as ['official' | 'paper', 'target-specified' | 'target-free'];
      const trainer = new IPTrainer(prompt, { scenario, preset });
      const r = await trainer.step(batchA, batchU, { update: false, returnOutputs: true });
      expect(r.skipped).toBe(false);
      expect(trainer.iteration).toBe(0); // update: false is not an optimiser step
      const outs = r.outputs!;
      const dA = floatData(fx, 'expected.domainA'), dU = floatData(fx, 'expected.domainU');
      const termTol = termTolerances(tol, scenario, preset, dA, dU);
      for (const k of TERMS) expectWithin([r[k]], [terms[name]![k]!], termTol[k]!, `${name} ${k}`);
      for (const k of ['zA', 'zU', 'zSelf', 'zCross', 'domainA', 'domainU'] as const) {
        expect(outs[k].shape).toEqual(fx.tensors[`expected.${k}`]!.shape);
        const expected = floatData(fx, `expected.${k}`);
        expectWithin(outs[k].data, expected, k.startsWith('z') ? 2 * tol.eps * tol.s : 2 * tol.eps * maxAbs(expected), `${name} ${k}`);
      }
      const grads = prompt.gradients();
      const prefix = `expected.${name}.grad.`;
      const expected = Object.keys(fx.tensors).filter((n) => n.startsWith(prefix));
      expect(expected.length).toBe(20);
      const gTol = gradientTolerance(tol, scenario, preset);
      const globalScale = Math.max(...expected.map((g) => maxAbs(floatData(fx, g))));
      for (const g of expected) {
        const param = g.slice(prefix.length);
        expect(grads[param], param).toBeDefined();
        expect(grads[param]!.shape).toEqual(fx.tensors[g]!.shape);
        if (ZERO_GRADIENT.has(param)) {
          for (const v of [...grads[param]!.data, ...floatData(fx, g)]) expect(Math.abs(v), param).toBeLessThanOrEqual(gTol * globalScale);
          continue;
        }
        expect(relToScale(grads[param]!.data, floatData(fx, g), param), `${name} grad ${param}`).toBeLessThanOrEqual(gTol);
      }
    });
  }

  it('gives the same logits, terms and gradients on the fast and the naive text path (float64, 1e-10 of scale)', async () => {
    // Two computations of the same function: proven in float64, where the comparison does not depend on which
    // summation order this CPU's kernels take (fp32 differs between machines by ~1e-7 of the logit scale).
    const clip64 = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, device: 'cpu', dtype: 'float64' });
    const fast = await PromptModel.load(clip64, releaseFile, { classNames });
    const slow = await PromptModel.load(clip64, releaseFile, { classNames, textPath: 'naive' });
    try {
      const images = tensor(fx, 'inputs.bankImagesA');
      const [lf, ln] = [(await fast.logits(images)).logits, (await slow.logits(images)).logits];
      expect(lf.data).toBeInstanceOf(Float64Array);
      expect(relToScale(lf.data, ln.data, 'logits fast vs naive')).toBeLessThanOrEqual(EXACT);
      for (const name of CASES) {
        const [preset, scenario] = name.split('/') as ['official' | 'paper', 'target-specified' | 'target-free'];
        const rf = await new IPTrainer(fast, { scenario, preset }).step(batchA, batchU, { update: false });
        const rn = await new IPTrainer(slow, { scenario, preset }).step(batchA, batchU, { update: false });
        // Each term against its own size (means of non-negative quantities); the total, which nearly cancels in
        // official/target-free (−0.03 from O(1) terms), against the sum of its weighted terms' sizes.
        for (const k of TERMS) {
          const scale = k === 'loss' ? lossScale(rn, scenario, preset) : Math.abs(rn[k]);
          expect(scale, `${name} ${k}`).toBeGreaterThan(0);
          expect(Math.abs(rf[k] - rn[k]), `${name} ${k} fast vs naive`).toBeLessThanOrEqual(EXACT * scale);
        }
        const gf = fast.gradients();
        const gn = slow.gradients();
        expect(Object.keys(gf).sort()).toEqual(Object.keys(gn).sort());
        const globalScale = Math.max(...Object.values(gn).map((g) => maxAbs(g.data)));
        for (const p of Object.keys(gn)) {
          expect(gf[p]!.data, p).toBeInstanceOf(Float64Array);
          if (ZERO_GRADIENT.has(p)) {
            // Zero in exact arithmetic: round-off of the largest gradient's size at most, on both paths.
            expect(Math.max(maxAbs(gf[p]!.data), maxAbs(gn[p]!.data)), p).toBeLessThanOrEqual(EXACT * globalScale);
            continue;
          }
          expect(relToScale(gf[p]!.data, gn[p]!.data, `${name} grad ${p}`), `${name} grad ${p} fast vs naive`).toBeLessThanOrEqual(EXACT);
        }
      }
    } finally {
      fast.dispose();
      slow.dispose();
      clip64.dispose();
    }
  });
});
