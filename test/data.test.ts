import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { DomainDataset, SPLIT_PRESETS, assertSameClasses, splitCounts } from '../lib/data.js';

let root = '';

async function png(file: string, r: number, g: number, b: number): Promise<void> {
  await sharp({ create: { width: 6, height: 5, channels: 3, background: { r, g, b } } }).png().toFile(file);
}

// Layout: two domains with the same three classes (folder names in mixed case), plus noise files.
// Per class 'n' images: counts chosen so the total (4+3+5 = 12) is easy to reason about.
const COUNTS: Record<string, number> = { Apple: 4, banana: 3, cherry_pie: 5 };

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'ipclip-data-'));
  for (const domain of ['art', 'photo']) {
    for (const [cls, n] of Object.entries(COUNTS)) {
      const dir = path.join(root, domain, cls);
      await mkdir(dir, { recursive: true });
      for (let i = 0; i < n; i++) await png(path.join(dir, `img${i}${i === 0 ? '.PNG' : '.png'}`), i * 20, 0, 0);
      await writeFile(path.join(dir, 'notes.txt'), 'not an image');
      await writeFile(path.join(dir, '.hidden.png'), 'hidden');
    }
    await mkdir(path.join(root, domain, '.cache'), { recursive: true });
  }
  await mkdir(path.join(root, 'sketch', 'apple'), { recursive: true });
  await mkdir(path.join(root, 'sketch', 'banana'), { recursive: true });
  await png(path.join(root, 'sketch', 'apple', 'a.jpg.png'), 1, 2, 3);
  await mkdir(path.join(root, 'empty'), { recursive: true });
  await mkdir(path.join(root, 'other', 'Apple'), { recursive: true });
  await png(path.join(root, 'other', 'Apple', 'x.webp.png'), 1, 2, 3);
  await mkdir(path.join(root, 'other', 'kiwi'), { recursive: true });
  await png(path.join(root, 'other', 'kiwi', 'y.png'), 1, 2, 3);
});

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

