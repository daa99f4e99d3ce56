import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import sharp from 'sharp';
import ts from 'typescript';
import { DomainDataset } from '../lib/data/dataset.js';
import { BatchLoader, cycle, cyclePosition, type Batch } from '../lib/data/loader.js';

const repo = fileURLToPath(new URL('../', import.meta.url));
const MEAN = [0.48145466, 0.4578275, 0.40821073];
const STD = [0.26862954, 0.26130258, 0.27577711];
const S = 16;
let root = '';
let ds: DomainDataset;

// Each class has its own solid colour, so after the test transform every pixel of a sample must be
// that colour normalised: an expectation independent of the resampling code.
const COLOURS: [number, number, number][] = [[200, 30, 10], [20, 180, 60], [40, 50, 220]];
const PER_CLASS = [3, 2, 2];

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'ipclip-loader-'));
  for (let c = 0; c < 3; c++) {
    const dir = path.join(root, 'dom', `class${c}`);
    await mkdir(dir, { recursive: true });
    for (let i = 0; i < PER_CLASS[c]; i++) {
      const [r, g, b] = COLOURS[c];
      // Varied sizes and a bright corner so random crops and flips change the result.
      await sharp({ create: { width: 20 + 7 * i, height: 18 + 5 * c, channels: 3, background: { r, g, b } } })
        .composite([{ input: { create: { width: 6, height: 6, channels: 3, background: { r: 255, g: 255, b: 255 } } }, left: 0, top: 0 }])
        .png().toFile(path.join(dir, `im${i}.png`));
    }
  }
  await mkdir(path.join(root, 'bad', 'a'), { recursive: true });
  await sharp({ create: { width: 8, height: 8, channels: 3, background: '#808080' } }).png().toFile(path.join(root, 'bad', 'a', '0.png'));
  await writeFile(path.join(root, 'bad', 'a', '1.png'), 'this is not a png');
  await sharp({ create: { width: 8, height: 8, channels: 3, background: '#808080' } }).png().toFile(path.join(root, 'bad', 'a', '2.png'));
  ds = await DomainDataset.fromFolder(root, { domain: 'dom' });
});

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

async function collect(it: AsyncIterable<Batch>): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of it) out.push(b);
  return out;
}

function expectSameBatches(a: Batch[], b: Batch[]): void {
  expect(b.length).toBe(a.length);
  a.forEach((x, i) => {
    expect(b[i].indices).toEqual(x.indices);
    expect(Array.from(b[i].labels)).toEqual(Array.from(x.labels));
    expect(b[i].images.shape).toEqual(x.images.shape);
    expect(Buffer.from(b[i].images.data.buffer).equals(Buffer.from(x.images.data.buffer))).toBe(true);
  });
}

