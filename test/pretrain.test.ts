import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { learnMerges, writeOpenAiVocab } from '../lib/clip/tokenizer/train.js';
import { Clip } from '../lib/clip/clip.js';
import { IpclipError } from '../lib/core/errors.js';
import type { RawImage } from '../lib/image/decode.js';
import { loadNative } from '../lib/native/load.js';
import { ClipPretrainer, cosineWarmupLr, type PretrainConfig } from '../lib/pretrain/pretrainer.js';
import { applyTransform, randomCropFlip } from '../lib/image/transforms.js';
import { hflip, randomResizedCropBox } from '../lib/image/augment.js';
import { resizeImage } from '../lib/image/preprocess.js';
import { Rng } from '../lib/core/rng.js';
import { readSafetensors } from '../lib/io/safetensors.js';

// A tiny CLIP: 16 px images in 8 px patches, one block per tower, heads = width/64 as the loader expects.
const CONFIG: PretrainConfig = {
  embedDim: 32,
  vision: { width: 64, layers: 1, heads: 1, patchSize: 8, imageSize: 16 },
  text: { width: 64, layers: 1, heads: 1, contextLength: 16 },
};

// Four visually distinct pairs: a flat colour with a bright square in one quadrant.
const COLOURS: [string, [number, number, number]][] = [
  ['red', [200, 30, 30]], ['green', [30, 180, 40]], ['blue', [30, 40, 200]], ['yellow', [220, 210, 40]],
];
function image(rgb: [number, number, number], quadrant: number): RawImage {
  const size = 24;
  const data = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) {
    const inSquare = (x < 12) === (quadrant % 2 === 0) && (y < 12) === (quadrant < 2);
    for (let c = 0; c < 3; c++) data[(y * size + x) * 3 + c] = inSquare ? 255 : rgb[c]!;
  }
  return { data, width: size, height: size };
}
const IMAGES = COLOURS.map(([, rgb], i) => image(rgb, i));
const CAPTIONS = COLOURS.map(([name]) => `a ${name} picture.`);

let dir: string;
let vocab: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ipclip-pretrain-test-'));
  vocab = join(dir, 'vocab.txt.gz');
  writeOpenAiVocab(vocab, learnMerges(CAPTIONS, { numMerges: 20 }));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function rejects(p: Promise<unknown> | (() => unknown), code: string): Promise<void> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    expect(err).toBeInstanceOf(IpclipError);
    expect((err as IpclipError).code).toBe(code);
    return;
  }
  throw new Error(`expected a rejection with ${code}`);
}

const std = (a: Float32Array) => {
  const m = a.reduce((s, v) => s + v, 0) / a.length;
  return Math.sqrt(a.reduce((s, v) => s + (v - m) ** 2, 0) / a.length);
};