describe('DomainDataset.fromFolder', () => {
  it('labels images by sorted class folder, lower-cases names, ignores hidden and non-image files', async () => {
    const ds = await DomainDataset.fromFolder(root, { domain: 'art' });
    // Code-unit order puts upper case first: 'Apple' < 'banana' < 'cherry_pie'.
    expect(ds.classFolders).toEqual(['Apple', 'banana', 'cherry_pie']);
    expect(ds.classNames).toEqual(['apple', 'banana', 'cherry_pie']);
    expect(ds.length).toBe(12);
    expect(ds.split).toBe('all');
    for (const s of ds.samples) {
      const folder = path.basename(path.dirname(s.path!));
      expect(ds.classFolders[s.label]).toBe(folder);
      expect(s.domain).toBe('art');
      expect(path.basename(s.path!)).toMatch(/^img\d\.(png|PNG)$/);
    }
    expect(Array.from(ds.labels())).toEqual([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2]);
  });

  it('splits deterministically and disjointly by trainFraction', async () => {
    const a = await DomainDataset.splits(root, { domain: 'art', seed: 7 });
    const train = await DomainDataset.fromFolder(root, { domain: 'art', split: 'train', seed: 7 });
    const test = await DomainDataset.fromFolder(root, { domain: 'art', split: 'test', seed: 7 });
    // round(12 * 0.8) = 10 train, 2 test.
    expect(train.length).toBe(10);
    expect(test.length).toBe(2);
    expect(train.samples.map((s) => s.path)).toEqual(a.train.samples.map((s) => s.path));
    expect(test.samples.map((s) => s.path)).toEqual(a.test.samples.map((s) => s.path));
    const trainPaths = new Set(train.samples.map((s) => s.path));
    expect(test.samples.some((s) => trainPaths.has(s.path))).toBe(false);
    expect(trainPaths.size + test.length).toBe(12);
    // Same seed → same split; the order is a real shuffle, and other seeds differ.
    const again = await DomainDataset.fromFolder(root, { domain: 'art', split: 'train', seed: 7 });
    expect(again.samples.map((s) => s.path)).toEqual(train.samples.map((s) => s.path));
    const orders = new Set<string>();
    for (let seed = 0; seed < 6; seed++) {
      const t = await DomainDataset.fromFolder(root, { domain: 'art', split: 'train', seed });
      orders.add(t.samples.map((s) => s.path).join('|'));
    }
    expect(orders.size).toBeGreaterThan(1);
  });

  it('uses fixed sizes, with test first so it does not depend on the train size', async () => {
    const small = await DomainDataset.splits(root, { domain: 'photo', seed: 3, sizes: { train: 4, test: 3 } });
    const large = await DomainDataset.splits(root, { domain: 'photo', seed: 3, sizes: { train: 9, test: 3 } });
    expect(small.train.length).toBe(4);
    expect(small.test.length).toBe(3);
    expect(large.train.length).toBe(9);
    expect(large.test.samples.map((s) => s.path)).toEqual(small.test.samples.map((s) => s.path));
    // The smaller train split is a prefix of the larger one (same shuffled order after the test part).
    expect(large.train.samples.slice(0, 4).map((s) => s.path)).toEqual(small.train.samples.map((s) => s.path));
  });

  it('scales sizes proportionally when the domain is smaller than train + test', async () => {
    // 12 images, sizes 2000/400: nTest = floor(12 * 400 / 2400) = 2, nTrain = 10.
    expect(splitCounts(12, { sizes: 'office-home' })).toEqual({ nTrain: 10, nTest: 2 });
    const s = await DomainDataset.splits(root, { domain: 'art', sizes: 'office-home' });
    expect([s.train.length, s.test.length]).toEqual([10, 2]);
    expect(splitCounts(5000, { sizes: 'office-home' })).toEqual({ nTrain: 2000, nTest: 400 });
    expect(SPLIT_PRESETS['mini-domainnet']).toEqual({ train: 10000, test: 630 });
    expect(SPLIT_PRESETS['office-31']).toEqual({ train: 400, test: 80 });
  });

  it('checks expected class names case-insensitively', async () => {
    await expect(DomainDataset.fromFolder(root, { domain: 'art', classNames: ['APPLE', 'Banana', 'cherry_pie'] })).resolves.toBeDefined();
    await expect(DomainDataset.fromFolder(root, { domain: 'art', classNames: ['apple', 'banana'] }))
      .rejects.toMatchObject({ code: 'ERR_MISMATCH' });
  });

  it('reports missing and empty folders with fitting codes', async () => {
    await expect(DomainDataset.fromFolder(path.join(root, 'nope'), { domain: 'art' })).rejects.toMatchObject({ code: 'ERR_FILE_NOT_FOUND' });
    await expect(DomainDataset.fromFolder(root, { domain: 'clipart' })).rejects.toMatchObject({ code: 'ERR_FILE_NOT_FOUND' });
    await expect(DomainDataset.fromFolder(root, { domain: 'empty' })).rejects.toMatchObject({ code: 'ERR_EMPTY_INPUT' });
    const err = await DomainDataset.fromFolder(root, { domain: 'sketch' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_EMPTY_INPUT' });
    expect(String((err as Error).message)).toContain(path.join('sketch', 'banana'));
    await expect(DomainDataset.fromFolder(root, { domain: '../art' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(DomainDataset.fromFolder(root, { domain: 'art', trainFraction: 2, split: 'train' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });
});

describe('domains and helpers', () => {
  it('lists domains sorted, skipping hidden entries', async () => {
    expect(await DomainDataset.listDomains(root)).toEqual(['art', 'empty', 'other', 'photo', 'sketch']);
    await expect(DomainDataset.listDomains(path.join(root, 'missing'))).rejects.toMatchObject({ code: 'ERR_FILE_NOT_FOUND' });
  });

  it('asserts that domains share class names', async () => {
    const art = await DomainDataset.fromFolder(root, { domain: 'art' });
    const photo = await DomainDataset.fromFolder(root, { domain: 'photo' });
    const other = await DomainDataset.fromFolder(root, { domain: 'other' });
    expect(() => assertSameClasses([art, photo])).not.toThrow();
    expect(() => assertSameClasses([art, photo, other])).toThrow(expect.objectContaining({ code: 'ERR_MISMATCH' }));
  });

  it('builds datasets from samples and takes subsets', () => {
    const ds = DomainDataset.fromSamples(
      [{ buffer: new Uint8Array([1]), label: 1 }, { path: '/x.png', label: 0 }, { path: '/y.png', label: 1 }], ['Cat', 'Dog'], { domain: 'mem' });
    expect(ds.classNames).toEqual(['cat', 'dog']);
    expect(ds.subset([2, 0]).samples.map((s) => s.label)).toEqual([1, 1]);
    expect(ds.filter((s) => s.label === 0).length).toBe(1);
    expect(() => ds.subset([3])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(() => DomainDataset.fromSamples([{ path: '/x.png', label: 2 }], ['a', 'b'])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(() => DomainDataset.fromSamples([{ label: 0 }], ['a'])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  });
});
