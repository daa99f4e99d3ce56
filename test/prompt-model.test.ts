// PromptModel on the clip-tiny fixture: construction, seeded initialisation, class prompts, inference, errors.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Clip } from '../lib/clip/clip.js';
import { IpclipError } from '../lib/core/errors.js';
import { preprocess } from '../lib/image/preprocess.js';
import { PromptModel, contextSize, promptText } from '../lib/ipclip/prompt-model.js';
import { argmaxRows } from '../lib/clip/similarity.js';
import { Rng } from '../lib/core/rng.js';
import type { ImageTensor } from '../lib/core/tensor.js';
import { CLIP_TINY, HAVE_SHARED, TEST_DEVICE, VOCAB_PATH } from './helpers/fixtures.js';

const NAMES = ['alarm_clock', 'backpack', 'bike'];

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string> {
  const err = await (typeof p === 'function' ? Promise.resolve().then(p) : p).then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(IpclipError);
  return (err as IpclipError).code;
}

/** Random normalised-looking images [n,3,32,32]. */
function randomImages(n: number, seed: number): ImageTensor {
  const rng = new Rng(seed);
  return { data: Float32Array.from({ length: n * 3 * 32 * 32 }, () => rng.normal()), shape: [n, 3, 32, 32] };
}

describe('class prompt text', () => {
  it('has n_ctx placeholders, the name with spaces for underscores, and a period', () => {
    expect(promptText('alarm_clock', 3)).toBe('X X X alarm clock.');
    expect(contextSize(12)).toBe(28); // ViT-B: 2·12 + 4
    expect(contextSize(3)).toBe(10);
  });
});