describe('ClipPretrainer', () => {
  it('initialises as OpenAI does: embedding stds, zero biases, unit gains, logit scale 1/0.07', async () => {
    const p = await ClipPretrainer.create(CONFIG, { vocab, seed: 3 });
    try {
      expect(p.config.text.vocabSize).toBe(p.tokenizer.vocabSize);
      const s = await p.state();
      expect(Math.exp(s['logit_scale']!.data[0]!)).toBeCloseTo(1 / 0.07, 4);
      expect(std(s['token_embedding.weight']!.data)).toBeGreaterThan(0.018);
      expect(std(s['token_embedding.weight']!.data)).toBeLessThan(0.022);
      expect(std(s['positional_embedding']!.data)).toBeGreaterThan(0.008);
      expect(std(s['positional_embedding']!.data)).toBeLessThan(0.012);
      // in_proj std W^-0.5 = 0.125 for W = 64; c_fc std (2W)^-0.5 = 0.0884.
      expect(std(s['transformer.resblocks.0.attn.in_proj_weight']!.data)).toBeCloseTo(0.125, 2);
      expect(std(s['visual.transformer.resblocks.0.mlp.c_fc.weight']!.data)).toBeCloseTo(0.0884, 2);
      expect([...s['visual.ln_pre.weight']!.data].every((v) => v === 1)).toBe(true);
      expect([...s['transformer.resblocks.0.attn.in_proj_bias']!.data].every((v) => v === 0)).toBe(true);
    } finally {
      p.dispose();
    }
  });

  it('lowers the loss on a few image-caption pairs', async () => {
    const p = await ClipPretrainer.create(CONFIG, { vocab, seed: 1 });
    try {
      const fit = await p.fit({ images: IMAGES, captions: CAPTIONS },
        { epochs: 30, batchSize: 4, lr: 1e-3, warmup: 5, flip: false, cropScale: [0.9, 1] });
      expect(fit.steps).toBe(30);
      expect(p.steps).toBe(30);
      const mean = (h: { loss: number }[]) => h.reduce((s, x) => s + x.loss, 0) / h.length;
      const first = mean(fit.history.slice(0, 3)), last = mean(fit.history.slice(-3));
      expect(first).toBeGreaterThan(1.2);  // about log 4 = 1.386 for an untrained model
      expect(last).toBeLessThan(first * 0.25);
      // Each image now picks its own caption among the four.
      const img = await p.encodeImages(IMAGES.map((im) => ({ ...im })));
      const txt = await p.encodeTexts(CAPTIONS);
      for (let i = 0; i < 4; i++) {
        const scores = [0, 1, 2, 3].map((j) => img.data.slice(i * 32, i * 32 + 32).reduce((s, v, k) => s + v * txt.data[j * 32 + k]!, 0));
        expect(scores.indexOf(Math.max(...scores))).toBe(i);
      }
    } finally {
      p.dispose();
    }
  });

  it('gives identical weights for the same seed and different ones for another seed', async () => {
    const run = async (seed: number) => {
      const p = await ClipPretrainer.create(CONFIG, { vocab, seed });
      await p.fit({ images: IMAGES, captions: CAPTIONS.map((c) => [c, 'a picture.']) }, { epochs: 3, batchSize: 2, lr: 1e-3 });
      const s = await p.state();
      p.dispose();
      return s;
    };
    const [a, b, c] = [await run(7), await run(7), await run(8)];
    expect(Object.keys(a).sort()).toEqual(Object.keys(b).sort());
    for (const k of Object.keys(a)) expect(b[k]!.data).toEqual(a[k]!.data);
    expect(c['visual.proj']!.data).not.toEqual(a['visual.proj']!.data);
  });

  it('saves weights, config and vocabulary that Clip.load reads back to the same embeddings', async () => {
    const p = await ClipPretrainer.create(CONFIG, { vocab, seed: 2 });
    const out = join(dir, 'saved');
    try {
      await p.fit({ images: IMAGES, captions: CAPTIONS }, { epochs: 2, batchSize: 4 });
      await p.save(out, { metadata: { note: 'test' } });
      const file = await readSafetensors(join(out, 'model.safetensors'));
      const state = await p.state();
      expect(Object.keys(file.tensors).sort()).toEqual(Object.keys(state).sort());
      expect(file.metadata.note).toBe('test');
      expect(file.tensors['visual.proj']!.data).toEqual(state['visual.proj']!.data);
      const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
      expect(config).toMatchObject({ embed_dim: 32, image_resolution: 16, vision_layers: 1, vision_width: 64, vision_patch_size: 8,
        context_length: 16, vocab_size: p.tokenizer.vocabSize, transformer_width: 64, transformer_heads: 1, transformer_layers: 1 });
      expect(gunzipSync(readFileSync(join(out, 'vocab.txt.gz')))).toEqual(gunzipSync(readFileSync(vocab)));

      const clip = await Clip.load(join(out, 'model.safetensors')); // the vocabulary is found beside the weights
      try {
        expect(clip.config).toEqual(p.config);
        expect(clip.logitScale).toBeCloseTo(Math.exp(state['logit_scale']!.data[0]!), 4);
        const norm = (v: Float32Array | Float64Array, i: number, d: number) => {
          const row = v.slice(i * d, i * d + d);
          const n = Math.hypot(...row);
          return [...row].map((x) => x / n);
        };
        const ours = await p.encodeTexts(CAPTIONS);
        const theirs = await clip.encodeText(CAPTIONS);
        const oursImg = await p.encodeImages(IMAGES);
        const theirsImg = await clip.encodeImage(IMAGES);
        for (let i = 0; i < 4; i++) {
          const [a, b] = [norm(ours.data, i, 32), norm(theirs.data, i, 32)];
          a.forEach((x, k) => expect(b[k]).toBeCloseTo(x, 5));
          const [c, d] = [norm(oursImg.data, i, 32), norm(theirsImg.data, i, 32)];
          c.forEach((x, k) => expect(d[k]).toBeCloseTo(x, 5));
        }
      } finally {
        clip.dispose();
      }
    } finally {
      p.dispose();
    }
  });

  it('rejects bad configurations, data and calls with clear error codes', async () => {
    await rejects(ClipPretrainer.create({ ...CONFIG, vision: { ...CONFIG.vision, heads: 2 } }, { vocab }), 'ERR_INVALID_ARGUMENT');
    await rejects(ClipPretrainer.create({ ...CONFIG, text: { ...CONFIG.text, vocabSize: 1000 } }, { vocab }), 'ERR_MISMATCH');
    await rejects(ClipPretrainer.create({ ...CONFIG, vision: { ...CONFIG.vision, imageSize: 20 } }, { vocab }), 'ERR_INVALID_ARGUMENT');
    await rejects(ClipPretrainer.create(CONFIG, { vocab: join(dir, 'missing.txt.gz') }), 'ERR_FILE_NOT_FOUND');
    await rejects(ClipPretrainer.create(CONFIG, { vocab, seed: -1 }), 'ERR_INVALID_ARGUMENT');
    await rejects(ClipPretrainer.create(CONFIG, { vocab, device: 'tpu' }), 'ERR_DEVICE');

    const p = await ClipPretrainer.create(CONFIG, { vocab });
    const data = { images: IMAGES, captions: CAPTIONS };
    await rejects(p.fit({ images: IMAGES, captions: CAPTIONS.slice(1) }, { epochs: 1, batchSize: 2 }), 'ERR_INVALID_ARGUMENT');
    await rejects(p.fit({ images: [], captions: [] }, { epochs: 1, batchSize: 2 }), 'ERR_EMPTY_INPUT');
    await rejects(p.fit(data, { epochs: 1, batchSize: 1 }), 'ERR_INVALID_ARGUMENT');
    await rejects(p.fit(data, { epochs: 0, batchSize: 2 }), 'ERR_INVALID_ARGUMENT');
    await rejects(p.fit(data, { epochs: 1, batchSize: 2, lr: Number.NaN }), 'ERR_INVALID_ARGUMENT');
    await rejects(p.fit({ images: IMAGES, captions: [...CAPTIONS.slice(1), 'word '.repeat(40)] }, { epochs: 1, batchSize: 2 }), 'ERR_TEXT_TOO_LONG');
    await rejects(p.fit({ images: [Buffer.from('not an image'), ...IMAGES.slice(1)], captions: CAPTIONS }, { epochs: 1, batchSize: 2 }), 'ERR_BAD_IMAGE');
    await rejects(p.step({ data: new Float32Array(2 * 3 * 8 * 8), shape: [2, 3, 8, 8] }, ['a', 'b'], { lr: 1e-3 }), 'ERR_INVALID_ARGUMENT');
    await rejects(p.step({ data: new Float32Array(2 * 3 * 16 * 16).fill(Number.NaN), shape: [2, 3, 16, 16] }, ['a', 'b'], { lr: 1e-3 }), 'ERR_NON_FINITE');
    await rejects(p.step({ data: new Float32Array(2 * 3 * 16 * 16), shape: [2, 3, 16, 16] }, ['a'], { lr: 1e-3 }), 'ERR_INVALID_ARGUMENT');
    await rejects(p.step({ data: new Float32Array(2 * 3 * 16 * 16), shape: [2, 3, 16, 16] }, ['a', 'b'], { lr: -1 }), 'ERR_INVALID_ARGUMENT');
    expect(p.steps).toBe(0); // nothing above reached the optimiser
    p.dispose();
    await rejects(p.fit(data, { epochs: 1, batchSize: 2 }), 'ERR_DISPOSED');
    await rejects(p.state(), 'ERR_DISPOSED');
  });

  it('the raw binding checks token ids and configs itself', async () => {
    const raw = loadNative() as unknown as { createPretrainer(c: unknown, o: unknown): { step(...a: unknown[]): Promise<unknown>; dispose(): void } };
    const full = { ...CONFIG, text: { ...CONFIG.text, vocabSize: 600 } };
    expect(() => raw.createPretrainer({ ...full, embedDim: 0 }, {})).toThrow(/embedDim/);
    expect(() => raw.createPretrainer({ ...full, text: { ...full.text, heads: 3 } }, {})).toThrow(/divisible/);
    const p = raw.createPretrainer(full, { seed: 0 });
    const ids = new Int32Array(2 * 4).fill(600);
    // Inputs are checked on the main thread, before any work is queued: a synchronous throw.
    expect(() => p.step(new Float32Array(2 * 3 * 16 * 16), [2, 3, 16, 16], ids, [2, 4], { lr: 1e-3, weightDecay: 0 }))
      .toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringContaining('[0, 600)') }));
    p.dispose();
  });
});

