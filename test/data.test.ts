import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtemp, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import {
  BadImagesError, DomainDataset, SPLIT_PRESETS, assertSameClasses, checkImageFile, inTrainingSplit, splitCounts,
} from '../lib/data/dataset.js';

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

describe('stable split assignment (path-hash rule)', () => {
  // One domain of 3 classes × 10 images; files are hidden (renamed with a leading '.') to "remove" them.
  let sroot = '';
  const files: string[] = [];
  beforeAll(async () => {
    sroot = await mkdtemp(path.join(tmpdir(), 'ipclip-stable-'));
    for (const cls of ['a', 'b', 'c']) {
      await mkdir(path.join(sroot, 'dom', cls), { recursive: true });
      for (let i = 0; i < 10; i++) {
        const f = path.join(sroot, 'dom', cls, `${cls}${i}.png`);
        await png(f, i * 20, 10, 10);
        files.push(f);
      }
    }
  });
  afterAll(async () => { if (sroot) await rm(sroot, { recursive: true, force: true }); });

  type Where = Map<string, 'train' | 'test'>;
  const assignment = async (opts: { sizes?: { train: number; test: number }; seed?: number }): Promise<Where> => {
    // fromFolder without onBadImage: the same cut as splits, without the header check (fast).
    const o = { domain: 'dom', seed: opts.seed ?? 4, ...(opts.sizes ? { sizes: opts.sizes } : {}) };
    const m: Where = new Map();
    for (const x of (await DomainDataset.fromFolder(sroot, { ...o, split: 'train' })).samples) m.set(x.path!, 'train');
    for (const x of (await DomainDataset.fromFolder(sroot, { ...o, split: 'test' })).samples) m.set(x.path!, 'test');
    return m;
  };
  const hide = (f: string) => rename(f, path.join(path.dirname(f), `.${path.basename(f)}`));
  const unhide = (f: string) => rename(path.join(path.dirname(f), `.${path.basename(f)}`), f);
  /** Files other than `except` whose assignment (train / test / unused) differs. */
  const moved = (before: Where, after: Where, except: string) =>
    files.filter((f) => f !== except && before.get(f) !== after.get(f));

  it('the test split is the images with the smallest keys of sha256(rule, seed, domain, path in domain)', async () => {
    const key = (f: string) => createHash('sha256').update(`path-hash/1\0${4}\0dom\0${path.relative(path.join(sroot, 'dom'), f)}`).digest('hex');
    const byKey = [...files].sort((x, y) => (key(x) < key(y) ? -1 : 1));
    const s = await DomainDataset.splits(sroot, { domain: 'dom', seed: 4, sizes: { train: 12, test: 6 } });
    expect(s.test.samples.map((x) => x.path)).toEqual(byKey.slice(0, 6));
    expect(s.train.samples.map((x) => x.path)).toEqual(byKey.slice(-12).reverse());
    expect(s.train.splitInfo).toMatchObject({ rule: 'path-hash', version: 1, seed: 4, nTrain: 12, nTest: 6, listed: 30, sizes: { train: 12, test: 6 } });
    expect(files.filter((f) => inTrainingSplit(s.train.splitInfo!, sroot, 'dom', f)).sort()).toEqual(byKey.slice(-12).sort());
  });

  it('removing or adding one image moves no other image between train and test (fixed sizes with unused images)', async () => {
    const sizes = { train: 12, test: 6 };
    const before = await assignment({ sizes });
    for (const f of files) {
      await hide(f);
      const after = await assignment({ sizes });
      await unhide(f);
      const m = moved(before, after, f);
      // Sizes are still met exactly; at most one image (the next one at the cut) fills the hole, from the unused middle.
      expect([...after.values()].filter((v) => v === 'train')).toHaveLength(12);
      expect([...after.values()].filter((v) => v === 'test')).toHaveLength(6);
      expect(m.length, f).toBe(before.has(f) ? 1 : 0);
      for (const g of m) expect(before.get(g), g).toBeUndefined();
    }
    // Adding one image (the reverse of removing it) is checked by the same loop read backwards: from `after` to
    // `before` only the added image and at most one other change.
  });

  it('removing one image changes the assignment of at most one other image when every image is used', async () => {
    const before = await assignment({});
    let unchanged = 0;
    for (const f of files) {
      await hide(f);
      const after = await assignment({});
      await unhide(f);
      const m = moved(before, after, f);
      expect(m.length, f).toBeLessThanOrEqual(1);
      if (m.length === 0) unchanged++;
      expect([...after.values()].filter((v) => v === 'train')).toHaveLength(Math.round(29 * 0.8));
    }
    // round(0.8·30) = 24 → round(0.8·29) = 23: removing a train image needs no other move.
    expect(unchanged).toBeGreaterThanOrEqual(24);
  });
});

describe('bad images found before use', () => {
  let broot = '';
  const bad: string[] = [];
  beforeAll(async () => {
    broot = await mkdtemp(path.join(tmpdir(), 'ipclip-bad-'));
    for (const cls of ['a', 'b']) {
      await mkdir(path.join(broot, 'dom', cls), { recursive: true });
      for (let i = 0; i < 5; i++) await png(path.join(broot, 'dom', cls, `${i}.png`), 40 * i, 0, 0);
    }
    const good = await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 9, g: 99, b: 199 } } }).png().toBuffer();
    bad.push(path.join(broot, 'dom', 'a', 'truncated.png'), path.join(broot, 'dom', 'b', 'noise.jpg'), path.join(broot, 'dom', 'b', 'zero.png'));
    await writeFile(bad[0]!, good.subarray(0, good.length - 20)); // header intact, end cut off
    await writeFile(bad[1]!, Buffer.from(Array.from({ length: 700 }, (_, i) => (i * 131 + 7) % 256)));
    await writeFile(bad[2]!, Buffer.alloc(0));
  });
  afterAll(async () => { if (broot) await rm(broot, { recursive: true, force: true }); });

  it("reports every bad file at once ('error', the default of splits)", async () => {
    const err = await DomainDataset.splits(broot, { domain: 'dom', seed: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BadImagesError);
    expect(err).toMatchObject({ code: 'ERR_BAD_IMAGE' });
    const e = err as BadImagesError;
    expect(e.files.map((f) => f.path).sort()).toEqual([...bad].sort());
    for (const f of bad) expect(e.message).toContain(f);
    expect(e.files.find((f) => f.path === bad[0])!.reason).toMatch(/truncated PNG/);
    expect(e.files.find((f) => f.path === bad[2])!.reason).toMatch(/empty/);
    expect(await checkImageFile(path.join(broot, 'dom', 'a', '0.png'))).toBeNull();
    // fromFolder checks only when asked.
    expect((await DomainDataset.fromFolder(broot, { domain: 'dom' })).length).toBe(13);
    await expect(DomainDataset.fromFolder(broot, { domain: 'dom', onBadImage: 'error' })).rejects.toMatchObject({ code: 'ERR_BAD_IMAGE' });
  });

  it("'skip' leaves them out as if absent and lists them", async () => {
    const s = await DomainDataset.splits(broot, { domain: 'dom', seed: 1, onBadImage: 'skip' });
    expect(s.train.skipped.map((f) => f.path)).toEqual([...bad].sort());
    expect(s.train.length + s.test.length).toBe(10);
    expect(s.train.length).toBe(8);
    const used = [...s.train.samples, ...s.test.samples].map((x) => x.path);
    for (const f of bad) expect(used).not.toContain(f);
    await expect(DomainDataset.splits(broot, { domain: 'dom', onBadImage: 'maybe' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });
});
