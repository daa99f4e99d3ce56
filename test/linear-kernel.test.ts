// The towers' linear layers through oneDNN (`linear: 'onednn'`) against OpenBLAS (`linear: 'blas'`, the path of
// every release so far): the same function up to fp32 round-off, in inference (image and text towers, per-layer
// statistics) and in the training step (the text tower's backward to the prompt goes through oneDNN's backward
// too). The bound, 1e-5 of each tensor's scale, is issue 12's: two fp32 GEMMs that sum in different orders differ
// by a few units of 2⁻²⁴ per product, far below it, while a wrong layer (a dropped bias, a transposed weight, a
// mixed-up activation) is off by O(1). float64 never takes oneDNN: its results are bit for bit today's.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadNative } from '../lib/native/load.js';
import type { NativePromptModel } from '../lib/ipclip/prompt-model.js';
import { Rng } from '../lib/core/rng.js';
import { stepLoss } from '../lib/ipclip/scenario.js';
import type { FloatTensor } from '../lib/core/tensor.js';
import { relToScale } from './helpers/exactness.js';
import { CLIP_TINY, HAVE_SHARED } from './helpers/fixtures.js';
import { testThreads } from './helpers/threads.js';

interface RawClip {
  info: { dtype: string; linear: string };
  encodeImage(data: Float32Array, shape: number[], opts?: { stats?: boolean }): Promise<{ embeds: FloatTensor; stats?: FloatTensor }>;
  encodeText(ids: Int32Array, shape: number[]): Promise<FloatTensor>;
  dispose(): void;
}
interface LoadOpts { seed?: number; dtype?: string; linear?: string }
interface TestAddon {
  setThreads(n: number): void;
  loadClip(path: string, opts: LoadOpts): Promise<RawClip>;
  createRandomClip(config: object, opts: LoadOpts): Promise<RawClip>;
  createPrompt(clip: RawClip, ids: Int32Array, shape: [number, number], opts: { seed: number; textPath: 'fast' | 'naive' }): NativePromptModel;
  runtimeInfo(): { cpu: { avx512f: boolean; avx512bf16: boolean; amxBf16: boolean; onednn: boolean } };
}

const addon = loadNative() as unknown as TestAddon;
addon.setThreads(testThreads(1));
const ONEDNN = addon.runtimeInfo().cpu.onednn;
const TOL = 1e-5;

const VOCAB = 512;
const LAYERS = 2;
const N_CTX = 2 * LAYERS + 4;
const C = 5;
const B = 3;

function config(activation: 'quick_gelu' | 'gelu'): object {
  return {
    embedDim: 32,
    vision: { width: 128, layers: LAYERS, heads: 2, patchSize: 8, imageSize: 32, activation },
    text: { width: 128, layers: 2, heads: 2, contextLength: 24, vocabSize: VOCAB, activation },
  };
}

function images(seed: number, n: number, size = 32): { data: Float32Array; shape: number[] } {
  const rng = new Rng(seed);
  return { data: Float32Array.from({ length: n * 3 * size * size }, () => rng.uniform(-1.8, 2.1)), shape: [n, 3, size, size] };
}

/** [SOT, X×nCtx, 1–6 random tokens, EOT, 0…] per row (EOT the largest id, as CLIP finds it). */
function tokens(rows: number, ctx: number, vocab: number, seed: number): Int32Array {
  const rng = new Rng(seed);
  const ids = new Int32Array(rows * ctx);
  for (let r = 0; r < rows; r++) {
    const name = Array.from({ length: rng.intBetween(1, 6) }, () => rng.intBetween(1, vocab - 3));
    [vocab - 2, ...Array<number>(N_CTX).fill(7), ...name, vocab - 1].forEach((t, i) => { ids[r * ctx + i] = t; });
  }
  return ids;
}

function identical(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  return a.length === b.length && Array.from(a).every((v, i) => Object.is(v, b[i]));
}

async function bothEncodings(blas: RawClip, onednn: RawClip, ctx: number, vocab: number, size: number) {
  const x = images(3, 4, size);
  const [eb, eo] = [await blas.encodeImage(x.data, x.shape, { stats: true }), await onednn.encodeImage(x.data, x.shape, { stats: true })];
  const t = tokens(4, ctx, vocab, 9);
  const [tb, to] = [await blas.encodeText(t, [4, ctx]), await onednn.encodeText(t, [4, ctx])];
  return { eb, eo, tb, to };
}

