// The fast text path (shared prefix + truncation after the last EOT + one batched call) against the naive one
// (the release's per-image loop over full-length sequences): same logits, loss terms and gradients, indifference
// to tokens after EOT, and per-image results that do not depend on the rest of the batch. These are identities
// of exact arithmetic, so both sides run in float64 and must agree to 1e-10 of each tensor's scale: a bound that
// holds whatever BLAS, vector width (ATEN_CPU_CAPABILITY) or thread count sums in which order, and that a real
// difference (a wrong mask, a dropped token, a mixed-up row) exceeds by many orders of magnitude.
import { describe, expect, it } from 'vitest';
import { loadNative } from '../lib/native/load.js';
import type { NativePromptModel } from '../lib/ipclip/prompt-model.js';
import { Rng } from '../lib/core/rng.js';
import { stepLoss } from '../lib/ipclip/scenario.js';
import type { FloatTensor } from '../lib/core/tensor.js';
import { EXACT, lossScale, maxAbs, relToScale } from './helpers/exactness.js';
import { testThreads } from './helpers/threads.js';

interface ClipLike { dispose(): void }
interface TestAddon {
  setThreads(n: number): void;
  createRandomClip(config: object, opts: { seed: number; dtype?: string }): Promise<ClipLike>;
  createPrompt(clip: ClipLike, ids: Int32Array, shape: [number, number], opts: { seed: number; textPath: 'fast' | 'naive' }): NativePromptModel;
}

const addon = loadNative() as unknown as TestAddon;
addon.setThreads(testThreads(1)); // small shapes: one thread avoids contention with parallel test files

/** The CLIPs of these tests run in float64 (see the header). */
function float64Clip(ctx: number, seed: number): Promise<ClipLike> {
  return addon.createRandomClip(config(ctx), { seed, dtype: 'float64' });
}

const LAYERS = 2;
const N_CTX = 2 * LAYERS + 4;
const VOCAB = 512;
const SOT = VOCAB - 2; // makeClassPrompts finds EOT as the largest id, as CLIP does: EOT must be the top id
const EOT = VOCAB - 1;
const C = 5;
const B = 3;
const IMAGE = 32;

function config(contextLength: number): object {
  return {
    embedDim: 32,
    vision: { width: 64, layers: LAYERS, heads: 2, patchSize: 8, imageSize: IMAGE },
    text: { width: 64, layers: 2, heads: 2, contextLength, vocabSize: VOCAB },
  };
}

/** [SOT, X×nCtx, name (1–6 random tokens, varied), ".", EOT, pad…] per class; `pad` fills after EOT. */
function classTokens(ctx: number, seed: number, pad: (rng: Rng) => number): Int32Array {
  const rng = new Rng(seed);
  const padRng = new Rng(seed + 1000);
  const ids = new Int32Array(C * ctx);
  for (let c = 0; c < C; c++) {
    const name = Array.from({ length: rng.intBetween(1, 6) }, () => rng.intBetween(1, VOCAB - 3));
    const row = [SOT, ...Array<number>(N_CTX).fill(343 % VOCAB), ...name, 269, EOT];
    for (let i = 0; i < ctx; i++) ids[c * ctx + i] = i < row.length ? row[i] : pad(padRng);
  }
  return ids;
}

function images(seed: number, n: number): { data: Float32Array; shape: number[] } {
  const rng = new Rng(seed);
  const data = Float32Array.from({ length: n * 3 * IMAGE * IMAGE }, () => rng.uniform(-1.8, 2.1));
  return { data, shape: [n, 3, IMAGE, IMAGE] };
}

interface StepOutcome { terms: Record<string, number>; grads: Record<string, FloatTensor>; logits: FloatTensor }

async function run(clip: ClipLike, ids: Int32Array, ctx: number, textPath: 'fast' | 'naive'): Promise<StepOutcome> {
  const prompt = addon.createPrompt(clip, ids, [C, ctx], { seed: 5, textPath });
  const A = images(1, B);
  const U = images(2, B);
  const { logits } = await prompt.logits(A.data, A.shape);
  const r = await prompt.step(A.data, A.shape, Int32Array.from([0, 3, 4]), U.data, U.shape, Int32Array.from([1, 1, 2]),
    { ...stepLoss('target-specified', 'paper'), lr: 0.01, update: false });
  expect(r.skipped).toBe(false);
  const grads = prompt.gradients();
  prompt.dispose();
  return { terms: { ...r.terms }, grads, logits };
}

