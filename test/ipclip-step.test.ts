// Parity with the authors' released trainer: one IP-CLIP step on clip-tiny (../shared/fixtures/ipclip-step).
// The release's state is imported through IPPrompt.load (its own format, converted to safetensors), the banks
// are rebuilt from the recorded bank batches, and the four preset × scenario cases must give the recorded
// terms, logits, domain tokens and gradients.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Clip } from '../lib/clip.js';
import { IPPrompt } from '../lib/prompt.js';
import { readSafetensors, writeSafetensors, type SafetensorsContent, type TensorToWrite } from '../lib/safetensors.js';
import type { Tensor } from '../lib/tensor.js';
import { IPTrainer, type TrainBatch } from '../lib/trainer.js';
import { CLIP_TINY, HAVE_SHARED, TEST_DEVICE, VOCAB_PATH, floatData, shared } from './helpers/fixtures.js';

const STEP = shared('fixtures', 'ipclip-step', 'step.safetensors');
const HAVE = HAVE_SHARED && existsSync(STEP);
const CASES = ['official/target-specified', 'official/target-free', 'paper/target-specified', 'paper/target-free'] as const;
const TERMS = ['ceA', 'ceU', 'ceSelf', 'ceCross', 'mse', 'kl', 'entropy', 'loss'] as const;

/** Largest violation of |a − b| ≤ abs + rel·|b| (0 when all pass), with where it happened. */
function worst(actual: ArrayLike<number>, expected: ArrayLike<number>, rel: number, abs: number): { excess: number; at: number } {
  expect(actual.length).toBe(expected.length);
  let excess = 0;
  let at = -1;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!) - (abs + rel * Math.abs(expected[i]!));
    if (!(d <= excess)) { excess = d; at = i; } // NaN counts as a failure
  }
  return { excess, at };
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rel: number, abs: number, what: string): void {
  const w = worst(actual, expected, rel, abs);
  expect(w.excess, `${what}: index ${w.at}: ${actual[w.at]} vs ${expected[w.at]}`).toBeLessThanOrEqual(0);
}

/**
 * Gradient comparison. Both sides accumulate in fp32 in different orders, so an entry a few hundred times
 * smaller than the tensor's largest carries absolute noise of the order of 1e-6 × the tensor's scale (measured:
 * at most 4e-6 of the scale against the release, and the same between our fast and naive paths). Hence: the
 * whole tensor within `rel` (‖a − b‖ / ‖b‖), and every entry within rel·|b| + 1e-6 + 1e-5 × max|b|.
 */
function expectCloseTensor(actual: ArrayLike<number>, expected: ArrayLike<number>, rel: number, what: string): void {
  let scale = 0;
  let num = 0;
  let den = 0;
  for (let i = 0; i < expected.length; i++) {
    scale = Math.max(scale, Math.abs(expected[i]!));
    num += (actual[i]! - expected[i]!) ** 2;
    den += expected[i]! ** 2;
  }
  expectClose(actual, expected, rel, 1e-6 + 1e-5 * scale, what);
  if (den > 1e-12) expect(Math.sqrt(num / den), `${what}: relative error of the tensor`).toBeLessThanOrEqual(rel);
}

