// Compute dtypes. float64 (CPU only) is the same function as float32 with Float64Array results, and an IP prompt
// on a float64 CLIP runs in float64 throughout. In half precision (bf16 here; fp16 needs CUDA) the parameters whose
// rounding would bias every output stay fp32: logit_scale (ln 100 is 4.59375 in bf16, a 1 % scale error), the
// LayerNorm parameters and the class/positional embeddings.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Clip, type ClipConfig } from '../lib/clip/clip.js';
import { IpclipError } from '../lib/core/errors.js';
import { PromptModel } from '../lib/ipclip/prompt-model.js';
import { Rng } from '../lib/core/rng.js';
import { stepLoss } from '../lib/ipclip/scenario.js';
import { U32, U_BF16, clipBudget, relToScale } from './helpers/exactness.js';
import { CLIP_TINY, HAVE_SHARED, VOCAB_PATH } from './helpers/fixtures.js';

const CONFIG: ClipConfig = {
  embedDim: 32,
  vision: { width: 64, layers: 2, heads: 2, patchSize: 8, imageSize: 32 },
  text: { width: 64, layers: 2, heads: 2, contextLength: 24, vocabSize: 512 },
};

function images(seed: number, n: number, size: number): { data: Float32Array; shape: number[] } {
  const rng = new Rng(seed);
  return { data: Float32Array.from({ length: n * 3 * size * size }, () => rng.uniform(-1.8, 2.1)), shape: [n, 3, size, size] };
}

function ids(n: number, ctx: number, vocab: number): { data: Int32Array; shape: number[] } {
  const rng = new Rng(5);
  const data = new Int32Array(n * ctx);
  for (let r = 0; r < n; r++) {
    data[r * ctx] = vocab - 2;
    const len = rng.intBetween(1, ctx - 3);
    for (let i = 1; i <= len; i++) data[r * ctx + i] = rng.intBetween(1, vocab - 3);
    data[r * ctx + len + 1] = vocab - 1; // EOT: the largest id
  }
  return { data, shape: [n, ctx] };
}

/** Parameters that half precision keeps in fp32, counted from the architecture alone. */
function keptInFp32(c: ClipConfig): number {
  const g = c.vision.imageSize / c.vision.patchSize;
  const vision = c.vision.width /* class embedding */ + (g * g + 1) * c.vision.width /* positions */
    + 2 * 2 * c.vision.width /* ln_pre, ln_post */ + c.vision.layers * 2 * 2 * c.vision.width /* ln_1, ln_2 */;
  const text = c.text.contextLength * c.text.width + 2 * c.text.width /* ln_final */ + c.text.layers * 2 * 2 * c.text.width;
  return vision + text + 1 /* logit_scale */;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(IpclipError);
  return (err as IpclipError).code;
}

describe('float64', () => {
  let c32: Clip;
  let c64: Clip;
  beforeAll(async () => {
    c32 = await Clip.random(CONFIG, { seed: 2 });
    c64 = await Clip.random(CONFIG, { seed: 2, dtype: 'float64' });
  });
  afterAll(() => {
    c32?.dispose();
    c64?.dispose();
  });

  it('is the float32 function with Float64Array results, every parameter in float64', async () => {
    expect(c64.info.dtype).toBe('float64');
    expect(c64.info.bytes).toBe(2 * c32.info.bytes);
    expect(c64.info.logitScale).toBe(c32.info.logitScale); // the same fp32 draw, widened
    const x = images(1, 3, 32);
    const [e32, e64] = [await c32.encodeImage(x), await c64.encodeImage(x)];
    expect(e32.data).toBeInstanceOf(Float32Array);
    expect(e64.data).toBeInstanceOf(Float64Array);
    expect(e64.shape).toEqual([3, 32]);
    // fp32 against the (nearly exact) float64 result: within the fp32 budget of the towers (helpers/exactness.ts).
    const budget = clipBudget(CONFIG);
    expect(relToScale(e32.data, e64.data, 'image embeds')).toBeLessThanOrEqual(budget);
    const t = ids(4, 24, 512);
    const [t32, t64] = [await c32.encodeText(t), await c64.encodeText(t)];
    expect(t64.data).toBeInstanceOf(Float64Array);
    expect(relToScale(t32.data, t64.data, 'text embeds')).toBeLessThanOrEqual(budget);
    // And the float64 result is not the fp32 one widened: it has digits fp32 cannot hold.
    expect(Array.from(e64.data).some((v) => Math.fround(v) !== v)).toBe(true);
  });

  it('is refused on CUDA with ERR_DEVICE', async () => {
    expect(await codeOf(Clip.random(CONFIG, { device: 'cuda', dtype: 'float64' }))).toBe('ERR_DEVICE');
    expect(await codeOf(Clip.random(CONFIG, { dtype: 'float128' as never }))).toBe('ERR_INVALID_ARGUMENT');
  });
});