describe('cosineWarmupLr', () => {
  it('warms up linearly, then decays along a cosine to minLr at the last step', () => {
    const o = { lr: 1, warmup: 4, minLr: 0.1 };
    expect([0, 1, 2, 3].map((t) => cosineWarmupLr(t, 14, o))).toEqual([0.25, 0.5, 0.75, 1]);
    expect(cosineWarmupLr(4, 14, o)).toBeCloseTo(1, 12);
    // Half-way through the 9-step decay span (t − 4 = 4.5 is not a step, so check t = 4 + 3: cos(π/3) = 0.5).
    expect(cosineWarmupLr(7, 14, o)).toBeCloseTo(0.1 + 0.45 * 1.5, 12);
    expect(cosineWarmupLr(13, 14, o)).toBeCloseTo(0.1, 12);
    expect(() => cosineWarmupLr(14, 14, o)).toThrow(IpclipError);
  });
});

describe('the pretrainer\'s crops are the shared train transform', () => {
  // A 6×6 image with a distinct value per pixel and channel, so a crop, a resize and a flip are all visible.
  const img: RawImage = { data: Uint8Array.from({ length: 6 * 6 * 3 }, (_, i) => (i * 37) % 256), width: 6, height: 6 };

  it("'train' is randomCropFlip with its default range: the same draws give the same pixels", async () => {
    for (const seed of [1, 2, 3]) {
      const viaTransform = await applyTransform(img, { augment: 'train' }, 4, new Rng(seed));
      const direct = await randomCropFlip(img, 4, new Rng(seed));
      expect(Array.from(viaTransform.data)).toEqual(Array.from(direct.data));
    }
  });

  it('a full-image crop is the resized image, flipped or not; flip: false draws no flip', async () => {
    const whole = await resizeImage(img, 4, 4);
    const flipped = hflip(whole);
    const seen = new Set<string>();
    for (let seed = 0; seed < 12; seed++) {
      const out = await randomCropFlip(img, 4, new Rng(seed), { scale: [1, 1], ratio: [1, 1] });
      const same = Array.from(out.data).join() === Array.from(whole.data).join();
      const mirrored = Array.from(out.data).join() === Array.from(flipped.data).join();
      expect(same || mirrored).toBe(true);
      seen.add(same ? 'plain' : 'flipped');
      const rng = new Rng(seed);
      const kept = await randomCropFlip(img, 4, rng, { scale: [1, 1], ratio: [1, 1], flip: false });
      expect(Array.from(kept.data)).toEqual(Array.from(whole.data));
      // Only the crop's draws were made: the next number is the one after randomResizedCropBox alone.
      const reference = new Rng(seed);
      randomResizedCropBox(6, 6, reference, { scale: [1, 1], ratio: [1, 1] });
      expect(rng.next()).toBe(reference.next());
    }
    expect(seen).toEqual(new Set(['plain', 'flipped']));
  });

  it("the train transform takes the pretrainer's crop range and flip switch, and refuses a bad range", async () => {
    // Area 100 % of a square image: every crop attempt but ratio 1 misses, and the fallback is the whole image.
    const whole = await resizeImage(img, 4, 4);
    for (const seed of [0, 5, 9]) {
      const out = await applyTransform(img, { augment: 'train', cropScale: [1, 1], flip: false }, 4, new Rng(seed));
      expect(Array.from(out.data)).toEqual(Array.from(whole.data));
    }
    for (const cropScale of [[0, 1], [0.9, 0.5], [0.5, 1.5]] as [number, number][]) {
      await expect(applyTransform(img, { augment: 'train', cropScale }, 4, new Rng(1))).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    }
  });
});
