// The user's path: Clip.load by name, ProtectedClassifier (a run folder or file with its CLIP, checked by
// fingerprint), the one Prediction shape, progress and abort on long calls, folders, globs and streams.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Clip, LOCAL_MODELS } from '../lib/clip/clip.js';
import { IpclipError } from '../lib/core/errors.js';
import { Rng } from '../lib/core/rng.js';
import { PromptModel } from '../lib/ipclip/prompt-model.js';
import { ProtectedClassifier } from '../lib/ipclip/protected-classifier.js';
import { listImageFiles } from '../lib/data/files.js';
import { SYNTH_CLASSES, renderSynthImage } from '../lib/tools/synth/synth.js';
import { CLIP_TINY, HAVE_SHARED, TEST_DEVICE, VOCAB_PATH } from './helpers/fixtures.js';

const SHIPPED = fileURLToPath(new URL('../models/synth-clip/model.safetensors', import.meta.url));

async function errorOf(p: Promise<unknown>): Promise<IpclipError> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(IpclipError);
  return err as IpclipError;
}

describe('Clip.load by name', () => {
  it('loads the shipped model by its name, the same weights as by path', async () => {
    expect(Object.keys(LOCAL_MODELS)).toContain('synth-clip');
    using byName = await Clip.load('synth-clip', { device: TEST_DEVICE });
    using byPath = await Clip.load(SHIPPED, { device: TEST_DEVICE });
    expect(byName.info.fingerprint).toBe(byPath.info.fingerprint);
    expect(byName.tokenizer).not.toBeNull(); // its vocabulary beside the weights
  });

  it('an unknown name is ERR_NOT_FOUND listing the known names; an unknown path stays ERR_FILE_NOT_FOUND', async () => {
    const e = await errorOf(Clip.load('vit-b-16'));
    expect(e.code).toBe('ERR_NOT_FOUND');
    expect(e.message).toContain('synth-clip');
    expect((await errorOf(Clip.load('no/such/model.safetensors'))).code).toBe('ERR_FILE_NOT_FOUND');
    // Prototype names are not models.
    expect((await errorOf(Clip.load('constructor'))).code).toBe('ERR_NOT_FOUND');
  });
});

describe('ProtectedClassifier', () => {
  let dir: string;
  let clip: Clip;
  let prompt: PromptModel;
  let images: string[];
  const classes = [...SYNTH_CLASSES];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ipclip-pc-'));
    clip = await Clip.load('synth-clip', { device: TEST_DEVICE });
    prompt = await PromptModel.create(clip, classes, { seed: 5 });
    mkdirSync(join(dir, 'run'));
    await prompt.save(join(dir, 'run', 'prompt.safetensors'));
    // Seven images in nested folders, written in an order that is not the sorted one.
    const rng = new Rng(3);
    images = [];
    for (const [k, rel] of ['b/2.png', 'a/1.png', 'c/0.png', 'a/0.png', 'b/1.png', 'a/x/3.png', 'c/1.png'].entries()) {
      const f = join(dir, 'imgs', rel);
      mkdirSync(join(f, '..'), { recursive: true });
      writeFileSync(f, (await renderSynthImage('photo', classes[k % classes.length]!, rng.fork(rel), 32)).png);
      images.push(f);
    }
    writeFileSync(join(dir, 'imgs', 'notes.txt'), 'not an image');
  });
  afterAll(() => {
    prompt?.dispose();
    clip?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('loads a run folder with the shipped CLIP found by fingerprint, and classifies as the prompt does', async () => {
    using pc = await ProtectedClassifier.load(join(dir, 'run'), { device: TEST_DEVICE });
    expect(pc.file).toBe(join(dir, 'run', 'prompt.safetensors'));
    expect(pc.clip.info.fingerprint).toBe(clip.info.fingerprint);
    expect(pc.classNames).toEqual(classes);
    const got = await pc.classify(images, { topK: 3 });
    const want = await prompt.classify(images);
    expect(got.map((p) => p.index)).toEqual(want.map((p) => p.index));
    got.forEach((p, i) => {
      expect(p.top).toHaveLength(3);
      expect(p.scores).toHaveLength(classes.length);
      for (let c = 0; c < classes.length; c++) expect(p.scores[c]).toBeCloseTo(want[i]!.scores[c]!, 6);
    });
  });

  it('takes a loaded CLIP and leaves it alive after dispose', async () => {
    const pc = await ProtectedClassifier.load(join(dir, 'run', 'prompt.safetensors'), { clip });
    expect(pc.clip).toBe(clip);
    pc.dispose();
    expect(clip.disposed).toBe(false);
    expect(pc.prompt.disposed).toBe(true);
  });

  it.skipIf(!HAVE_SHARED)('refuses a CLIP with another fingerprint, naming both', async () => {
    using tiny = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, device: TEST_DEVICE });
    const e = await errorOf(ProtectedClassifier.load(join(dir, 'run'), { clip: tiny }));
    expect(e.code).toBe('ERR_MISMATCH');
    expect(e.message).toContain(clip.info.fingerprint);
    expect(e.message).toContain(tiny.info.fingerprint);
    // A prompt trained on a CLIP that is not shipped, without { clip }: nothing to pair it with.
    using other = await PromptModel.create(tiny, ['a', 'b'], { seed: 1 });
    const f = join(dir, 'tiny-prompt.safetensors');
    await other.save(f);
    const n = await errorOf(ProtectedClassifier.load(f));
    expect(n.code).toBe('ERR_NOT_FOUND');
    expect(n.message).toContain(tiny.info.fingerprint);
    expect(n.message).toContain('synth-clip');
  });

  it('classifyStream yields one result per file in sorted order, reading a batch at a time', async () => {
    const sorted = [...images].sort();
    expect(sorted).not.toEqual(images); // the files were written out of order
    using pc = await ProtectedClassifier.load(join(dir, 'run'), { clip });
    const last = sorted[sorted.length - 1]!;
    const [before] = await prompt.classify([last]);
    const replacement = (await renderSynthImage('sketch', 'star', new Rng(99), 32)).png;
    const seen: { file: string; scores: number[] }[] = [];
    const events: number[] = [];
    for await (const { file, prediction } of pc.classifyStream(join(dir, 'imgs'), { batchSize: 3, onProgress: (e) => events.push(e.done) })) {
      // After the first result, the last file gets other pixels: a stream that had read every file first
      // would still report the old ones.
      if (seen.length === 0) writeFileSync(last, replacement);
      seen.push({ file, scores: prediction.scores });
    }
    expect(seen.map((r) => r.file)).toEqual(sorted); // notes.txt is not an image and is not listed
    expect(events).toEqual([3, 6, 7]);
    const [after] = await prompt.classify([last]);
    const got = seen[seen.length - 1]!.scores;
    got.forEach((x, c) => expect(x).toBeCloseTo(after!.scores[c]!, 6));
    expect(got.some((x, c) => Math.abs(x - before!.scores[c]!) > 1e-4)).toBe(true);
    // A glob in the same order, and an abort between batches.
    const globbed: string[] = [];
    for await (const r of pc.classifyStream(`${dir}/imgs/a/**/*.png`)) globbed.push(r.file);
    expect(globbed).toEqual(sorted.filter((f) => f.startsWith(join(dir, 'imgs', 'a'))));
    const c = new AbortController();
    const stopped: string[] = [];
    await expect((async () => {
      for await (const r of pc.classifyStream(join(dir, 'imgs'), { batchSize: 2, signal: c.signal })) { stopped.push(r.file); c.abort(); }
    })()).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    expect(stopped).toEqual(sorted.slice(0, 2)); // the first batch's results came out, no later batch ran
  });

  it('a folder without a prompt and a missing path are ERR_FILE_NOT_FOUND', async () => {
    expect((await errorOf(ProtectedClassifier.load(join(dir, 'imgs')))).code).toBe('ERR_FILE_NOT_FOUND');
    expect((await errorOf(ProtectedClassifier.load(join(dir, 'nope')))).code).toBe('ERR_FILE_NOT_FOUND');
  });
});