describe.skipIf(!HAVE_SHARED)('PromptModel', () => {
  let clip: Clip;
  let dir: string;

  beforeAll(async () => {
    clip = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, device: TEST_DEVICE });
    dir = mkdtempSync(join(tmpdir(), 'ipclip-prompt-'));
  });
  afterAll(() => {
    clip?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('initialises identically for the same seed and differently for another', async () => {
    const [a, b, c] = await Promise.all([1, 1, 2].map((seed) => PromptModel.create(clip, NAMES, { seed })));
    const [sa, sb, sc] = await Promise.all([a, b, c].map((p) => p.state()));
    expect(Object.keys(sa).sort()).toEqual(Object.keys(sb).sort());
    for (const k of Object.keys(sa)) expect(Array.from(sa[k]!.data), k).toEqual(Array.from(sb[k]!.data));
    const w = 'domain_tokens.linear1.0.weight';
    expect(Array.from(sa[w]!.data)).not.toEqual(Array.from(sc[w]!.data));
    // One domain token mapping per vision layer (3 for clip-tiny), banks of C·5 slots, all at zero.
    expect(sa['domain_tokens.linear1.2.weight']!.shape).toEqual([256, 128]);
    expect(sa['domain_tokens.linear1.3.weight']).toBeUndefined();
    expect(sa.source_feat_bank!.shape).toEqual([NAMES.length * 5, 32]);
    expect(sa.source_feat_bank!.data.every((v) => v === 0)).toBe(true);
    expect(a.nCtx).toBe(10);
    expect(a.classNames).toEqual(NAMES);
    expect(a.seed).toBe(1);
    for (const p of [a, b, c]) p.dispose();
  });

  it('classifies a tensor: argmax of its logits, softmax scores, batched like one call', async () => {
    using prompt = await PromptModel.create(clip, NAMES, { seed: 3 });
    const images = randomImages(5, 7);
    const { logits } = await prompt.logits(images);
    expect(logits.shape).toEqual([5, 3]);
    const preds = await prompt.classify(images, { batchSize: 2 });
    const idx = argmaxRows(logits);
    preds.forEach((p, i) => {
      expect(p.index).toBe(idx[i]);
      expect(p.label).toBe(NAMES[idx[i]!]);
      const row = Array.from(logits.data.subarray(i * 3, i * 3 + 3));
      const e = row.map((v) => Math.exp(v - Math.max(...row)));
      const sum = e.reduce((x, y) => x + y, 0);
      p.scores.forEach((s, j) => expect(s).toBeCloseTo(e[j]! / sum, 5));
    });
  });

  it('classifies image files through CLIP test preprocessing', async () => {
    using prompt = await PromptModel.create(clip, NAMES, { seed: 3 });
    const files = await Promise.all([[250, 20, 20], [20, 200, 40]].map(async ([r, g, b], i) => {
      const f = join(dir, `img${i}.png`);
      await sharp({ create: { width: 40 + 9 * i, height: 36, channels: 3, background: { r: r!, g: g!, b: b! } } }).png().toFile(f);
      return f;
    }));
    const byPath = await prompt.classify(files);
    const byTensor = await prompt.classify(await preprocess(files, { size: 32 }));
    expect(byPath).toEqual(byTensor);
  });

  it('gives the image-dependent domain tokens and embeddings on request', async () => {
    using prompt = await PromptModel.create(clip, NAMES, { seed: 3 });
    const out = await prompt.logits(randomImages(2, 1), { domain: true, embeds: true });
    expect(out.domain!.shape).toEqual([2, 3, 128]);
    expect(out.embeds!.shape).toEqual([2, 32]);
    const d = out.domain!.data;
    expect(Array.from(d.subarray(0, 384))).not.toEqual(Array.from(d.subarray(384, 768)));
  });

  it('rejects bad inputs with clear codes', async () => {
    expect(await codeOf(PromptModel.create(clip, []))).toBe('ERR_EMPTY_INPUT');
    expect(await codeOf(PromptModel.create(clip, ['a', 'a']))).toBe('ERR_INVALID_ARGUMENT');
    expect(await codeOf(PromptModel.create(clip, NAMES, { seed: -1 }))).toBe('ERR_INVALID_ARGUMENT');
    expect(await codeOf(PromptModel.create(clip, NAMES, { textPath: 'slow' as 'fast' }))).toBe('ERR_INVALID_ARGUMENT');
    // 10 context tokens + SOT + '.' + EOT leave 64 of 77 for the name: 70 words do not fit.
    const long = Array.from({ length: 70 }, () => 'word').join('_');
    const err = await PromptModel.create(clip, ['ok', long]).catch((e: unknown) => e as IpclipError);
    expect(err).toBeInstanceOf(IpclipError);
    expect((err as IpclipError).code).toBe('ERR_INVALID_ARGUMENT');
    expect((err as IpclipError).message).toContain(long);
    using prompt = await PromptModel.create(clip, NAMES);
    const nan = randomImages(2, 1);
    nan.data[100] = NaN;
    expect(await codeOf(prompt.logits(nan))).toBe('ERR_NON_FINITE');
    // The error names the first image with a non-finite value.
    const inf = randomImages(3, 2);
    inf.data[2 * 3 * 32 * 32 + 7] = Infinity;
    const infErr = await prompt.logits(inf).catch((e: unknown) => e as IpclipError);
    expect((infErr as IpclipError).code).toBe('ERR_NON_FINITE');
    expect((infErr as IpclipError).message).toMatch(/image 2 /);
    // A refused bank update changes no bank entry.
    const before = await prompt.state();
    expect(await codeOf(prompt.updateBanks(nan, Int32Array.from([0, 1]), 'unauthorized'))).toBe('ERR_NON_FINITE');
    const after = await prompt.state();
    for (const name of Object.keys(before)) expect(Array.from(after[name]!.data), name).toEqual(Array.from(before[name]!.data));
    expect(await codeOf(clip.encodeImage(inf))).toBe('ERR_NON_FINITE');
    expect(await codeOf(prompt.logits({ data: new Float32Array(3 * 16 * 16), shape: [1, 3, 16, 16] }))).toBe('ERR_INVALID_ARGUMENT');
    expect(await codeOf(prompt.logits({ data: new Float32Array(0), shape: [0, 3, 32, 32] }))).toBe('ERR_EMPTY_INPUT');
    expect(await codeOf(prompt.classify([]))).toBe('ERR_EMPTY_INPUT');
  });

  it('needs a tokenizer to build class prompts', async () => {
    const bare = await Clip.load(CLIP_TINY.openaiSafetensors, { device: TEST_DEVICE });
    try {
      expect(bare.tokenizer).toBeNull();
      expect(await codeOf(PromptModel.create(bare, NAMES))).toBe('ERR_INVALID_ARGUMENT');
    } finally {
      bare.dispose();
    }
  });

  it('refuses calls after dispose', async () => {
    const prompt = await PromptModel.create(clip, NAMES);
    prompt.dispose();
    prompt.dispose();
    expect(prompt.disposed).toBe(true);
    expect(await codeOf(prompt.logits(randomImages(1, 1)))).toBe('ERR_DISPOSED');
    expect(await codeOf(() => prompt.gradients())).toBe('ERR_DISPOSED');
  });
});