describe.skipIf(!HAVE_SHARED)('IP prompt on a float64 CLIP', () => {
  it('starts from the fp32 prompt parameters exactly and keeps state, logits and gradients in float64', async () => {
    const c32 = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH });
    const c64 = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, dtype: 'float64' });
    try {
      using p32 = await PromptModel.create(c32, ['cat', 'dog', 'bird'], { seed: 3 });
      using p64 = await PromptModel.create(c64, ['cat', 'dog', 'bird'], { seed: 3 });
      const [s32, s64] = [await p32.state(), await p64.state()];
      for (const [k, t] of Object.entries(s64)) {
        expect(t.data, k).toBeInstanceOf(Float64Array);
        expect(Array.from(t.data), k).toEqual(Array.from(s32[k]!.data)); // the same seeded fp32 draws, widened
      }
      const size = c64.config.vision.imageSize;
      const x = images(4, 2, size);
      const [l32, l64] = [(await p32.logits(x)).logits, (await p64.logits(x)).logits];
      expect(l64.data).toBeInstanceOf(Float64Array);
      // |Δz| ≤ 2ε·s: both unit vectors carry the towers' fp32 budget ε, and |z| ≤ s (Cauchy–Schwarz).
      const s = c32.info.logitScale;
      l32.data.forEach((v, i) => expect(Math.abs(v - l64.data[i]!)).toBeLessThanOrEqual(2 * clipBudget(c32.config) * s));
      const y = Int32Array.from([0, 2]);
      await p64.native.step(x.data, x.shape, y, x.data, x.shape, Int32Array.from([1, 1]),
        { ...stepLoss('target-specified', 'paper'), lr: 0.01, update: true, keepGradients: true });
      for (const [k, g] of Object.entries(p64.gradients())) expect(g.data, k).toBeInstanceOf(Float64Array);
      const opt = await p64.native.optimizerState();
      expect(opt.step).toBe(1);
      for (const [k, m] of Object.entries(opt.tensors)) expect(m.data, k).toBeInstanceOf(Float64Array);
    } finally {
      c32.dispose();
      c64.dispose();
    }
  });
});

describe('bfloat16 keeps logit_scale, LayerNorm and embedding tables in fp32', () => {
  it('reports the fp32 logit scale exactly (random init: 1/0.07) and holds those parameters at 4 bytes', async () => {
    const c32 = await Clip.random(CONFIG, { seed: 1 });
    const c16 = await Clip.random(CONFIG, { seed: 1, dtype: 'bfloat16' });
    try {
      expect(c16.info.dtype).toBe('bfloat16');
      expect(c16.info.logitScale).toBe(c32.info.logitScale);
      // OpenAI's initial scale, from ln(1/0.07) rounded to fp32: relative error at most u32·ln(1/0.07).
      expect(Math.abs(c32.info.logitScale - 1 / 0.07)).toBeLessThanOrEqual(2 * U32 * Math.log(1 / 0.07) / 0.07);
      // Parameter memory: N parameters, 4 bytes each in fp32; in bf16 2 bytes except the ones kept in fp32.
      const n = c32.info.bytes / 4;
      expect(c16.info.bytes).toBe(2 * n + 2 * keptInFp32(CONFIG));
    } finally {
      c32.dispose();
      c16.dispose();
    }
  });
});