/** Every term and every gradient of `a` equals `b`'s to `tol` of its scale; both must be float64 results. */
function expectSameStep(a: StepOutcome, b: StepOutcome, tol: number): void {
  expect(a.logits.data).toBeInstanceOf(Float64Array);
  expect(b.logits.data).toBeInstanceOf(Float64Array);
  expect(relToScale(a.logits.data, b.logits.data, 'logits')).toBeLessThanOrEqual(tol);
  expect(Object.keys(a.terms).sort()).toEqual(Object.keys(b.terms).sort());
  for (const [k, v] of Object.entries(a.terms)) {
    expect(Number.isFinite(v), k).toBe(true);
    // The total nearly cancels: compared against the scale of its weighted terms. Every other term is a mean of
    // non-negative quantities (cross-entropies, entropies, squares, divergences), so its own size is its scale.
    const scale = k === 'loss' ? lossScale(a.terms, 'target-specified', 'paper') : Math.abs(v);
    expect(scale, k).toBeGreaterThan(0);
    expect(Math.abs(v - b.terms[k]!), k).toBeLessThanOrEqual(tol * scale);
  }
  const names = Object.keys(a.grads).sort();
  expect(names).toEqual(Object.keys(b.grads).sort());
  expect(names.length).toBeGreaterThan(0);
  const globalScale = Math.max(...names.map((k) => maxAbs(a.grads[k]!.data)));
  expect(globalScale).toBeGreaterThan(0);
  for (const k of names) {
    expect(a.grads[k]!.data, k).toBeInstanceOf(Float64Array);
    // A gradient that is zero in exact arithmetic (the image tokens' scalar bias shifts every width entry
    // alike, which every LayerNorm after it removes) holds only round-off: both paths must keep it at
    // round-off level, relative to the largest gradient.
    if (maxAbs(b.grads[k]!.data) < tol * globalScale) {
      expect(maxAbs(a.grads[k]!.data), k).toBeLessThan(tol * globalScale);
      continue;
    }
    expect(relToScale(a.grads[k]!.data, b.grads[k]!.data, k), k).toBeLessThanOrEqual(tol);
  }
}

describe.each([77, 24])('text paths at context length %i', (ctx) => {
  it('fast and naive give the same logits, loss terms and gradients (float64, 1e-10 of scale)', async () => {
    const clip = await float64Clip(ctx, 3);
    const ids = classTokens(ctx, 7, () => 0);
    const fast = await run(clip, ids, ctx, 'fast');
    const naive = await run(clip, ids, ctx, 'naive');
    expectSameStep(fast, naive, EXACT);
    clip.dispose();
  });

  it('tokens after each class EOT change nothing', async () => {
    const clip = await float64Clip(ctx, 4);
    const zeros = classTokens(ctx, 8, () => 0);
    const noise = classTokens(ctx, 8, (rng) => rng.intBetween(1, VOCAB - 3)); // same prompts, garbage after EOT
    expect(noise).not.toEqual(zeros);
    for (const path of ['fast', 'naive'] as const) {
      expectSameStep(await run(clip, noise, ctx, path), await run(clip, zeros, ctx, path), EXACT);
    }
    clip.dispose();
  });
});

describe('batching', () => {
  it("one image's protected logits equal its row in a batch", async () => {
    const clip = await float64Clip(77, 6);
    const prompt = addon.createPrompt(clip, classTokens(77, 9, () => 0), [C, 77], { seed: 2, textPath: 'fast' });
    const batch = images(3, 4);
    const all = (await prompt.logits(batch.data, batch.shape)).logits;
    expect(all.shape).toEqual([4, C]);
    const per = 3 * IMAGE * IMAGE;
    for (let i = 0; i < 4; i++) {
      const alone = (await prompt.logits(batch.data.slice(i * per, (i + 1) * per), [1, 3, IMAGE, IMAGE])).logits;
      expect(alone.data).toBeInstanceOf(Float64Array);
      expect(relToScale(alone.data, all.data.slice(i * C, (i + 1) * C), `image ${i}`)).toBeLessThanOrEqual(EXACT);
    }
    // The rows differ from each other: the check above compares something image-specific.
    expect(relToScale(all.data.slice(0, C), all.data.slice(C, 2 * C))).toBeGreaterThan(1e-3);
    prompt.dispose();
    clip.dispose();
  });
});