describe('BatchLoader', () => {
  it('yields every sample once per epoch with correct labels and normalised pixels', async () => {
    const loader = new BatchLoader(ds, { batchSize: 3, size: S, seed: 1, transform: { augment: 'test' }, workers: 0 });
    expect(loader.batchesPerEpoch()).toBe(3);
    const batches = await collect(loader.epoch(0));
    expect(batches.map((b) => b.images.shape)).toEqual([[3, 3, S, S], [3, 3, S, S], [1, 3, S, S]]);
    const seen = batches.flatMap((b) => b.indices);
    expect([...seen].sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    const plane = S * S;
    for (const b of batches) {
      b.indices.forEach((idx, k) => {
        const label = ds.samples[idx].label;
        expect(b.labels[k]).toBe(label);
        // Centre crop of a solid image (the white corner is cropped away or resized into the border):
        // the centre pixel of each channel is the class colour.
        for (let c = 0; c < 3; c++) {
          const v = b.images.data[(k * 3 + c) * plane + (S / 2) * S + S / 2];
          expect(v).toBeCloseTo((COLOURS[label][c] / 255 - MEAN[c]) / STD[c], 1);
        }
      });
    }
    await loader.close();
  });

  it('is deterministic for a seed whatever the prefetch depth and thread count', async () => {
    const opts = { batchSize: 2, size: S, seed: 42, transform: { augment: 'train' as const } };
    const a = new BatchLoader(ds, { ...opts, prefetch: 0, workers: 0 });
    const b = new BatchLoader(ds, { ...opts, prefetch: 3, workers: 2 });
    const ea = await collect(a.epoch(1));
    expectSameBatches(ea, await collect(b.epoch(1)));
    // Another epoch reshuffles and re-augments; another seed differs too.
    const e2 = await collect(a.epoch(2));
    expect(e2.map((x) => x.indices.join()).join('|')).not.toBe(ea.map((x) => x.indices.join()).join('|'));
    const c = new BatchLoader(ds, { ...opts, seed: 43, shuffle: false, workers: 0 });
    const d = new BatchLoader(ds, { ...opts, seed: 44, shuffle: false, workers: 0 });
    const [c0, d0] = [await c.batchAt(0, 0), await d.batchAt(0, 0)];
    expect(c0.indices).toEqual(d0.indices);
    expect(Buffer.from(c0.images.data.buffer).equals(Buffer.from(d0.images.data.buffer))).toBe(false);
    await Promise.all([a.close(), b.close(), c.close(), d.close()]);
  });

  it('resumes mid-epoch exactly with batchAt, epoch(e, from) and cycle', async () => {
    const loader = new BatchLoader(ds, { batchSize: 2, size: S, seed: 5, transform: 'authorization-mixture', workers: 0 });
    const full = await collect(loader.epoch(3));
    expect(full.length).toBe(4);
    expectSameBatches([full[2]], [await loader.batchAt(3, 2)]);
    expectSameBatches(full.slice(1), await collect(loader.epoch(3, 1)));
    // Cycled stream: global steps 6..9 are epoch 1 batches 2,3 then epoch 2 batches 0,1.
    expect(cyclePosition(loader, 9)).toEqual({ epoch: 2, batch: 1 });
    const cycled = await collect(cycle(loader, 6, 4));
    const direct = [await loader.batchAt(1, 2), await loader.batchAt(1, 3), await loader.batchAt(2, 0), await loader.batchAt(2, 1)];
    expectSameBatches(direct, cycled);
    // Iterating the loader itself runs epochs 0, 1, … in turn.
    expectSameBatches(await collect(loader.epoch(0)), await collect(loader));
    expectSameBatches(await collect(loader.epoch(1)), await collect(loader));
    await loader.close();
    await expect(loader.batchAt(0, 0)).rejects.toMatchObject({ code: 'ERR_DISPOSED' });
  });

  it('passes a per-sample generator and index to a transform function; drops the last batch on request', async () => {
    const calls: number[] = [];
    const loader = new BatchLoader(ds, {
      batchSize: 3, size: S, seed: 9, dropLast: true, workers: 0,
      transform: (rng, index) => { calls.push(index); return { augment: rng.chance(0.5) ? 'train' : 'test' }; },
    });
    expect(loader.batchesPerEpoch()).toBe(2);
    const batches = await collect(loader.epoch(0));
    expect(batches.length).toBe(2);
    expect(calls.sort()).toEqual(batches.flatMap((b) => b.indices).sort());
    await loader.close();
  });

  it('prepares `prefetch` batches ahead of the one being consumed', async () => {
    // The transform function runs when a batch is started, so counting its calls shows how far ahead
    // the loader works while the consumer holds batch 0 (no timing involved).
    for (const prefetch of [0, 2]) {
      let started = 0;
      const loader = new BatchLoader(ds, {
        batchSize: 2, size: S, seed: 3, prefetch, workers: 0,
        transform: () => { started++; return { augment: 'test' }; },
      });
      const it = loader.epoch(0)[Symbol.asyncIterator]();
      await it.next();
      expect(started).toBe(2 * (1 + prefetch));
      await it.return?.();
      await loader.close();
    }
  });

  it('rejects an unreadable image with ERR_BAD_IMAGE naming the file and stays usable', async () => {
    const bad = await DomainDataset.fromFolder(root, { domain: 'bad' });
    const loader = new BatchLoader(bad, { batchSize: 1, size: S, seed: 0, shuffle: false, transform: { augment: 'test' }, workers: 0 });
    const err = await loader.batchAt(0, 1).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_BAD_IMAGE' });
    expect((err as Error).message).toContain(path.join('bad', 'a', '1.png'));
    await expect(collect(loader.epoch(0))).rejects.toMatchObject({ code: 'ERR_BAD_IMAGE' });
    expect((await loader.batchAt(0, 2)).labels[0]).toBe(0);
    await loader.close();
  });

  it('refuses empty datasets and bad options', () => {
    const empty = DomainDataset.fromSamples([], ['a']);
    expect(() => new BatchLoader(empty, { batchSize: 2, size: S, seed: 0, transform: { augment: 'test' } }))
      .toThrow(expect.objectContaining({ code: 'ERR_EMPTY_INPUT' }));
    expect(() => new BatchLoader(ds, { batchSize: 8, size: S, seed: 0, dropLast: true, transform: { augment: 'test' } }))
      .toThrow(expect.objectContaining({ code: 'ERR_EMPTY_INPUT' }));
    expect(() => new BatchLoader(ds, { batchSize: 0, size: S, seed: 0, transform: { augment: 'test' } }))
      .toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    const loader = new BatchLoader(ds, { batchSize: 2, size: S, seed: 0, transform: { augment: 'test' }, workers: 0 });
    return expect(loader.batchAt(0, 4)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });
});

/**
 * The worker-thread path only exists for compiled JavaScript, so this compiles the loader's modules to a
 * temporary folder and runs them in a separate Node process with 2 workers and with none.
 */
describe('BatchLoader with worker threads (compiled)', () => {
  it('gives the same batches as the in-thread path and reports bad images', async () => {
    const out = await mkdtemp(path.join(tmpdir(), 'ipclip-loader-js-'));
    try {
      await transpileClosure(['data/loader.ts', 'data/dataset.ts'], out);
      await writeFile(path.join(out, 'package.json'), '{"type":"module"}');
      await symlink(path.join(repo, 'node_modules'), path.join(out, 'node_modules'));
      await writeFile(path.join(out, 'run.mjs'), `
        import { DomainDataset } from './data/dataset.js';
        import { BatchLoader } from './data/loader.js';
        const [root, size] = [process.argv[2], Number(process.argv[3])];
        const ds = await DomainDataset.fromFolder(root, { domain: 'dom' });
        const result = {};
        for (const workers of [2, 0]) {
          const loader = new BatchLoader(ds, { batchSize: 2, size, seed: 42, transform: { augment: 'train' }, workers, prefetch: 2 });
          const batches = [];
          for await (const b of loader.epoch(1)) batches.push({ indices: b.indices, data: Buffer.from(b.images.data.buffer).toString('base64') });
          result['w' + workers] = { threads: loader.threads, batches };
          await loader.close();
        }
        const bad = await DomainDataset.fromFolder(root, { domain: 'bad' });
        const loader = new BatchLoader(bad, { batchSize: 3, size, seed: 0, transform: { augment: 'test' }, workers: 2 });
        result.bad = await loader.batchAt(0, 0).then(() => null, (e) => ({ code: e.code, message: e.message }));
        result.afterBad = (await new BatchLoader(bad, { batchSize: 1, size, seed: 0, shuffle: false, transform: { augment: 'test' }, workers: 2 }).batchAt(0, 0)).indices;
        await loader.close();
        // A worker that cannot start (simulated: the script now throws in workers; this thread keeps its
        // already-loaded copy) must not lose work: the loader falls back to this thread.
        const { readFileSync, writeFileSync } = await import('node:fs');
        const workerFile = new URL('./data/loader-worker.js', import.meta.url);
        writeFileSync(workerFile, "import { workerData } from 'node:worker_threads';\\n" +
          "if (workerData && workerData.ipclipLoaderWorker) throw new Error('cannot start');\\n" + readFileSync(workerFile, 'utf8'));
        const broken = new BatchLoader(ds, { batchSize: 2, size, seed: 42, transform: { augment: 'train' }, workers: 2, prefetch: 2 });
        const batches = [];
        for await (const b of broken.epoch(1)) batches.push({ indices: b.indices, data: Buffer.from(b.images.data.buffer).toString('base64') });
        result.fallback = { threads: broken.threads, batches };
        await broken.close();
        console.log(JSON.stringify(result));
      `);
      // The compiled copy resizes through the addon, which it would look for beside itself: point it at ours.
      const env = { ...process.env, IPCLIP_ADDON: process.env.IPCLIP_ADDON ?? path.join(repo, 'build', 'Release', 'ipclip.node') };
      const { stdout } = await promisify(execFile)(process.execPath, [path.join(out, 'run.mjs'), root, String(S)], { timeout: 60_000, env });
      const result = JSON.parse(stdout);
      expect(result.w2.threads).toBe(2);
      expect(result.w0.threads).toBe(0);
      expect(result.w2.batches).toEqual(result.w0.batches);
      // And the same as the TypeScript sources give here (in-thread under vitest).
      const here = new BatchLoader(ds, { batchSize: 2, size: S, seed: 42, transform: { augment: 'train' }, workers: 2 });
      expect(here.threads).toBe(0);
      const mine = (await collect(here.epoch(1))).map((b) => ({ indices: b.indices, data: Buffer.from(b.images.data.buffer).toString('base64') }));
      expect(result.w2.batches).toEqual(mine);
      expect(result.bad.code).toBe('ERR_BAD_IMAGE');
      expect(result.bad.message).toContain(path.join('bad', 'a', '1.png'));
      expect(result.afterBad).toEqual([0]);
      expect(result.fallback.threads).toBe(0);
      expect(result.fallback.batches).toEqual(mine);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});

/** Transpiles `entries` and every `./x.js` module they import (from lib/) into `outDir`, without type checks. */
async function transpileClosure(entries: string[], outDir: string): Promise<void> {
  const todo = [...entries];
  const done = new Set<string>();
  while (todo.length > 0) {
    const file = todo.pop()!;
    if (done.has(file)) continue;
    done.add(file);
    const source = await readFile(path.join(repo, 'lib', file), 'utf8');
    for (const m of source.matchAll(/from\s+'(\.{1,2}\/[\w\/.-]+)\.js'/g)) todo.push(path.posix.join(path.posix.dirname(file), `${m[1]}.ts`));
    await mkdir(path.dirname(path.join(outDir, file)), { recursive: true });
    const js = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    }).outputText;
    await writeFile(path.join(outDir, file.replace(/\.ts$/, '.js')), js);
  }
}
