import { readFileSync, mkdtempSync, rmSync, copyFileSync, symlinkSync, truncateSync, openSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Clip } from '../lib/clip/clip.js';
import { clipLogits, softmaxRows } from '../lib/clip/similarity.js';
import { IpclipError } from '../lib/core/errors.js';
import { wrapNativeError } from '../lib/native/errors.js';
import { readSafetensors, writeSafetensors, type TensorToWrite } from '../lib/io/safetensors.js';
import type { Tensor, FloatTensor } from '../lib/core/tensor.js';
import {
  CLIP_TINY, FIXTURE_IMAGES, HAVE_SHARED, TEST_DEVICE, VOCAB_PATH, floatData, maxAbsDiff, readGolden,
} from './helpers/fixtures.js';

const TOL = 1e-4;

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string> {
  const err = await (typeof p === 'function' ? Promise.resolve().then(p) : p).then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(IpclipError);
  return (err as IpclipError).code;
}

/** Method §1 statistics from the residual streams [L,N,T,W]: token mean and sqrt((Σ(h−μ)² + 2.3e-8)/T). */
function statsFromLayers(layers: FloatTensor): Float32Array {
  const [L, N, T, W] = layers.shape as [number, number, number, number];
  const out = new Float32Array(L * N * 2 * W);
  for (let l = 0; l < L; l++) for (let n = 0; n < N; n++) for (let w = 0; w < W; w++) {
    const at = (t: number) => layers.data[((l * N + n) * T + t) * W + w]!;
    let mean = 0;
    for (let t = 0; t < T; t++) mean += at(t);
    mean /= T;
    let ss = 0;
    for (let t = 0; t < T; t++) ss += (at(t) - mean) ** 2;
    out[((l * N + n) * 2 + 0) * W + w] = mean;
    out[((l * N + n) * 2 + 1) * W + w] = Math.sqrt((ss + 2.3e-8) / T);
  }
  return out;
}

describe('native errors', () => {
  it('wrapNativeError keeps known codes and maps the rest to ERR_NATIVE', () => {
    const e = Object.assign(new Error('bad header'), { code: 'ERR_BAD_FILE' });
    const w = wrapNativeError(e);
    expect(w).toBeInstanceOf(IpclipError);
    expect([w.code, w.message, w.cause]).toEqual(['ERR_BAD_FILE', 'bad header', e]);
    expect(wrapNativeError(Object.assign(new Error('x'), { code: 'EWHATEVER' })).code).toBe('ERR_NATIVE');
    expect(wrapNativeError('plain').code).toBe('ERR_NATIVE');
  });

  it('a missing addon is ERR_ADDON_MISSING naming the build command', async () => {
    vi.resetModules();
    const saved = process.env.IPCLIP_ADDON;
    process.env.IPCLIP_ADDON = join(tmpdir(), 'no-such-dir', 'ipclip.node');
    try {
      const fresh = await import('../lib/native/load.js');
      let err: { code?: string; message?: string } = {};
      try { fresh.loadNative(); } catch (e) { err = e as typeof err; }
      expect(err.code).toBe('ERR_ADDON_MISSING');
      expect(err.message).toContain('npx ipclip build');
      expect(err.message).toContain('libtorch-dev');
    } finally {
      if (saved === undefined) delete process.env.IPCLIP_ADDON; else process.env.IPCLIP_ADDON = saved;
      vi.resetModules();
    }
  });
});

