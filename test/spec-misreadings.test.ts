// Tests that a misreading of the method would fail (issue 9, item 14): the min(·, 5) clamp on the negative terms
// passes no gradient once a term exceeds 5, and the optimiser step is Adam with coupled L2 weight decay, checked
// against the formula evaluated here in float64 from what the binding reports. clip-tiny and the release's state
// of the ipclip-step fixture (../shared), whose unauthorized batch has classes that the prompt scores far below the
// others: labelling U with them drives CE_U above 5 without touching any other term.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Clip } from '../lib/clip/clip.js';
import { PromptModel } from '../lib/ipclip/prompt-model.js';
import { readSafetensors, writeSafetensors, type SafetensorsContent, type TensorToWrite } from '../lib/io/safetensors.js';
import type { Tensor, FloatTensor } from '../lib/core/tensor.js';
import { IPTrainer, type TrainBatch } from '../lib/ipclip/trainer/trainer.js';
import { CLIP_TINY, HAVE_SHARED, TEST_DEVICE, VOCAB_PATH, floatData, shared } from './helpers/fixtures.js';

const STEP = shared('fixtures', 'ipclip-step', 'step.safetensors');
const HAVE = HAVE_SHARED && existsSync(STEP);
const CASES = ['official/target-specified', 'official/target-free', 'paper/target-specified', 'paper/target-free'] as const;

function tensor(content: SafetensorsContent, name: string): Tensor {
  return { data: floatData(content, name), shape: content.tensors[name]!.shape };
}

function labels(content: SafetensorsContent, name: string): Int32Array {
  return Int32Array.from(content.tensors[name]!.data as BigInt64Array, (v) => Number(v));
}

/** Mean cross-entropy of logits `[B, C]` against labels, in float64 (log-sum-exp shifted by the row maximum). */
function crossEntropy(z: FloatTensor, y: Int32Array): number {
  const [B, C] = z.shape as [number, number];
  let sum = 0;
  for (let i = 0; i < B; i++) {
    const row = Array.from(z.data.subarray(i * C, (i + 1) * C));
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
    sum += lse - row[y[i]!]!;
  }
  return sum / B;
}

/** For each row of `[B, C]` logits, the class at rank `k` of the ascending order (0: the lowest logit). */
function rankLabels(z: FloatTensor, k: number): Int32Array {
  const [B, C] = z.shape as [number, number];
  return Int32Array.from({ length: B }, (_, i) => {
    const row = Array.from(z.data.subarray(i * C, (i + 1) * C));
    return row.map((v, c) => [v, c] as const).sort((a, b) => a[0] - b[0])[k]![1];
  });
}

/** ‖a − b‖ / ‖b‖ of two gradient tensors (0/0 counts as 0). */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