describe.skipIf(!ONEDNN)('linear: onednn against blas, fp32', () => {
  it.skipIf(!HAVE_SHARED)('clip-tiny (OpenAI weights file): image and text embeddings and layer statistics within 1e-5', async () => {
    const blas = await addon.loadClip(CLIP_TINY.openaiSafetensors, { linear: 'blas' });
    const onednn = await addon.loadClip(CLIP_TINY.openaiSafetensors, { linear: 'onednn' });
    expect(blas.info.linear).toBe('blas');
    expect(onednn.info.linear).toBe('onednn');
    const { eb, eo, tb, to } = await bothEncodings(blas, onednn, 77, 49408, 32);
    expect(relToScale(eo.embeds.data, eb.embeds.data, 'image embeds')).toBeLessThanOrEqual(TOL);
    expect(relToScale(eo.stats!.data, eb.stats!.data, 'layer stats')).toBeLessThanOrEqual(TOL);
    expect(relToScale(to.data, tb.data, 'text embeds')).toBeLessThanOrEqual(TOL);
    // Another engine really ran: two GEMMs that sum in another order do not agree in every last bit.
    expect(identical(eo.embeds.data, eb.embeds.data) && identical(to.data, tb.data)).toBe(false);
    blas.dispose();
    onednn.dispose();
  });

  for (const activation of ['quick_gelu', 'gelu'] as const) {
    it(`random CLIP with ${activation}: embeddings within 1e-5`, async () => {
      const blas = await addon.createRandomClip(config(activation), { seed: 4, linear: 'blas' });
      const onednn = await addon.createRandomClip(config(activation), { seed: 4, linear: 'onednn' });
      const { eb, eo, tb, to } = await bothEncodings(blas, onednn, 24, VOCAB, 32);
      expect(relToScale(eo.embeds.data, eb.embeds.data, 'image embeds')).toBeLessThanOrEqual(TOL);
      expect(relToScale(to.data, tb.data, 'text embeds')).toBeLessThanOrEqual(TOL);
      blas.dispose();
      onednn.dispose();
    });
  }

  it('training step (text tower forward and backward to the prompt): loss terms, gradients and logits within 1e-5', async () => {
    const outcome = async (linear: string) => {
      const clip = await addon.createRandomClip(config('quick_gelu'), { seed: 6, linear });
      const prompt = addon.createPrompt(clip, tokens(C, 24, VOCAB, 2), [C, 24], { seed: 5, textPath: 'fast' });
      const A = images(1, B);
      const U = images(2, B);
      const { logits } = await prompt.logits(A.data, A.shape);
      const r = await prompt.step(A.data, A.shape, Int32Array.from([0, 3, 4]), U.data, U.shape, Int32Array.from([1, 1, 2]),
        { ...stepLoss('target-specified', 'paper'), lr: 0.01, update: false });
      expect(r.skipped).toBe(false);
      const grads = prompt.gradients();
      prompt.dispose();
      clip.dispose();
      return { terms: { ...r.terms } as Record<string, number>, grads, logits };
    };
    const b = await outcome('blas');
    const o = await outcome('onednn');
    expect(relToScale(o.logits.data, b.logits.data, 'logits')).toBeLessThanOrEqual(TOL);
    for (const [k, v] of Object.entries(b.terms)) {
      if (k === 'loss') continue; // a signed sum of the terms: compared through them
      expect(Math.abs(o.terms[k]! - v) / Math.max(Math.abs(v), 1e-3), k).toBeLessThanOrEqual(TOL);
    }
    expect(Object.keys(o.grads).sort()).toEqual(Object.keys(b.grads).sort());
    // Per tensor against the step's largest gradient entry (a gradient that is zero in exact arithmetic holds
    // only round-off, which no relative bound of its own can judge).
    const global = Math.max(...Object.values(b.grads).map((g) => Math.max(...Array.from(g.data, Math.abs))));
    expect(global).toBeGreaterThan(0);
    for (const [k, g] of Object.entries(b.grads)) {
      let diff = 0;
      g.data.forEach((v, i) => { diff = Math.max(diff, Math.abs(v - o.grads[k]!.data[i]!)); });
      expect(diff / global, k).toBeLessThanOrEqual(TOL);
    }
  });
});