describe.skipIf(!HAVE_SHARED)('Clip on clip-tiny', () => {
  const layouts = [
    ['openai safetensors', CLIP_TINY.openaiSafetensors, 'openai-safetensors'],
    ['Hugging Face folder', CLIP_TINY.hfDir, 'huggingface'],
    ['TorchScript archive', CLIP_TINY.torchscript, 'torchscript'],
  ] as const;
  const models = new Map<string, Clip>();
  let golden: Awaited<ReturnType<typeof readGolden>>;
  let images: Tensor;
  let texts: string[];
  let tokens: Tensor<BigInt64Array>;
  let fileLogitScale: number;
  const tmp = mkdtempSync(join(tmpdir(), 'ipclip-clip-'));

  beforeAll(async () => {
    golden = await readGolden();
    images = { data: floatData(golden, 'images'), shape: golden.tensors.images!.shape };
    texts = JSON.parse(golden.metadata.texts!) as string[];
    tokens = { data: golden.tensors.text_tokens!.data as BigInt64Array, shape: golden.tensors.text_tokens!.shape };
    const weights = await readSafetensors(CLIP_TINY.openaiSafetensors);
    fileLogitScale = Math.exp((weights.tensors.logit_scale!.data as Float32Array)[0]!);
    for (const [name, path] of layouts) models.set(name, await Clip.load(path, { device: TEST_DEVICE, vocab: VOCAB_PATH }));
  });
  afterAll(() => {
    for (const m of models.values()) m.dispose();
    rmSync(tmp, { recursive: true, force: true });
  });

  describe.each(layouts)('%s', (name, _path, format) => {
    const clip = () => models.get(name)!;

    it('infers the architecture of clip-config.json and reports where it came from', () => {
      const c = JSON.parse(readFileSync(CLIP_TINY.config, 'utf8')) as Record<string, number>;
      expect(clip().config).toEqual({
        embedDim: c.embed_dim,
        vision: { width: c.vision_width, layers: c.vision_layers, heads: c.vision_width! / 64, patchSize: c.vision_patch_size, imageSize: c.image_resolution, activation: 'quick_gelu' },
        text: { width: c.transformer_width, layers: c.transformer_layers, heads: c.transformer_heads, contextLength: c.context_length, vocabSize: c.vocab_size, activation: 'quick_gelu' },
      });
      expect(clip().info.format).toBe(format);
      expect(clip().info.dtype).toBe('float32');
      expect(clip().tokenizer).not.toBeNull();
    });

    it('image embeddings and per-layer residual streams match the golden outputs', async () => {
      const plain = await clip().encodeImage(images);
      expect(plain.shape).toEqual([4, 32]);
      expect(maxAbsDiff(plain.data, floatData(golden, 'image_embeds'))).toBeLessThan(TOL);
      const { embeds, layers } = await clip().encodeImage(images, { returnLayers: true });
      expect(maxAbsDiff(embeds.data, plain.data)).toBe(0);
      expect(layers!.shape).toEqual([3, 4, 17, 128]);
      expect(maxAbsDiff(layers!.data, floatData(golden, 'image_layers'))).toBeLessThan(TOL);
    });

    it('per-layer statistics are the method §1 mean/std of the residual streams', async () => {
      const out = await clip().encodeImage(images, { returnLayers: true, returnStats: true });
      expect(out.stats!.shape).toEqual([3, 4, 2, 128]);
      expect(maxAbsDiff(out.stats!.data, statsFromLayers(out.layers!))).toBeLessThan(1e-5);
      const onlyStats = await clip().encodeImage(images, { returnStats: true });
      expect(onlyStats.layers).toBeUndefined();
      expect(maxAbsDiff(onlyStats.stats!.data, out.stats!.data)).toBeLessThan(1e-6);
    });

    it('text embeddings match from golden token ids and from the texts through the tokenizer', async () => {
      const fromIds = await clip().encodeText(tokens);
      expect(fromIds.shape).toEqual([5, 32]);
      expect(maxAbsDiff(fromIds.data, floatData(golden, 'text_embeds'))).toBeLessThan(TOL);
      const fromTexts = await clip().encodeText(texts);
      expect(maxAbsDiff(fromTexts.data, floatData(golden, 'text_embeds'))).toBeLessThan(TOL);
      // Int32 ids give the same as int64 ids.
      const int32 = await clip().encodeText({ data: Int32Array.from(tokens.data, Number), shape: tokens.shape });
      expect(maxAbsDiff(int32.data, fromIds.data)).toBe(0);
    });

    it('logits_per_image follow from the embeddings and the checkpoint logit scale', async () => {
      const logits = clipLogits(await clip().encodeImage(images), await clip().encodeText(tokens), fileLogitScale);
      expect(logits.shape).toEqual([4, 5]);
      expect(maxAbsDiff(logits.data, floatData(golden, 'logits_per_image'))).toBeLessThan(TOL * 10);
    });

    it('logitScale is exp(logit_scale) of the checkpoint', () => {
      expect(clip().logitScale).toBeCloseTo(fileLogitScale, 4);
    });
  });

  it('classify ranks labels by softmax(logitScale · cosine) as in logits_per_image', async () => {
    const clip = models.get('openai safetensors')!;
    const ranked = await clip.classify(images, texts, { template: '{}' });
    const expected = softmaxRows({ data: floatData(golden, 'logits_per_image'), shape: [4, 5] });
    expect(ranked).toHaveLength(4);
    ranked.forEach((pred, i) => {
      const row = pred.top;
      expect(row).toHaveLength(5);
      expect(row.map((p) => p.score)).toEqual([...row.map((p) => p.score)].sort((a, b) => b - a));
      expect(row.reduce((s, p) => s + p.score, 0)).toBeCloseTo(1, 5);
      for (const p of row) expect(Math.abs(p.score - expected.data[i * 5 + texts.indexOf(p.label)]!)).toBeLessThan(1e-4);
      // scores in label order; the prediction is the best of them.
      for (let j = 0; j < 5; j++) expect(Math.abs(pred.scores[j]! - expected.data[i * 5 + j]!)).toBeLessThan(1e-4);
      expect({ label: pred.label, index: pred.index, score: pred.score }).toEqual(row[0]);
      expect(texts[pred.index]).toBe(pred.label);
    });
  });

  it('encodes images given as paths and Buffers the same as their preprocessed tensor', async () => {
    const clip = models.get('openai safetensors')!;
    const pre = await clip.preprocess(FIXTURE_IMAGES);
    expect(pre.shape).toEqual([4, 3, 32, 32]);
    const fromTensor = await clip.encodeImage(pre);
    const fromPaths = await clip.encodeImage(FIXTURE_IMAGES);
    const fromBuffers = await clip.encodeImage(FIXTURE_IMAGES.map((p) => readFileSync(p)));
    expect(maxAbsDiff(fromPaths.data, fromTensor.data)).toBe(0);
    expect(maxAbsDiff(fromBuffers.data, fromTensor.data)).toBe(0);
    const single = await clip.encodeImage(FIXTURE_IMAGES[1]!);
    expect(maxAbsDiff(single.data, fromTensor.data.subarray(32, 64))).toBeLessThan(1e-5);
  });

  it('finds a vocabulary beside the weights', async () => {
    const folder = mkdtempSync(join(tmp, 'beside-'));
    symlinkSync(CLIP_TINY.openaiSafetensors, join(folder, 'model.safetensors'));
    symlinkSync(VOCAB_PATH, join(folder, 'vocab.txt.gz'));
    const c = await Clip.load(join(folder, 'model.safetensors'), { device: TEST_DEVICE });
    try {
      expect(c.tokenizer).not.toBeNull();
      expect(maxAbsDiff((await c.encodeText(texts)).data, floatData(golden, 'text_embeds'))).toBeLessThan(TOL);
    } finally {
      c.dispose();
    }
  });

  it('Clip.random builds a given architecture, deterministic per seed', async () => {
    const config = models.get('openai safetensors')!.config;
    const [a, b, c] = await Promise.all([1, 1, 2].map((seed) => Clip.random(config, { seed, device: TEST_DEVICE })));
    try {
      expect(a!.config).toEqual(config);
      expect(a!.info.format).toBe('random');
      expect(a!.logitScale).toBeCloseTo(1 / 0.07, 3); // OpenAI's initial temperature
      const [ea, eb, ec] = await Promise.all([a!, b!, c!].map((m) => m.encodeImage(images)));
      expect(ea!.shape).toEqual([4, 32]);
      expect(maxAbsDiff(ea!.data, eb!.data)).toBe(0);
      expect(maxAbsDiff(ea!.data, ec!.data)).toBeGreaterThan(1e-3);
    } finally {
      for (const m of [a, b, c]) m?.dispose();
    }
  });

  describe('bad input', () => {
    const clip = () => models.get('openai safetensors')!;

    it('truncated and corrupted safetensors are ERR_BAD_FILE', async () => {
      const truncated = join(tmp, 'truncated.safetensors');
      copyFileSync(CLIP_TINY.openaiSafetensors, truncated);
      truncateSync(truncated, 1_000_000);
      expect(await codeOf(Clip.load(truncated, { device: TEST_DEVICE }))).toBe('ERR_BAD_FILE');
      const corrupt = join(tmp, 'corrupt.safetensors');
      copyFileSync(CLIP_TINY.openaiSafetensors, corrupt);
      const fd = openSync(corrupt, 'r+');
      writeSync(fd, Buffer.from('}}}}garbage'), 0, 11, 8); // inside the JSON header
      closeSync(fd);
      expect(await codeOf(Clip.load(corrupt, { device: TEST_DEVICE }))).toBe('ERR_BAD_FILE');
      expect(await codeOf(Clip.load(join(tmp, 'absent.safetensors')))).toBe('ERR_FILE_NOT_FOUND');
    });

    it('weights without visual.proj are ERR_BAD_WEIGHTS naming the key', async () => {
      const w = await readSafetensors(CLIP_TINY.openaiSafetensors);
      const kept: Record<string, TensorToWrite> = {};
      for (const [k, t] of Object.entries(w.tensors)) if (k !== 'visual.proj') kept[k] = { data: t.data, shape: t.shape };
      const path = join(tmp, 'no-proj.safetensors');
      await writeSafetensors(path, kept);
      const err = await Clip.load(path, { device: TEST_DEVICE }).catch((e: IpclipError) => e);
      expect(err).toBeInstanceOf(IpclipError);
      expect((err as IpclipError).code).toBe('ERR_BAD_WEIGHTS');
      expect((err as IpclipError).message).toContain('visual.proj');
    });

    it('unsupported load options are clear errors', async () => {
      expect(await codeOf(Clip.load(CLIP_TINY.openaiSafetensors, { dtype: 'int8' as 'float32' }))).toBe('ERR_INVALID_ARGUMENT');
      expect(await codeOf(Clip.load(CLIP_TINY.openaiSafetensors, { device: 'tpu' }))).toBe('ERR_DEVICE');
      expect(await codeOf(Clip.load(CLIP_TINY.openaiSafetensors, { threads: 0 }))).toBe('ERR_INVALID_ARGUMENT');
      if (TEST_DEVICE === 'cpu') expect(await codeOf(Clip.load(CLIP_TINY.openaiSafetensors, { dtype: 'float16' }))).toBe('ERR_DEVICE');
      expect(await codeOf(Clip.load(CLIP_TINY.openaiSafetensors, { vocab: join(tmp, 'no-vocab.gz') }))).toBe('ERR_FILE_NOT_FOUND');
    });

    it('wrong shapes name the expected shape', async () => {
      const err = await clip().encodeImage({ data: new Float32Array(3 * 16 * 16), shape: [1, 3, 16, 16] }).catch((e: IpclipError) => e);
      expect((err as IpclipError).code).toBe('ERR_INVALID_ARGUMENT');
      expect((err as IpclipError).message).toContain('[N,3,32,32]');
      expect(await codeOf(clip().encodeImage({ data: new Float32Array(10), shape: [1, 3, 32, 32] }))).toBe('ERR_INVALID_ARGUMENT');
      expect(await codeOf(clip().encodeText({ data: new Int32Array(6), shape: [2, 2, 2] as unknown as [number, number] }))).toBe('ERR_INVALID_ARGUMENT');
      expect(await codeOf(clip().encodeText({ data: Int32Array.from([49406, 50000]), shape: [1, 2] }))).toBe('ERR_INVALID_ARGUMENT');
      const nan = new Float32Array(3 * 32 * 32);
      nan[5] = NaN;
      expect(await codeOf(clip().encodeImage({ data: nan, shape: [1, 3, 32, 32] }))).toBe('ERR_NON_FINITE');
    });

    it('unreadable images and empty batches', async () => {
      expect(await codeOf(clip().encodeImage([Buffer.from('not an image at all')]))).toBe('ERR_BAD_IMAGE');
      expect(await codeOf(clip().encodeImage(join(tmp, 'missing.png')))).toBe('ERR_FILE_NOT_FOUND');
      expect(await codeOf(clip().encodeImage([]))).toBe('ERR_EMPTY_INPUT');
      expect(await codeOf(clip().encodeImage({ data: new Float32Array(0), shape: [0, 3, 32, 32] }))).toBe('ERR_EMPTY_INPUT');
      expect(await codeOf(clip().encodeText([]))).toBe('ERR_EMPTY_INPUT');
      expect(await codeOf(clip().classify(images, []))).toBe('ERR_EMPTY_INPUT');
    });

    it('text over the context length is ERR_TEXT_TOO_LONG unless truncated', async () => {
      const long = 'word '.repeat(100);
      expect(await codeOf(clip().encodeText([long]))).toBe('ERR_TEXT_TOO_LONG');
      expect(await codeOf(clip().encodeText({ data: new Int32Array(80), shape: [1, 80] }))).toBe('ERR_TEXT_TOO_LONG');
      const cut = await clip().encodeText([long], { truncate: true });
      expect(cut.shape).toEqual([1, 32]);
    });

    it('without a vocabulary, texts are refused with a hint to pass vocab, ids still work', async () => {
      const bare = await Clip.load(CLIP_TINY.openaiSafetensors, { device: TEST_DEVICE });
      try {
        expect(bare.tokenizer).toBeNull();
        const err = await bare.encodeText(['a dog']).catch((e: IpclipError) => e);
        expect((err as IpclipError).code).toBe('ERR_INVALID_ARGUMENT');
        expect((err as IpclipError).message).toContain('vocab');
        expect(maxAbsDiff((await bare.encodeText(tokens)).data, floatData(golden, 'text_embeds'))).toBeLessThan(TOL);
      } finally {
        bare.dispose();
      }
    });
  });

  describe('concurrency and lifetime', () => {
    const clip = () => models.get('openai safetensors')!;

    /** A batch of n images built from the golden ones (cycled). */
    function batch(n: number): Tensor {
      const one = 3 * 32 * 32;
      const data = new Float32Array(n * one);
      for (let i = 0; i < n; i++) data.set(images.data.subarray((i % 4) * one, (i % 4 + 1) * one), i * one);
      return { data, shape: [n, 3, 32, 32] };
    }

    it('the event loop keeps turning during a long encode', async () => {
      let ticks = 0;
      const timer = setInterval(() => ticks++, 1);
      try {
        const out = await clip().encodeImage(batch(256), { returnLayers: true });
        expect(out.embeds.shape).toEqual([256, 32]);
      } finally {
        clearInterval(timer);
      }
      expect(ticks).toBeGreaterThan(0);
    });

    it('8 concurrent callers get what sequential calls give', async () => {
      const inputs = Array.from({ length: 8 }, (_, i) => batch(i + 1));
      const sequential: FloatTensor[] = [];
      for (const x of inputs) sequential.push(await clip().encodeImage(x));
      const concurrent = await Promise.all(inputs.map((x, i) => (i % 2 ? clip().encodeImage(x) : clip().encodeText(tokens))));
      concurrent.forEach((r, i) => {
        if (i % 2) expect(maxAbsDiff(r.data, sequential[i]!.data)).toBeLessThan(1e-6);
        else expect(maxAbsDiff(r.data, floatData(golden, 'text_embeds'))).toBeLessThan(TOL);
      });
    });

    it('dispose during an in-flight call is safe; queued and later calls reject ERR_DISPOSED', async () => {
      const c = await Clip.load(CLIP_TINY.openaiSafetensors, { device: TEST_DEVICE, vocab: VOCAB_PATH });
      const running = c.encodeImage(images);
      const queued = c.encodeText(tokens);
      await new Promise((r) => setImmediate(r)); // the first call has reached the native worker
      c.dispose();
      expect(c.disposed).toBe(true);
      // The running call holds its own reference to the native weights: it completes, and correctly.
      expect(maxAbsDiff((await running).data, floatData(golden, 'image_embeds'))).toBeLessThan(TOL);
      expect(await codeOf(queued)).toBe('ERR_DISPOSED');
      expect(await codeOf(c.encodeImage(images))).toBe('ERR_DISPOSED');
      expect(await codeOf(c.classify(images, ['a']))).toBe('ERR_DISPOSED');
      expect(await codeOf(c.preprocess(FIXTURE_IMAGES))).toBe('ERR_DISPOSED');
      c[Symbol.dispose](); // twice is harmless
      expect(c.config.embedDim).toBe(32); // plain data stays readable
    });
  });
});