describe.skipIf(!HAVE)('spec checks a misreading would fail (clip-tiny, ipclip-step fixture)', () => {
  let clip: Clip;
  let fx: SafetensorsContent;
  let classNames: string[];
  let dir: string;
  let releaseFile: string;
  let batchA: TrainBatch;
  let imagesU: Tensor;

  beforeAll(async () => {
    clip = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, device: TEST_DEVICE });
    fx = await readSafetensors(STEP);
    classNames = JSON.parse(fx.metadata.classnames!) as string[];
    dir = mkdtempSync(join(tmpdir(), 'ipclip-spec-'));
    releaseFile = join(dir, 'release.safetensors');
    const state: Record<string, TensorToWrite> = {};
    for (const [name, t] of Object.entries(fx.tensors)) if (name.startsWith('state.')) state[name.slice(6)] = { data: t.data, shape: t.shape };
    await writeSafetensors(releaseFile, state);
    batchA = { images: tensor(fx, 'inputs.imagesA'), labels: labels(fx, 'inputs.labelsA') };
    imagesU = tensor(fx, 'inputs.imagesU');
  });

  afterAll(() => {
    clip?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const name of CASES) {
    it(`${name}: CE_U above 5 is the constant 5, with no gradient; below 5 it counts with weight −1`, async () => {
      const [preset, scenario] = name.split('/') as ['official' | 'paper', 'target-specified' | 'target-free'];
      const prompt = await PromptModel.load(clip, releaseFile, { classNames });
      try {
        const trainer = new IPTrainer(prompt, { scenario, preset });
        // U's labels enter the loss only through CE_U (every other term uses A's labels or none): three labellings
        // of the same U images change CE_U and nothing else.
        const probe = await trainer.step(batchA, { images: imagesU, labels: labels(fx, 'inputs.labelsU') }, { update: false, returnOutputs: true });
        const zU = probe.outputs!.zU;
        const lowest = rankLabels(zU, 0);
        const second = rankLabels(zU, 1);
        const highest = rankLabels(zU, zU.shape[1]! - 1);
        const run = async (y: Int32Array) => {
          const r = await trainer.step(batchA, { images: imagesU, labels: y }, { update: false });
          return { r, grads: prompt.gradients() };
        };
        const [lo, mid, hi] = [await run(lowest), await run(second), await run(highest)];

        // The reported CE_U is the unclamped cross-entropy of U's logits (computed here in float64).
        for (const [{ r }, y] of [[lo, lowest], [mid, second], [hi, highest]] as const) {
          expect(Math.abs(r.ceU - crossEntropy(zU, y))).toBeLessThanOrEqual(1e-5 * r.ceU + 1e-6);
        }
        expect(lo.r.ceU).toBeGreaterThan(5.5);
        expect(mid.r.ceU).toBeGreaterThan(5.2);
        expect(lo.r.ceU - mid.r.ceU).toBeGreaterThan(0.3);
        expect(hi.r.ceU).toBeLessThan(1);
        // Above 5: the same total and the same gradients although CE_U differs by more than 0.3.
        expect(Math.abs(lo.r.loss - mid.r.loss)).toBeLessThanOrEqual(1e-6);
        const params = Object.keys(lo.grads);
        expect(params.length).toBeGreaterThan(5);
        for (const p of params) expect(relDiff(lo.grads[p]!.data, mid.grads[p]!.data), `${p}: CE_U 6.3 vs 5.6`).toBeLessThanOrEqual(1e-6);
        // Below 5 the term is live: the total moves by exactly −(CE_U − 5) against the clamped case, and the
        // gradients change (so the equality above is not one that could not fail).
        expect(Math.abs((hi.r.loss - lo.r.loss) - -(hi.r.ceU - 5))).toBeLessThanOrEqual(1e-5);
        // (measured: every tensor by 2–15 %; the exactly-zero gradient of image_tokens.lin.bias is fp32 noise.)
        for (const p of params.filter((q) => q !== 'image_tokens.lin.bias')) {
          expect(relDiff(hi.grads[p]!.data, lo.grads[p]!.data), `${p}: CE_U 0.06 vs 6.3`).toBeGreaterThan(1e-2);
        }
      } finally {
        prompt.dispose();
      }
    });
  }

  // Adam as torch.optim.Adam(weight_decay=wd) computes it: g ← g + wd·p (coupled L2), m ← β1·m + (1 − β1)·g,
  // v ← β2·v + (1 − β2)·g², p ← p − lr·(m / (1 − β1ᵗ)) / (√v / √(1 − β2ᵗ) + ε), β = (0.9, 0.999), ε = 1e-8.
  // Three steps; the moments are chained here in float64 from the reported gradients and parameters alone.
  for (const weightDecay of [undefined, 0.5] as const) {
    const wd = weightDecay ?? 5e-4;
    it(`applies Adam with coupled L2 weight decay ${wd}${weightDecay === undefined ? ' (the default)' : ''}, bias correction, over 3 steps`, async () => {
      const [b1, b2, eps, lr] = [0.9, 0.999, 1e-8, 2e-3];
      const prompt = await PromptModel.load(clip, releaseFile, { classNames });
      try {
        const trainer = new IPTrainer(prompt, { scenario: 'target-specified', preset: 'paper', ...(weightDecay === undefined ? {} : { weightDecay }) });
        const batchU = { images: imagesU, labels: labels(fx, 'inputs.labelsU') };
        expect((await prompt.native.optimizerState()).step).toBe(0);
        let before = await prompt.state();
        const m: Record<string, Float64Array> = {};
        const v: Record<string, Float64Array> = {};
        // Rounding bounds: m and v chained over |g| + wd·|p| instead of g + wd·p (fp32 rounds g + wd·p to that
        // scale, so where the two nearly cancel m and v carry that much absolute error).
        const mScale: Record<string, Float64Array> = {};
        const vScale: Record<string, Float64Array> = {};
        let sensitiveToDecay = 0;
        for (let t = 1; t <= 3; t++) {
          const r = await trainer.step(batchA, batchU, { lr, keepGradients: true });
          expect(r.skipped).toBe(false);
          const grads = prompt.gradients();
          const after = await prompt.state();
          const optim = await prompt.native.optimizerState();
          expect(optim.step).toBe(t);
          const bc1 = 1 - b1 ** t;
          const bc2 = 1 - b2 ** t;
          expect(Object.keys(grads).length).toBeGreaterThan(5);
          for (const [name, grad] of Object.entries(grads)) {
            const p0 = before[name]!.data;
            const n = p0.length;
            m[name] ??= new Float64Array(n);
            v[name] ??= new Float64Array(n);
            mScale[name] ??= new Float64Array(n);
            vScale[name] ??= new Float64Array(n);
            const mGot = optim.tensors[`exp_avg.${name}`]!.data;
            const vGot = optim.tensors[`exp_avg_sq.${name}`]!.data;
            const p1 = after[name]!.data;
            // Worst excess over the tolerance of each check (≤ 0 passes; NaN fails), one assertion per tensor.
            const worst = { m: [0, -1], v: [0, -1], p: [0, -1] } as Record<'m' | 'v' | 'p', [number, number]>;
            const note = (k: 'm' | 'v' | 'p', excess: number, i: number) => {
              if (!(excess <= worst[k][0])) worst[k] = [excess, i];
            };
            for (let i = 0; i < n; i++) {
              const gi = grad.data[i]! + wd * p0[i]!;
              m[name][i] = b1 * m[name][i]! + (1 - b1) * gi;
              v[name][i] = b2 * v[name][i]! + (1 - b2) * gi * gi;
              const gAbs = Math.abs(grad.data[i]!) + wd * Math.abs(p0[i]!);
              mScale[name][i] = b1 * mScale[name][i]! + (1 - b1) * gAbs;
              vScale[name][i] = b2 * vScale[name][i]! + (1 - b2) * gAbs * gAbs;
              const mi = m[name][i]!;
              const vi = v[name][i]!;
              note('m', Math.abs(mGot[i]! - mi) - (1e-6 * mScale[name][i]! + 1e-30), i);
              note('v', Math.abs(vGot[i]! - vi) - (1e-6 * vScale[name][i]! + 1e-30), i);
              const delta = -lr * (mi / bc1) / (Math.sqrt(vi) / Math.sqrt(bc2) + eps);
              note('p', Math.abs(p1[i]! - (p0[i]! + delta)) - (2.4e-7 * Math.abs(p0[i]!) + 1e-5 * lr), i);
              // Would the exp_avg check have noticed weight decay left out of the gradient (AdamW, or none)?
              if (Math.abs(wd * p0[i]! * (1 - b1)) > 2e-6 * mScale[name][i]! + 1e-30) sensitiveToDecay++;
            }
            for (const k of ['m', 'v', 'p'] as const) {
              const [excess, i] = worst[k];
              const got = k === 'm' ? mGot[i] : k === 'v' ? vGot[i] : p1[i];
              const want = k === 'm' ? m[name][i] : k === 'v' ? v[name][i] : undefined;
              expect(excess, `${name}[${i}] ${{ m: 'exp_avg', v: 'exp_avg_sq', p: 'parameter' }[k]} at step ${t}: ${got} vs ${want ?? 'formula'}`)
                .toBeLessThanOrEqual(0);
            }
          }
          // Parameters outside the optimiser (the enhancement module without trainEnhancer) do not move.
          for (const name of Object.keys(after).filter((k) => k.startsWith('attn_block.'))) {
            expect(grads[name], name).toBeUndefined();
            expect(Array.from(after[name]!.data), name).toEqual(Array.from(before[name]!.data));
          }
          before = after;
        }
        expect(sensitiveToDecay).toBeGreaterThan(100);
      } finally {
        prompt.dispose();
      }
    });
  }
});