/**
 * `image_tokens.lin.bias` adds one scalar to every coordinate of the image tokens, which the text tower's first
 * LayerNorm removes: its exact gradient is 0, and both implementations return fp32 cancellation noise (~1e-6).
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
  let prompt: IPPrompt;
  let naive: IPPrompt;
  let batchA: TrainBatch;
  let batchU: TrainBatch;

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
    prompt = await IPPrompt.load(clip, releaseFile, { classNames });
    naive = await IPPrompt.load(clip, releaseFile, { classNames, textPath: 'naive' });
    batchA = { images: tensor(fx, 'inputs.imagesA'), labels: labels(fx, 'inputs.labelsA') };
    batchU = { images: tensor(fx, 'inputs.imagesU'), labels: labels(fx, 'inputs.labelsU') };
  });

  afterAll(() => {
    prompt?.dispose();
    naive?.dispose();
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
      expectClose(logits.data, floatData(fx, `expected.initialLogitsBank${s}`), 1e-4, 1e-4, `initial logits ${s}`);
    }
  });

  it('rebuilds the same banks from the bank batches (authorized and unauthorized rules)', async () => {
    const p = await IPPrompt.load(clip, releaseFile, { classNames });
    try {
      await p.resetBanks();
      const empty = await p.state();
      expect(empty.source_feat_bank!.data.every((v) => v === 0)).toBe(true);
      await p.updateBanks(tensor(fx, 'inputs.bankImagesA'), labels(fx, 'inputs.bankLabelsA'), 'authorized');
      await p.updateBanks(tensor(fx, 'inputs.bankImagesU'), labels(fx, 'inputs.bankLabelsU'), 'unauthorized');
      const state = await p.state();
      expectClose(state.source_feat_bank!.data, floatData(fx, 'state.source_feat_bank'), 1e-4, 1e-5, 'source bank');
      expectClose(state.target_feat_bank!.data, floatData(fx, 'state.target_feat_bank'), 1e-4, 1e-5, 'target bank');
    } finally {
      p.dispose();
    }
  });

  for (const name of CASES) {
    it(`matches the release's ${name} step: terms, total, logits, domain tokens, gradients`, async () => {
      const [preset, scenario] = name.split('/') as ['official' | 'paper', 'target-specified' | 'target-free'];
      const trainer = new IPTrainer(clip, prompt, { scenario, preset });
      const r = await trainer.step(batchA, batchU, { update: false, returnOutputs: true });
      expect(r.skipped).toBe(false);
      expect(trainer.iteration).toBe(0); // update: false is not an optimiser step
      for (const k of TERMS) expectClose([r[k]], [terms[name]![k]!], 1e-4, 1e-6, `${name} ${k}`);
      const outs = r.outputs!;
      for (const k of ['zA', 'zU', 'zSelf', 'zCross', 'domainA', 'domainU'] as const) {
        expect(outs[k].shape).toEqual(fx.tensors[`expected.${k}`]!.shape);
        expectClose(outs[k].data, floatData(fx, `expected.${k}`), 1e-4, 1e-6, `${name} ${k}`);
      }
      const grads = prompt.gradients();
      const prefix = `expected.${name}.grad.`;
      const expected = Object.keys(fx.tensors).filter((n) => n.startsWith(prefix));
      expect(expected.length).toBe(20);
      for (const g of expected) {
        const param = g.slice(prefix.length);
        expect(grads[param], param).toBeDefined();
        expect(grads[param]!.shape).toEqual(fx.tensors[g]!.shape);
        if (ZERO_GRADIENT.has(param)) {
          for (const v of [...grads[param]!.data, ...floatData(fx, g)]) expect(Math.abs(v), param).toBeLessThan(1e-5);
          continue;
        }
        expectCloseTensor(grads[param]!.data, floatData(fx, g), 1e-4, `${name} grad ${param}`);
      }
    });
  }

  it('gives the same logits, terms and gradients on the fast and the naive text path', async () => {
    const images = tensor(fx, 'inputs.bankImagesA');
    const [fast, slow] = [await prompt.logits(images), await naive.logits(images)];
    expectClose(fast.logits.data, slow.logits.data, 1e-5, 1e-6, 'logits fast vs naive');
    for (const name of CASES) {
      const [preset, scenario] = name.split('/') as ['official' | 'paper', 'target-specified' | 'target-free'];
      const rf = await new IPTrainer(clip, prompt, { scenario, preset }).step(batchA, batchU, { update: false });
      const rn = await new IPTrainer(clip, naive, { scenario, preset }).step(batchA, batchU, { update: false });
      // The total is a weighted sum of O(1) terms that nearly cancel in official/target-free (−0.03): its
      // absolute rounding noise is that of the terms (~1e-6), not of its own size.
      for (const k of TERMS) expectClose([rf[k]], [rn[k]], 1e-5, k === 'loss' ? 1e-5 : 1e-7, `${name} ${k} fast vs naive`);
      const gf = prompt.gradients();
      const gn = naive.gradients();
      expect(Object.keys(gf).sort()).toEqual(Object.keys(gn).sort());
      for (const p of Object.keys(gn)) {
        if (ZERO_GRADIENT.has(p)) continue;
        expectCloseTensor(gf[p]!.data, gn[p]!.data, 1e-5, `${name} grad ${p} fast vs naive`);
      }
    }
  });
});