describe('linear: float64 and the option itself', () => {
  it('float64 keeps the BLAS path whatever is asked: results bit for bit those of linear: blas', async () => {
    const blas = await addon.createRandomClip(config('quick_gelu'), { seed: 4, dtype: 'float64', linear: 'blas' });
    const asked = await addon.createRandomClip(config('quick_gelu'), { seed: 4, dtype: 'float64', linear: 'onednn' });
    expect(asked.info.linear).toBe('blas');
    const { eb, eo, tb, to } = await bothEncodings(blas, asked, 24, VOCAB, 32);
    expect(identical(eo.embeds.data, eb.embeds.data)).toBe(true);
    expect(identical(eo.stats!.data, eb.stats!.data)).toBe(true);
    expect(identical(to.data, tb.data)).toBe(true);
    blas.dispose();
    asked.dispose();
  });

  it("'auto' takes oneDNN exactly on CPUs with AVX-512 (read here from /proc/cpuinfo)", async () => {
    let flags: string[] = [];
    try {
      flags = (/^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '').trim().split(/\s+/);
    } catch { /* not Linux: no flags, so no AVX-512 */ }
    const clip = await addon.createRandomClip(config('quick_gelu'), { seed: 1 }); // the default is 'auto'
    expect(clip.info.linear).toBe(flags.includes('avx512f') && ONEDNN ? 'onednn' : 'blas');
    clip.dispose();
  });

  it("dtype 'auto' is bfloat16 exactly on CPUs with AVX512-BF16 or AMX, else float32", async () => {
    let flags: string[] = [];
    try {
      flags = (/^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '').trim().split(/\s+/);
    } catch { /* no flags: float32 */ }
    const clip = await addon.createRandomClip(config('quick_gelu'), { seed: 1, dtype: 'auto' });
    expect(clip.info.dtype).toBe(flags.includes('avx512_bf16') || flags.includes('amx_bf16') ? 'bfloat16' : 'float32');
    clip.dispose();
  });

  it('an unknown kernel name is ERR_INVALID_ARGUMENT before anything is loaded', async () => {
    const err = await Promise.resolve().then(() => addon.createRandomClip(config('gelu'), { linear: 'mkl' })).then(() => null, (e: unknown) => e);
    expect((err as { code?: string }).code).toBe('ERR_INVALID_ARGUMENT');
    expect(String((err as Error).message)).toMatch(/'auto', 'onednn' or 'blas'/);
  });
});

describe('Clip.load / Clip.random: dtype auto and linear', () => {
  it('pass linear through (info.linear) and refuse an unknown one with ERR_INVALID_ARGUMENT', async () => {
    const { Clip } = await import('../lib/clip/clip.js');
    const blas = await Clip.random(config('gelu') as never, { seed: 1, linear: 'blas' });
    expect(blas.info.linear).toBe('blas');
    blas.dispose();
    if (ONEDNN) {
      const onednn = await Clip.random(config('gelu') as never, { seed: 1, linear: 'onednn' });
      expect(onednn.info.linear).toBe('onednn');
      onednn.dispose();
      // bfloat16 takes the oneDNN layers too (clip/linear.cpp's usesOneDnn), and info says so.
      const bf16 = await Clip.random(config('gelu') as never, { seed: 1, linear: 'onednn', dtype: 'bfloat16' });
      expect(bf16.info.linear).toBe('onednn');
      bf16.dispose();
    }
    const err = await Clip.random(config('gelu') as never, { linear: 'fast' as never }).then(() => null, (e: unknown) => e);
    expect((err as { code?: string }).code).toBe('ERR_INVALID_ARGUMENT');
    const auto = await Clip.random(config('gelu') as never, { seed: 1, dtype: 'auto' });
    expect(['float32', 'bfloat16']).toContain(auto.info.dtype);
    auto.dispose();
  });
});
