// The MLP activation of each tower (issue 9 item 3): Hugging Face `hidden_act` and open_clip's `quick_gelu` are
// honoured per tower, an unknown activation is refused, and the exact GELU is checked against a residual block
// recomputed here in float64 from the fixture's own Hugging Face weights (independent of the native code).
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseMeta, sameConfig } from '../lib/ipclip/checkpoint.js';
import { Clip } from '../lib/clip/clip.js';
import { IpclipError } from '../lib/core/errors.js';
import { readSafetensors, type SafetensorsContent } from '../lib/io/safetensors.js';
import type { Tensor, FloatTensor } from '../lib/core/tensor.js';
import { CLIP_TINY, HAVE_SHARED, TEST_DEVICE, floatData, maxAbsDiff, readGolden } from './helpers/fixtures.js';

async function errorOf(p: Promise<unknown>): Promise<IpclipError> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(IpclipError);
  return err as IpclipError;
}

// erf by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7): far below the tolerances used here.
function erf(x: number): number {
  const s = Math.sign(x);
  const a = Math.abs(x);
  const t = 1 / (1 + 0.3275911 * a);
  const y = 1 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-a * a);
  return s * y;
}
const gelu = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2));
const quickGelu = (x: number) => x / (1 + Math.exp(-1.702 * x));

/**
 * One pre-LN residual block of the vision tower in float64, from Hugging Face's own tensor names (separate q/k/v,
 * fc1/fc2): x [N,T,W] → [N,T,W].
 */
function residualBlock(hf: SafetensorsContent, layer: number, x: FloatTensor, heads: number, act: (v: number) => number): Float64Array {
  const [N, T, W] = x.shape as [number, number, number];
  const p = (name: string) => floatData(hf, `vision_model.encoder.layers.${layer}.${name}`);
  const linear = (input: Float64Array, rows: number, inDim: number, w: Float32Array, b: Float32Array, outDim: number) => {
    const out = new Float64Array(rows * outDim);
    for (let r = 0; r < rows; r++) for (let o = 0; o < outDim; o++) {
      let s = b[o]!;
      for (let i = 0; i < inDim; i++) s += input[r * inDim + i]! * w[o * inDim + i]!;
      out[r * outDim + o] = s;
    }
    return out;
  };
  const layerNorm = (input: Float64Array, rows: number, g: Float32Array, b: Float32Array) => {
    const out = new Float64Array(input.length);
    for (let r = 0; r < rows; r++) {
      let mean = 0;
      for (let i = 0; i < W; i++) mean += input[r * W + i]!;
      mean /= W;
      let v = 0;
      for (let i = 0; i < W; i++) v += (input[r * W + i]! - mean) ** 2;
      const inv = 1 / Math.sqrt(v / W + 1e-5);
      for (let i = 0; i < W; i++) out[r * W + i] = (input[r * W + i]! - mean) * inv * g[i]! + b[i]!;
    }
    return out;
  };
  const out = new Float64Array(N * T * W);
  const d = W / heads;
  for (let n = 0; n < N; n++) {
    const h = Float64Array.from(x.data.subarray(n * T * W, (n + 1) * T * W));
    const a = layerNorm(h, T, p('layer_norm1.weight'), p('layer_norm1.bias'));
    const q = linear(a, T, W, p('self_attn.q_proj.weight'), p('self_attn.q_proj.bias'), W);
    const k = linear(a, T, W, p('self_attn.k_proj.weight'), p('self_attn.k_proj.bias'), W);
    const v = linear(a, T, W, p('self_attn.v_proj.weight'), p('self_attn.v_proj.bias'), W);
    const ctx = new Float64Array(T * W);
    for (let hd = 0; hd < heads; hd++) for (let i = 0; i < T; i++) {
      const scores = new Float64Array(T);
      let max = -Infinity;
      for (let j = 0; j < T; j++) {
        let s = 0;
        for (let c = 0; c < d; c++) s += q[i * W + hd * d + c]! * k[j * W + hd * d + c]!;
        scores[j] = s / Math.sqrt(d);
        max = Math.max(max, scores[j]!);
      }
      let sum = 0;
      for (let j = 0; j < T; j++) { scores[j] = Math.exp(scores[j]! - max); sum += scores[j]!; }
      for (let c = 0; c < d; c++) {
        let s = 0;
        for (let j = 0; j < T; j++) s += scores[j]! * v[j * W + hd * d + c]!;
        ctx[i * W + hd * d + c] = s / sum;
      }
    }
    const attn = linear(ctx, T, W, p('self_attn.out_proj.weight'), p('self_attn.out_proj.bias'), W);
    for (let i = 0; i < T * W; i++) h[i] = h[i]! + attn[i]!;
    const m = layerNorm(h, T, p('layer_norm2.weight'), p('layer_norm2.bias'));
    const fc1 = p('mlp.fc1.weight');
    const hidden = linear(m, T, W, fc1, p('mlp.fc1.bias'), fc1.length / W).map(act);
    const mlp = linear(hidden, T, fc1.length / W, p('mlp.fc2.weight'), p('mlp.fc2.bias'), W);
    for (let i = 0; i < T * W; i++) out[n * T * W + i] = h[i]! + mlp[i]!;
  }
  return out;
}