describe('one Prediction shape', () => {
  it('Clip.classify: label, index, score of the best; top sorted; scores in label order, independent of label order', async () => {
    using clip = await Clip.load('synth-clip', { device: TEST_DEVICE });
    const rng = new Rng(11);
    const imgs = await Promise.all(['circle', 'star', 'moon'].map(async (c) => (await renderSynthImage('photo', c, rng.fork(c), 32)).png));
    const labels = ['a circle', 'a star', 'a moon', 'a heart'];
    const preds = await clip.classify(imgs, labels, { template: 'a photo of {}.', topK: 2 });
    const reversed = await clip.classify(imgs, [...labels].reverse(), { template: 'a photo of {}.' });
    expect(preds).toHaveLength(3);
    preds.forEach((p, i) => {
      expect(p.top).toHaveLength(2);
      expect(p.top[0]).toEqual({ label: p.label, index: p.index, score: p.score });
      expect(labels[p.index]).toBe(p.label);
      expect(p.top[0]!.score).toBeGreaterThanOrEqual(p.top[1]!.score);
      expect(p.score).toBe(Math.max(...p.scores));
      expect(p.scores.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
      // The same probabilities whatever the labels' order, each under its own label.
      const r = reversed[i]!;
      expect(r.top).toHaveLength(4);
      expect(r.label).toBe(p.label);
      labels.forEach((l, j) => expect(r.scores[labels.length - 1 - j]).toBeCloseTo(p.scores[j]!, 5));
    });
  });
});

describe('listImageFiles', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'ipclip-files-'));
    for (const rel of ['z.png', 'a/b.JPG', 'a/.hidden.png', 'a/c.txt', 'b/d.webp']) {
      mkdirSync(join(dir, rel, '..'), { recursive: true });
      writeFileSync(join(dir, rel), '');
    }
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('walks folders for image files in sorted order, expands globs, keeps files as given, once each', async () => {
    expect(await listImageFiles(dir)).toEqual([join(dir, 'a', 'b.JPG'), join(dir, 'b', 'd.webp'), join(dir, 'z.png')]);
    expect(await listImageFiles(`${dir}/*/*`)).toEqual([join(dir, 'a', 'b.JPG'), join(dir, 'a', 'c.txt'), join(dir, 'b', 'd.webp')]);
    expect(await listImageFiles([join(dir, 'z.png'), dir])).toEqual([join(dir, 'z.png'), join(dir, 'a', 'b.JPG'), join(dir, 'b', 'd.webp')]);
    expect(await listImageFiles(join(dir, 'a', 'c.txt'))).toEqual([join(dir, 'a', 'c.txt')]);
  });

  it('names what matched nothing', async () => {
    await expect(listImageFiles(`${dir}/*.gif`)).rejects.toMatchObject({ code: 'ERR_FILE_NOT_FOUND' });
    await expect(listImageFiles(join(dir, 'missing.png'))).rejects.toMatchObject({ code: 'ERR_FILE_NOT_FOUND' });
    mkdirSync(join(dir, 'empty'));
    await expect(listImageFiles(join(dir, 'empty'))).rejects.toMatchObject({ code: 'ERR_FILE_NOT_FOUND' });
    await expect(listImageFiles([])).rejects.toMatchObject({ code: 'ERR_EMPTY_INPUT' });
  });
});