describe.skipIf(!HAVE_SHARED)('bfloat16 clip-tiny', () => {
  it('keeps the checkpoint logit scale and applies it natively: the protected logits are logitScale · cos', async () => {
    const c32 = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH });
    const c16 = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, dtype: 'bfloat16' });
    try {
      // The file stores logit_scale = 2.66 in fp16 (2.66015625): its exp, whatever the compute dtype.
      expect(c32.info.logitScale).toBeCloseTo(Math.exp(2.66015625), 12);
      expect(c16.info.logitScale).toBe(c32.info.logitScale);
      const s = c16.info.logitScale;
      expect(c16.info.bytes).toBe(2 * (c32.info.bytes / 4) + 2 * keptInFp32(c16.config));

      // The scale the prompt applies, measured without bf16 noise: feed the step unit embeddings e_k (k < D) with
      // one image's statistics in every row. Every row then has the same class prompts, so zA[k, c] = s·t_c[k]
      // and Σ_k zA[k, c]² = s²·‖t_c‖² = s² (text features are unit vectors, normalised in fp32).
      using p16 = await PromptModel.create(c16, ['cat', 'dog', 'bird'], { seed: 3 });
      const size = c16.config.vision.imageSize;
      const one = await p16.native.encodeVision(images(8, 1, size).data, [1, 3, size, size]);
      const D = c16.config.embedDim;
      const [L, , , W] = one.stats.shape as [number, number, number, number];
      const stats = new Float32Array(L * D * 2 * W);
      for (let l = 0; l < L; l++) for (let k = 0; k < D; k++) stats.set(one.stats.data.subarray(l * 2 * W, (l + 1) * 2 * W), (l * D + k) * 2 * W);
      const embeds = new Float32Array(D * D);
      for (let k = 0; k < D; k++) embeds[k * D + k] = 1;
      const feats = { embeds: { data: embeds, shape: [D, D] }, stats: { data: stats, shape: [L, D, 2, W] } };
      const r = await p16.native.stepFeatures(feats, new Int32Array(D), feats, new Int32Array(D),
        { ...stepLoss('reference', 'paper'), lr: 0, update: false, returnOutputs: true });
      const z = r.outputs!.zA;
      expect(z.shape).toEqual([D, 3]);
      for (let c = 0; c < 3; c++) {
        let sq = 0;
        for (let k = 0; k < D; k++) sq += z.data[k * 3 + c]! ** 2;
        // fp32 normalisation and product: relative error a few D·u32 (bf16's logit scale would be 0.4 % off).
        expect(Math.abs(Math.sqrt(sq) - s), `class ${c}`).toBeLessThanOrEqual(4 * D * U32 * s);
      }

      // And on images: within bf16 rounding of the fp32 prompt's logits, both scaled by the same s (each tower
      // stage rounds its output to bf16, a relative U_BF16, over 6 stages per block and 4 more; f and t both).
      using p32 = await PromptModel.create(c32, ['cat', 'dog', 'bird'], { seed: 3 });
      const x = images(9, 4, size);
      const [z32, z16] = [(await p32.logits(x)).logits, (await p16.logits(x)).logits];
      const stages = 6 * (c16.config.vision.layers + c16.config.text.layers) + 4;
      z32.data.forEach((v, i) => expect(Math.abs(v - z16.data[i]!)).toBeLessThanOrEqual(2 * stages * U_BF16 * s));
    } finally {
      c32.dispose();
      c16.dispose();
    }
  });
});