/** Layer `l` of the residual streams [L,N,T,W] as [N,T,W]. */
function layerOf(layers: FloatTensor, l: number): FloatTensor {
  const [, N, T, W] = layers.shape as [number, number, number, number];
  const size = N * T * W;
  return { data: layers.data.subarray(l * size, (l + 1) * size), shape: [N, T, W] };
}

describe.skipIf(!HAVE_SHARED)('tower activations (clip-tiny)', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'ipclip-act-'));
  // Read in beforeAll, not at collection: a skipped suite's body is still collected.
  let hfConfig: Record<string, Record<string, unknown>>;
  let golden: Awaited<ReturnType<typeof readGolden>>;
  let hf: SafetensorsContent;
  let images: Tensor;
  let tokens: Tensor<BigInt64Array>;
  let geluDir: string;

  /** A Hugging Face folder: the fixture's weights with the config's hidden_act replaced per tower. */
  function hfFolder(name: string, vision: unknown, text: unknown): string {
    const dir = join(tmp, name);
    mkdirSync(dir);
    symlinkSync(join(CLIP_TINY.hfDir, 'model.safetensors'), join(dir, 'model.safetensors'));
    const cfg = structuredClone(hfConfig);
    cfg.vision_config!.hidden_act = vision;
    cfg.text_config!.hidden_act = text;
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    return dir;
  }
  /** The OpenAI-named weights with an open_clip_config.json beside them. */
  function openClipFolder(name: string, modelCfg: Record<string, unknown>): string {
    const dir = join(tmp, name);
    mkdirSync(dir);
    symlinkSync(CLIP_TINY.openaiSafetensors, join(dir, 'open_clip_model.safetensors'));
    writeFileSync(join(dir, 'open_clip_config.json'), JSON.stringify({ model_cfg: { embed_dim: 32, ...modelCfg }, preprocess_cfg: {} }));
    return join(dir, 'open_clip_model.safetensors');
  }
  async function embeddings(path: string) {
    const clip = await Clip.load(path, { device: TEST_DEVICE });
    try {
      const vision = await clip.encodeImage(images, { returnLayers: true });
      const text = await clip.encodeText(tokens);
      return { config: clip.config, image: vision.embeds, layers: vision.layers!, text };
    } finally {
      clip.dispose();
    }
  }

  beforeAll(async () => {
    hfConfig = JSON.parse(readFileSync(join(CLIP_TINY.hfDir, 'config.json'), 'utf8')) as Record<string, Record<string, unknown>>;
    golden = await readGolden();
    hf = await readSafetensors(join(CLIP_TINY.hfDir, 'model.safetensors'));
    images = { data: floatData(golden, 'images'), shape: golden.tensors.images!.shape };
    tokens = { data: golden.tensors.text_tokens!.data as BigInt64Array, shape: golden.tensors.text_tokens!.shape };
    geluDir = hfFolder('gelu', 'gelu', 'gelu');
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('hidden_act gelu runs the exact GELU: a block recomputed in float64 from the HF tensors matches', async () => {
    const g = await embeddings(geluDir);
    expect([g.config.vision.activation, g.config.text.activation]).toEqual(['gelu', 'gelu']);
    const heads = g.config.vision.heads;
    const input = layerOf(g.layers, 0);
    const want = layerOf(g.layers, 1).data;
    const exact = residualBlock(hf, 1, input, heads, gelu);
    const quick = residualBlock(hf, 1, input, heads, quickGelu);
    expect(maxAbsDiff(want, exact)).toBeLessThan(1e-4);
    // The check can tell the two activations apart on these weights.
    expect(maxAbsDiff(want, quick)).toBeGreaterThan(1e-3);
    // The fixture's own (QuickGELU) model against the same recomputation with QuickGELU.
    const q = await embeddings(CLIP_TINY.hfDir);
    expect([q.config.vision.activation, q.config.text.activation]).toEqual(['quick_gelu', 'quick_gelu']);
    expect(maxAbsDiff(layerOf(q.layers, 1).data, residualBlock(hf, 1, layerOf(q.layers, 0), heads, quickGelu))).toBeLessThan(1e-4);
    // Both towers' features move away from the QuickGELU golden run.
    expect(maxAbsDiff(g.image.data, floatData(golden, 'image_embeds'))).toBeGreaterThan(1e-3);
    expect(maxAbsDiff(g.text.data, floatData(golden, 'text_embeds'))).toBeGreaterThan(1e-3);
  });

  it('is chosen per tower', async () => {
    const v = await embeddings(hfFolder('vision-gelu', 'gelu', 'quick_gelu'));
    expect([v.config.vision.activation, v.config.text.activation]).toEqual(['gelu', 'quick_gelu']);
    expect(maxAbsDiff(v.image.data, floatData(golden, 'image_embeds'))).toBeGreaterThan(1e-3);
    expect(maxAbsDiff(v.text.data, floatData(golden, 'text_embeds'))).toBeLessThan(1e-4);
    const t = await embeddings(hfFolder('text-gelu', 'quick_gelu', 'gelu'));
    expect(maxAbsDiff(t.image.data, floatData(golden, 'image_embeds'))).toBeLessThan(1e-4);
    expect(maxAbsDiff(t.text.data, floatData(golden, 'text_embeds'))).toBeGreaterThan(1e-3);
  });

  it("open_clip's quick_gelu flag gives the same models as Hugging Face's hidden_act", async () => {
    const hfGelu = await embeddings(geluDir);
    const ocGelu = await embeddings(openClipFolder('oc-gelu', { quick_gelu: false }));
    expect([ocGelu.config.vision.activation, ocGelu.config.text.activation]).toEqual(['gelu', 'gelu']);
    expect(maxAbsDiff(ocGelu.image.data, hfGelu.image.data)).toBeLessThan(1e-6);
    expect(maxAbsDiff(ocGelu.text.data, hfGelu.text.data)).toBeLessThan(1e-6);
    // open_clip builds nn.GELU unless quick_gelu is set: an absent flag is GELU there too.
    const ocDefault = await embeddings(openClipFolder('oc-default', {}));
    expect(ocDefault.config.vision.activation).toBe('gelu');
    const ocQuick = await embeddings(openClipFolder('oc-quick', { quick_gelu: true }));
    expect([ocQuick.config.vision.activation, ocQuick.config.text.activation]).toEqual(['quick_gelu', 'quick_gelu']);
    expect(maxAbsDiff(ocQuick.image.data, floatData(golden, 'image_embeds'))).toBeLessThan(1e-4);
    expect(maxAbsDiff(ocQuick.text.data, floatData(golden, 'text_embeds'))).toBeLessThan(1e-4);
  });

  it('refuses an activation it does not implement, naming the field and the value', async () => {
    const e = await errorOf(Clip.load(hfFolder('bad', 'gelu_new', 'quick_gelu'), { device: TEST_DEVICE }));
    expect(e.code).toBe('ERR_BAD_WEIGHTS');
    expect(e.message).toContain('vision_config.hidden_act');
    expect(e.message).toContain("'gelu_new'");
    const n = await errorOf(Clip.load(hfFolder('bad-type', 'quick_gelu', 7), { device: TEST_DEVICE }));
    expect(n.code).toBe('ERR_BAD_WEIGHTS');
    expect(n.message).toContain('text_config.hidden_act');
    const oc = await errorOf(Clip.load(openClipFolder('oc-bad', { quick_gelu: 'yes' }), { device: TEST_DEVICE }));
    expect(oc.code).toBe('ERR_BAD_WEIGHTS');
    expect(oc.message).toContain('quick_gelu');
  });

  it('Clip.random takes the activation per tower and checks it', async () => {
    const base = (await embeddings(CLIP_TINY.openaiSafetensors)).config;
    const config = { ...base, vision: { ...base.vision, activation: 'gelu' as const } };
    const [a, b] = await Promise.all([Clip.random(config, { seed: 3, device: TEST_DEVICE }), Clip.random(base, { seed: 3, device: TEST_DEVICE })]);
    try {
      expect([a.config.vision.activation, a.config.text.activation]).toEqual(['gelu', 'quick_gelu']);
      expect(maxAbsDiff((await a.encodeImage(images)).data, (await b.encodeImage(images)).data)).toBeGreaterThan(1e-4);
      expect(maxAbsDiff((await a.encodeText(tokens)).data, (await b.encodeText(tokens)).data)).toBe(0);
    } finally {
      a.dispose();
      b.dispose();
    }
    const bad = { ...base, text: { ...base.text, activation: 'relu' } } as unknown as typeof base;
    expect((await errorOf(Clip.random(bad, { device: TEST_DEVICE }))).code).toBe('ERR_INVALID_ARGUMENT');
  });

  it('checkpoints record the activation: old files read as QuickGELU, another activation is another CLIP', async () => {
    const config = (await embeddings(CLIP_TINY.openaiSafetensors)).config;
    const doc = { format: 1, classNames: ['a', 'b'], clip: { config, fingerprint: 'f' }, seed: 0, nCtx: 10 };
    const { activation: _v, ...oldVision } = config.vision;
    const { activation: _t, ...oldText } = config.text;
    const old = parseMeta(JSON.stringify({ ...doc, clip: { config: { ...config, vision: oldVision, text: oldText }, fingerprint: 'f' } }));
    expect(old.clip.config).toEqual(config);
    const gelu = { ...config, text: { ...config.text, activation: 'gelu' as const } };
    expect(sameConfig(parseMeta(JSON.stringify({ ...doc, clip: { config: gelu, fingerprint: 'f' } })).clip.config, config)).toBe(false);
    expect(sameConfig(old.clip.config, config)).toBe(true);
    expect(() => parseMeta(JSON.stringify({ ...doc, clip: { config: { ...config, text: { ...config.text, activation: 'tanh' } }, fingerprint: 'f' } })))
      .toThrow(/text\.activation/);
  });
});
