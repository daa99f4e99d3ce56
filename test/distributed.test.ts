// Data-parallel training (lib/ipclip/trainer/distributed.ts, native/ipclip/distributed.cpp): 2 CPU processes
// with Gloo over 127.0.0.1, 1 thread each, against one process with the global batch; a rank killed mid-run;
// a rank that disagrees on the run. Each job spawns test/helpers/dist-worker.mjs once per rank (it runs dist/).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Clip } from '../lib/clip/clip.js';
import { DomainDataset } from '../lib/data/dataset.js';
import { IpclipError } from '../lib/core/errors.js';
import { runProtectionBenchmark, type BenchmarkResult } from '../lib/ipclip/benchmark.js';
import { readCheckpoint } from '../lib/ipclip/checkpoint.js';
import { PromptModel } from '../lib/ipclip/prompt-model.js';
import { IPTrainer, type TrainerOptions } from '../lib/ipclip/trainer/trainer.js';
import { distributedFromEnv, resolveDistributed, shardRange } from '../lib/ipclip/trainer/distributed.js';
import { loadNative } from '../lib/native/load.js';
import { ensureDist } from './helpers/dist.js';
import { EXACT, relToScale } from './helpers/exactness.js';
import { CLIP_TINY, HAVE_SHARED, VOCAB_PATH } from './helpers/fixtures.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const WORKER = join(ROOT, 'test', 'helpers', 'dist-worker.mjs');
const CLASSES = ['blue', 'green', 'red'];
const COLOURS: Record<string, [number, number, number]> = { red: [220, 30, 30], green: [30, 200, 40], blue: [40, 50, 230] };

/** The backends of the loaded addon (null: an addon built before data parallelism, or none at all). */
const backends = (() => {
  try {
    const b = loadNative().distributedBackends;
    return Array.isArray(b) ? b : null;
  } catch {
    return null;
  }
})();
const haveGloo = backends?.includes('gloo') === true;
/** Whether Debian's python3 can import torch (its torch.distributed.run is the torchrun the CLI test launches). */
const PYTHON = '/usr/bin/python3';
const haveTorchrun = existsSync(PYTHON) && spawnSync(PYTHON, ['-c', 'import torch.distributed.run'], { stdio: 'ignore', timeout: 60_000 }).status === 0;

describe('sharding rule and options', () => {
  it('shardRange splits n items into contiguous slices in rank order, sizes differing by at most one', () => {
    expect([0, 1].map((r) => shardRange(4, r, 2))).toEqual([[0, 2], [2, 4]]);
    expect([0, 1, 2].map((r) => shardRange(7, r, 3))).toEqual([[0, 3], [3, 5], [5, 7]]);
    expect([0, 1].map((r) => shardRange(1, r, 2))).toEqual([[0, 1], [1, 1]]);
  });

  it("reads torchrun's variables; a world of 1 or no WORLD_SIZE is a single process; bad values are refused", () => {
    expect(distributedFromEnv({})).toBeNull();
    expect(distributedFromEnv({ WORLD_SIZE: '1', RANK: '0' })).toBeNull();
    expect(distributedFromEnv({ WORLD_SIZE: '4', RANK: '3', LOCAL_RANK: '1', MASTER_ADDR: 'node7', MASTER_PORT: '1234' })).toEqual({
      backend: 'gloo', rank: 3, worldSize: 4, localRank: 1, masterAddr: 'node7', masterPort: 1234, timeoutMs: 300_000,
      agentStore: false, attempt: 0,
    });
    // What torchrun 1.13's agent adds: it serves the store itself, and counts its restarts of the worker group.
    expect(distributedFromEnv({ WORLD_SIZE: '2', RANK: '0', TORCHELASTIC_USE_AGENT_STORE: 'True', TORCHELASTIC_RESTART_COUNT: '2' }))
      .toMatchObject({ rank: 0, agentStore: true, attempt: 2 });
    expect(distributedFromEnv({ WORLD_SIZE: '2', RANK: '0', TORCHELASTIC_USE_AGENT_STORE: 'False' })).toMatchObject({ agentStore: false });
    expect(() => resolveDistributed({ rank: 0, worldSize: 2, attempt: -1 })).toThrow(/attempt/);
    expect(() => distributedFromEnv({ WORLD_SIZE: '2', RANK: 'x' })).toThrow(IpclipError);
    expect(() => resolveDistributed({ rank: 2, worldSize: 2 })).toThrow(/rank/);
    expect(() => resolveDistributed({ rank: 0, worldSize: 2, backend: 'mpi' as 'gloo' })).toThrow(/backend/);
  });

  it.skipIf(!HAVE_SHARED || backends === null)('shareFeatures needs an attached process group and a stream name (ERR_INVALID_ARGUMENT)', async () => {
    const clip = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, device: 'cpu' });
    try {
      using prompt = await PromptModel.create(clip, CLASSES, { seed: 1 });
      const share = (stream: string) => prompt.exclusive('test', (native) => native.shareFeatures(stream as 'authorized')).then(() => null, (e: unknown) => e);
      const alone = await share('authorized');
      expect((alone as IpclipError).code).toBe('ERR_INVALID_ARGUMENT');
      expect((alone as Error).message).toMatch(/attached process group/);
      const bad = await share('both');
      expect((bad as IpclipError).code).toBe('ERR_INVALID_ARGUMENT');
      expect((bad as Error).message).toMatch(/'authorized' or 'unauthorized'/);
    } finally {
      clip.dispose();
    }
  });

  it.skipIf(!haveGloo)('a rendezvous that no other rank joins fails with ERR_DISTRIBUTED after timeoutMs, off the event loop', async () => {
    const addon = loadNative();
    let ticks = 0;
    const timer = setInterval(() => { ticks++; }, 50);
    const err = await addon.createProcessGroup({ backend: 'gloo', rank: 0, worldSize: 2, masterAddr: '127.0.0.1', masterPort: await freePort(), timeoutMs: 1500 })
      .then(() => null, (e: unknown) => e);
    clearInterval(timer);
    expect((err as { code?: string }).code).toBe('ERR_DISTRIBUTED');
    expect(String((err as Error).message)).toMatch(/rank 0 of 2: could not join the job at 127\.0\.0\.1:\d+ within 1500 ms/);
    expect(ticks).toBeGreaterThan(5); // the event loop kept turning while the rendezvous waited
  });

  it.skipIf(backends === null || backends.includes('nccl'))('asking for NCCL on a build without it is ERR_DEVICE, before anything is joined', async () => {
    const addon = loadNative();
    const err = await Promise.resolve()
      .then(() => addon.createProcessGroup({ backend: 'nccl', rank: 0, worldSize: 2, masterAddr: '127.0.0.1', masterPort: 1, timeoutMs: 1000 }))
      .then(() => null, (e: unknown) => e);
    expect((err as { code?: string }).code).toBe('ERR_DEVICE');
    expect(String((err as Error).message)).toMatch(/NCCL/);
  });
});

function runCli(bin: string, args: string[], command = process.execPath): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, [bin, ...args], { cwd: ROOT });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
    child.on('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Solid class colours with a domain texture (dots or stripes), `perClass` images of growing size per class. */
async function makeDomains(root: string, perClass: number): Promise<void> {
  for (const domain of ['dots', 'stripes']) {
    for (const cls of CLASSES) {
      const dir = join(root, domain, cls);
      await mkdir(dir, { recursive: true });
      for (let i = 0; i < perClass; i++) {
        const size = 36 + 4 * i;
        const px = Buffer.alloc(size * size * 3);
        const [r, g, b] = COLOURS[cls]!;
        for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) {
          const shade = 0.75 + 0.25 * ((x + y + 5 * i) % 7) / 6;
          let c = [r * shade, g * shade, b * shade];
          if (domain === 'dots' && x % 4 === 0 && y % 4 === 0) c = [10, 10, 10];
          if (domain === 'stripes' && y % 3 === 0) c = [250, 250, 250];
          px.set(c.map(Math.round), (y * size + x) * 3);
        }
        await sharp(px, { raw: { width: size, height: size, channels: 3 } }).png().toFile(join(dir, `${i}.png`));
      }
    }
  }
}

interface RankResult { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }
interface RunOutput { state: Record<string, number[]>; resumedFrom: number | null; iterations: number; history: { terms: Record<string, number> }[] }


describe.skipIf(!HAVE_SHARED || !haveGloo)('data parallelism: 2 CPU ranks (Gloo over 127.0.0.1, 1 thread each)', () => {
  let root: string;
  let data: string;
  let data15: string;
  let dots: DomainDataset;
  let stripes: DomainDataset;

  beforeAll(async () => {
    ensureDist(ROOT);
    root = mkdtempSync(join(tmpdir(), 'ipclip-dist-'));
    data = join(root, 'data');
    await makeDomains(data, 4); // 12 images per domain
    data15 = join(root, 'data15');
    await makeDomains(data15, 5);
    dots = await DomainDataset.fromFolder(data, { domain: 'dots' });
    stripes = await DomainDataset.fromFolder(data, { domain: 'stripes' });
  });
  afterAll(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });

  /** Runs `runs` on 2 ranks (one process each); resolves when both have exited (killed after 90 s: a hang). */
  async function job(name: string, dtype: 'float32' | 'float64', runs: object[],
    opts: { timeoutMs?: number; killRestOnExit?: boolean } = {}): Promise<{ ranks: RankResult[]; out: string }> {
    const out = join(root, name);
    await mkdir(out, { recursive: true });
    const port = await freePort();
    const children: ReturnType<typeof spawn>[] = [];
    const ranks = await Promise.all([0, 1].map((rank) => new Promise<RankResult>((resolve) => {
      const spec = { rank, worldSize: 2, port, timeoutMs: opts.timeoutMs ?? 20_000, clip: CLIP_TINY.openaiSafetensors, vocab: VOCAB_PATH, data, dtype, out, runs };
      const child = spawn(process.execPath, [WORKER, JSON.stringify(spec)], { cwd: ROOT, env: { ...process.env, OMP_NUM_THREADS: '1' } });
      let stdout = '', stderr = '';
      child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
      child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
      children.push(child);
      const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        if (opts.killRestOnExit) for (const c of children) if (c !== child && c.exitCode === null) c.kill('SIGKILL');
        resolve({ code, signal, stdout, stderr });
      });
    })));
    return { ranks, out };
  }
  const read = (out: string, name: string, rank: number): RunOutput => JSON.parse(readFileSync(join(out, `${name}-rank${rank}.json`), 'utf8')) as RunOutput;

  /** The same run in this process, one rank with the global batch. */
  async function single(clip: Clip, opts: TrainerOptions, sets = { dots, stripes }): Promise<Record<string, number[]>> {
    using prompt = await PromptModel.create(clip, CLASSES, { seed: 1 });
    await new IPTrainer(prompt, opts).fit(opts.scenario === 'target-specified' ? { authorized: sets.dots, unauthorized: sets.stripes } : { authorized: sets.dots });
    return Object.fromEntries(Object.entries(await prompt.state()).map(([k, t]) => [k, Array.from(t.data)]));
  }

  const PARAMS = (k: string) => !k.includes('feat_bank') && !k.includes('feat_conf');
  /** relToScale, or exact equality for a tensor that is zero on both sides (an untrained zero bias). */
  const rel = (a: number[], b: number[], what: string) =>
    a.every((x) => x === 0) && b.every((x) => x === 0) ? 0 : relToScale(a, b, what);
  // A 2-rank float32 run without interruption (made in the first job): the fault test's expectation.
  const CLEAN = { name: 'clean', dtype: 'float32', scenario: 'reference', epochs: 2, batchSize: 2, lr: 0.01, seed: 5 };
  let cleanOut = '';

  it('2 ranks × batch 2 end with the parameters of one process × batch 4 (reference, float64, 1e-10 of scale)', async () => {
    // CE_A is a mean over samples, so the batch-size-weighted average of the ranks' gradients is the global
    // batch's gradient up to summation order; float64 makes that order invisible at 1e-10. 2 epochs × 3 steps.
    const ref = { scenario: 'reference' as const, epochs: 2, lr: 0.01, seed: 3 };
    // target-specified: the banks are built from both ranks' slices (all-gathered), and the enhancement branch's
    // BatchNorm normalises with the global batch's statistics (all-reduced), so it is exact too.
    const ts = { scenario: 'target-specified' as const, epochs: 1, lr: 0.01, seed: 3 };
    // featureCache: each rank encodes its half of each stream and the halves are all-gathered; the cached runs
    // ('refc', and 'ts1c', which reads the unauthorized stream's cache too) must be the cached single process's.
    const cached = { featureCache: true };
    const { ranks, out } = await job('exact', 'float64', [{ name: 'ref', ...ref, batchSize: 2 }, { name: 'ts', ...ts, batchSize: 2 }, { name: 'tsE', ...ts, trainEnhancer: true, batchSize: 2 }, { name: 'tsOdd', ...ts, trainEnhancer: true, batchSize: 5, data: data15 }, { name: 'ts1', ...ts, batchSize: 6 },
      { name: 'refc', ...ref, ...cached, batchSize: 2 }, { name: 'ts1c', ...ts, ...cached, batchSize: 6 }, CLEAN]);
    for (const r of ranks) expect(r.code, r.stdout + r.stderr).toBe(0);
    cleanOut = out;
    const clip = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, device: 'cpu', dtype: 'float64' });
    try {
      const one = await single(clip, { ...ref, batchSize: 4 });
      const [r0, r1] = [read(out, 'ref', 0), read(out, 'ref', 1)];
      expect(r0.iterations).toBe(6);
      // Both ranks apply the same all-reduced update: identical bytes.
      expect(r1.state).toEqual(r0.state);
      for (const k of Object.keys(one).filter(PARAMS)) expect(rel(r0.state[k]!, one[k]!, k), k).toBeLessThan(EXACT);
      // The prompt moved: the comparison is not between two untouched initialisations.
      using init = await PromptModel.create(clip, CLASSES, { seed: 1 });
      const start = await init.state();
      expect(Object.keys(one).filter(PARAMS).some((k) => rel(Array.from(start[k]!.data), one[k]!, k) > 1e-3)).toBe(true);
      // The reported terms are the global batch's.
      const oneTs = await single(clip, { ...ts, batchSize: 4 });
      const t0 = read(out, 'ts', 0);
      for (const k of ['source_feat_bank', 'target_feat_bank', 'source_feat_conf', 'target_feat_conf']) {
        expect(rel(t0.state[k]!, oneTs[k]!, k), k).toBeLessThan(EXACT);
      }
      expect(read(out, 'ts', 1).state).toEqual(t0.state);
      // 3 steps of 2 × 2 against 1 × 4: each rank's BatchNorm holds 2 of the 4 rows, the case where per-rank
      // statistics would be furthest from the global ones (they left parameters 8.5e-2 of scale apart).
      for (const k of Object.keys(oneTs).filter(PARAMS)) expect(rel(t0.state[k]!, oneTs[k]!, k), k).toBeLessThan(EXACT);
      // With the enhancer trained too, its BatchNorm's own γ and β gradients are the global batch's as well.
      const oneTsE = await single(clip, { ...ts, trainEnhancer: true, batchSize: 4 });
      const tE = read(out, 'tsE', 0);
      expect(Object.keys(oneTsE).filter((k) => k.startsWith('attn_block') && k.includes('.1.weight')).length).toBe(1);
      for (const k of Object.keys(oneTsE).filter(PARAMS)) expect(rel(tE.state[k]!, oneTsE[k]!, k), k).toBeLessThan(EXACT);
      // and the enhancer moved (its parameters are not the untouched initialisation on both sides).
      expect(Object.keys(oneTsE).filter((k) => k.startsWith('attn_block')).some((k) => rel(Array.from(start[k]!.data), oneTsE[k]!, k) > 1e-3)).toBe(true);
      // Slices of unequal size: 15 images per domain in global batches of 10 end with a batch of 5, 3 rows on
      // rank 0 and 2 on rank 1; each rank's gradients then weigh by its share, its BatchNorm's backward too.
      const sets15 = { dots: await DomainDataset.fromFolder(data15, { domain: 'dots' }), stripes: await DomainDataset.fromFolder(data15, { domain: 'stripes' }) };
      const oneOdd = await single(clip, { ...ts, trainEnhancer: true, batchSize: 10 }, sets15);
      const tOdd = read(out, 'tsOdd', 0);
      expect(tOdd.iterations).toBe(2);
      for (const k of Object.keys(oneOdd).filter(PARAMS)) expect(rel(tOdd.state[k]!, oneOdd[k]!, k), k).toBeLessThan(EXACT);
      // One step (12 images = one global batch of 2 × 6) from the same parameters and banks: every term, the two
      // enhancement terms included, is the single process's.
      const oneStep = await (async () => {
        using prompt = await PromptModel.create(clip, CLASSES, { seed: 1 });
        return (await new IPTrainer(prompt, { ...ts, batchSize: 12 }).fit({ authorized: dots, unauthorized: stripes })).history[0]!.terms;
      })();
      const ranksStep = read(out, 'ts1', 0).history[0]!.terms;
      expect(read(out, 'ts1', 0).iterations).toBe(1);
      for (const k of ['ceA', 'ceU', 'mse', 'kl', 'entropy', 'ceSelf', 'ceCross']) {
        expect(Math.abs(ranksStep[k]! - oneStep[k]!) / Math.abs(oneStep[k]!), k).toBeLessThan(EXACT);
      }

      // The sharded feature cache: the same parameters as one process filling the whole cache itself.
      const oneCached = await single(clip, { ...ref, ...cached, batchSize: 4 });
      const c0 = read(out, 'refc', 0);
      expect(c0.iterations).toBe(6);
      expect(read(out, 'refc', 1).state).toEqual(c0.state);
      for (const k of Object.keys(oneCached).filter(PARAMS)) expect(rel(c0.state[k]!, oneCached[k]!, k), k).toBeLessThan(EXACT);
      // Cached features are the test transform's, not the random crops': a different run, so this compares something.
      expect(Object.keys(one).filter(PARAMS).some((k) => rel(oneCached[k]!, one[k]!, k) > 1e-6)).toBe(true);
      const oneCachedStep = await (async () => {
        using prompt = await PromptModel.create(clip, CLASSES, { seed: 1 });
        return (await new IPTrainer(prompt, { ...ts, ...cached, batchSize: 12 }).fit({ authorized: dots, unauthorized: stripes })).history[0]!.terms;
      })();
      const cachedStep = read(out, 'ts1c', 0).history[0]!.terms;
      for (const k of ['ceA', 'ceU', 'mse', 'kl', 'entropy', 'ceSelf', 'ceCross']) {
        expect(Math.abs(cachedStep[k]! - oneCachedStep[k]!) / Math.abs(oneCachedStep[k]!), `cached ${k}`).toBeLessThan(EXACT);
      }
    } finally {
      clip.dispose();
    }
  }, 240_000);

  it('a rank killed with SIGKILL makes the other fail with ERR_DISTRIBUTED; rerunning resumes on both and ends as an uninterrupted run', async () => {
    // 2 epochs × 3 steps of 2×2, a checkpoint every step; rank 1 dies in its progress callback of iteration 4.
    expect(cleanOut, 'the first test made the uninterrupted run').not.toBe('');
    const { name: _, dtype: __, ...settings } = CLEAN;
    const base = { ...settings, checkpointEvery: 1 };
    const dir = join(root, 'ckpt');
    const killed = await job('killed', 'float32', [{ name: 'run', ...base, checkpointDir: dir, byRank: { killAfter: [null, 4] } }]);
    expect(killed.ranks[1]!.signal).toBe('SIGKILL');
    expect(killed.ranks[0]!.code, killed.ranks[0]!.stdout + killed.ranks[0]!.stderr).toBe(3);
    expect(killed.ranks[0]!.stdout).toMatch(/FAILED ERR_DISTRIBUTED: rank 0 of 2: .* failed/);
    const resumed = await job('resumed', 'float32', [{ name: 'run', ...base, checkpointDir: dir }]);
    for (const r of resumed.ranks) expect(r.code, r.stdout + r.stderr).toBe(0);
    const [a, b] = [read(resumed.out, 'run', 0), read(resumed.out, 'run', 1)];
    // Rank 0 finds rank 1 gone at the stop check of iteration 4, before that iteration's checkpoint.
    expect(a.resumedFrom).toBe(3);
    expect(b.resumedFrom).toBe(a.resumedFrom);
    expect(a.state).toEqual(read(cleanOut, 'clean', 0).state);
    expect(b.state).toEqual(a.state);
    expect(a.history).toEqual(read(cleanOut, 'clean', 0).history);
  }, 240_000);

  const BIN = join(ROOT, 'bin', 'ipclip.js');
  const clipFlags = ['--clip', CLIP_TINY.openaiSafetensors, '--vocab', VOCAB_PATH];
  // 8 training images per domain: 2 steps of 2 × 2 per epoch; 4 test images per domain, 2 per rank.
  const trainFlags = (out: string) => ['--data', data, '--authorized', 'dots', '--scenario', 'reference', '--epochs', '1', '--batch-size', '2',
    '--split-sizes', '8/4', '--out', out, '--json', ...clipFlags];
  /** `ipclip <args>` as 2 local ranks of Debian's torch 1.13 torchrun. */
  const torchrun = async (args: string[]) =>
    // torch 1.13 spells the flags with underscores (torch 2 also takes --nproc-per-node, --no-python). Under
    // Python 3.11 its default --redirects 0 and --tee 0 parse to None (enum iteration skips a zero flag) and
    // the agent fails before starting a worker; a per-rank mapping parses: local rank 1's stdout, which is
    // empty, is teed through a log file.
    runCli('-m', ['torch.distributed.run', '--nproc_per_node', '2', '--no_python', '--master_port', String(await freePort()),
      '--redirects', '1:1', '--tee', '1:1', process.execPath, BIN, ...args], PYTHON);
  // The launcher's run (made by the first CLI test): what a run under torchrun must reproduce.
  let launched: { doc: unknown; out: string } | null = null;

  it('ipclip train --nproc-per-node 2: one job of 2 local ranks; the sharded evaluation equals ipclip eval in one process', async () => {
    const out = join(root, 'cli-run');
    const port = await freePort();
    const train = await runCli(BIN, ['train', '--nproc-per-node', '2', '--master-port', String(port), '--threads', '2', ...trainFlags(out)]);
    expect(train.code, train.stderr).toBe(0);
    expect(train.stderr).toMatch(/2 local ranks on 127\.0\.0\.1:\d+, 1 thread each/);
    const doc = JSON.parse(train.stdout) as { iterations: number; evaluation: { set: string; accuracy: number }[] };
    expect(doc.iterations).toBe(2);
    const evaluated = await runCli(BIN, ['eval', '--checkpoint', join(out, 'last.safetensors'), '--json', ...clipFlags]);
    expect(evaluated.code, evaluated.stderr).toBe(0);
    const rows = (JSON.parse(evaluated.stdout) as { sets: unknown[] }).sets;
    expect(rows.length).toBeGreaterThanOrEqual(2); // dots (authorized) and stripes
    expect(doc.evaluation).toEqual(rows);
    launched = { doc, out };
  }, 240_000);

  it.skipIf(!haveTorchrun)("torchrun (torch 1.13's torch.distributed.run, whose agent serves the store) runs the same job to the same result", async () => {
    expect(launched, 'the launcher test made the run to compare with').not.toBeNull();
    const out = join(root, 'torchrun-run');
    const run = await torchrun(['train', '--threads', '1', ...trainFlags(out)]);
    expect(run.code, run.stderr).toBe(0);
    // One JSON document: rank 1 prints nothing although torchrun gives every worker this stdout.
    const doc = JSON.parse(run.stdout) as Record<string, unknown>;
    const same = (d: Record<string, unknown>) => ({ ...d, checkpoint: undefined, prompt: undefined });
    expect(same(doc)).toEqual(same(launched!.doc as Record<string, unknown>));
    const [a, b] = await Promise.all([join(out, 'prompt.safetensors'), join(launched!.out, 'prompt.safetensors')].map((f) => readCheckpoint(f)));
    for (const k of Object.keys(b.state)) expect(Array.from(a.state[k]!.data), k).toEqual(Array.from(b.state[k]!.data));
  }, 240_000);

  // A benchmark small enough for 2 ranks: 6 training images per domain (trainFraction 0.5), one global batch of
  // 2 × 3 per step, two epochs, one seed; 6 test images per domain.
  const BENCH = { authorized: 'dots', unauthorized: 'stripes', others: ['stripes'], scenarios: ['target-specified' as const], seeds: [0], trainFraction: 0.5 };
  const BENCH_RECIPE = { epochs: 2, lr: 0.02 };
  /** A report without its timings and date (which differ between runs of the same job). */
  const timeless = (b: BenchmarkResult) => ({ ...b, seconds: 0, date: '', runs: b.runs.map((r) => ({ ...r, seconds: 0 })) });
  const TERMS = ['ceA', 'ceU', 'mse', 'kl', 'entropy', 'ceSelf', 'ceCross'] as const;
  interface BenchOut { result: BenchmarkResult; steps: { stage: string; iteration: number; terms: Record<(typeof TERMS)[number], number> }[] }

  it('the protection benchmark over 2 ranks (float64) scores as one process with the global batch; every rank gets the whole report', async () => {
    const { ranks, out } = await job('bench', 'float64', [{ name: 'bench', benchmark: { ...BENCH, recipe: { ...BENCH_RECIPE, batchSize: 3 } } }]);
    for (const r of ranks) expect(r.code, r.stdout + r.stderr).toBe(0);
    const [b0, b1] = [0, 1].map((r) => JSON.parse(readFileSync(join(out, `bench-rank${r}.json`), 'utf8')) as BenchOut);
    expect(timeless(b1!.result)).toEqual(timeless(b0!.result));
    const clip = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, device: 'cpu', dtype: 'float64' });
    try {
      const single = async (batchSize: number) => {
        const steps: BenchOut['steps'] = [];
        const result = await runProtectionBenchmark({
          clip, data, ...BENCH, recipe: { ...BENCH_RECIPE, batchSize },
          onProgress: (e) => { if (e.training) steps.push({ stage: e.stage, iteration: e.training.iteration, terms: e.training.terms }); },
        });
        return { result, steps };
      };
      const one = await single(6);
      const [mine, theirs] = [b0!.result.runs[0]!, one.result.runs[0]!];
      expect(Object.keys(mine.sets)).toEqual(['dots', 'stripes']);
      for (const [name, s] of Object.entries(theirs.sets)) {
        expect(mine.sets[name]!.n, name).toBe(6);
        expect(mine.sets[name]!.n, name).toBe(s.n);
        // Zero-shot CLIP, the reference and the protected prompt score alike (the protected run's enhancement
        // BatchNorm normalises with the global batch's statistics).
        expect(mine.sets[name]!.zeroShot, name).toBe(s.zeroShot);
        expect(mine.sets[name]!.reference, name).toBe(s.reference);
        expect(mine.sets[name]!.protected, name).toBe(s.protected);
      }
      expect(mine.metrics).toEqual(theirs.metrics);
      // Accuracies of 6 images are coarse; the steps are not: both trainings' 2 steps each, every loss term, to
      // 1e-10 (a rank training alone on its 3 images would make 4 steps of other losses).
      const stepsOf = (o: BenchOut, stage: string) => o.steps.filter((x) => x.stage === stage).map((x) => x.terms);
      for (const stage of ['reference', 'protected']) {
        const [a, b] = [stepsOf(b0!, stage), stepsOf(one, stage)];
        expect(a, stage).toHaveLength(2);
        expect(b, stage).toHaveLength(2);
        for (const [i, t] of a.entries()) {
          for (const k of TERMS) {
            if (b[i]![k] === 0) expect(t[k], `${stage} step ${i + 1} ${k}`).toBe(0); // a term the scenario does not use
            else expect(Math.abs(t[k] - b[i]![k]) / Math.abs(b[i]![k]), `${stage} step ${i + 1} ${k}`).toBeLessThan(EXACT);
          }
        }
      }
      expect(stepsOf(one, 'protected').some((t) => t.ceSelf !== 0 && t.ceU !== 0)).toBe(true);
      const alone = await single(3);
      expect(stepsOf(alone, 'reference')).toHaveLength(4);
    } finally {
      clip.dispose();
    }
  }, 240_000);

  const benchFlags = (out: string) => ['--data', data, '--authorized', 'dots', '--unauthorized', 'stripes', '--others', 'stripes',
    '--scenarios', 'target-specified', '--seeds', '0', '--train-fraction', '0.5', '--epochs', '2', '--lr', '0.02', '--batch-size', '3',
    '--dtype', 'float64', '--out', out, '--json', ...clipFlags];
  let benchLaunched: BenchmarkResult | null = null;

  it('ipclip benchmark --nproc-per-node 2: rank 0 alone prints and writes the report; its verdict is the exit code', async () => {
    const out = join(root, 'bench-cli');
    const run = await runCli(BIN, ['benchmark', '--nproc-per-node', '2', '--master-port', String(await freePort()), '--threads', '2', ...benchFlags(out)]);
    expect(run.stderr).toMatch(/ipclip benchmark: 2 local ranks on 127\.0\.0\.1:\d+, 1 thread each/);
    const doc = JSON.parse(run.stdout) as BenchmarkResult; // one document: rank 1 printed nothing
    expect(run.code, run.stderr).toBe(doc.pass ? 0 : 1);
    expect(JSON.parse(readFileSync(join(out, 'benchmark.json'), 'utf8'))).toEqual(doc);
    expect(doc.runs).toHaveLength(1);
    expect(doc.runs[0]!.sets.stripes!.n).toBe(6);
    // --dtype reached both ranks (the start-up digest compares dtypes: a rank in float32 would be ERR_MISMATCH).
    expect(doc.clip.dtype).toBe('float64');
    benchLaunched = doc;
  }, 240_000);

  it.skipIf(!haveTorchrun)("ipclip benchmark under torchrun gives the launcher's report", async () => {
    expect(benchLaunched, 'the launcher test made the report to compare with').not.toBeNull();
    const run = await torchrun(['benchmark', '--threads', '1', ...benchFlags(join(root, 'bench-torchrun'))]);
    const doc = JSON.parse(run.stdout) as BenchmarkResult;
    expect(run.code, run.stderr).toBe(doc.pass ? 0 : 1);
    expect(timeless(doc)).toEqual(timeless(benchLaunched!));
  }, 240_000);

  it('an abort on one rank stops every rank after the same step (ERR_ABORTED on both)', async () => {
    const { ranks } = await job('abort', 'float32', [{ name: 'run', scenario: 'reference', epochs: 2, batchSize: 2, byRank: { abortAfter: [null, 2] } }]);
    for (const r of ranks) {
      expect(r.code, r.stdout + r.stderr).toBe(3);
      expect(r.stdout).toMatch(/FAILED ERR_ABORTED: training stopped on request after iteration 2 of 6/);
    }
  }, 120_000);

  it('a rank that hangs (SIGSTOP) makes the other fail with ERR_DISTRIBUTED after timeoutMs', async () => {
    const { ranks } = await job('hang', 'float32', [{ name: 'run', scenario: 'reference', epochs: 2, batchSize: 2, byRank: { stopAfter: [null, 2] } }],
      { timeoutMs: 3000, killRestOnExit: true });
    expect(ranks[0]!.code, ranks[0]!.stdout + ranks[0]!.stderr).toBe(3);
    expect(ranks[0]!.stdout).toMatch(/FAILED ERR_DISTRIBUTED: rank 0 of 2: .* failed: a peer process exited or did not answer within 3000 ms/);
    expect(ranks[1]!.signal).toBe('SIGKILL'); // stopped, then killed by this test once rank 0 had given up
  }, 120_000);

  it("scripts/nccl-check.mjs (the GPU check's NCCL step, run here on gloo and the CPU) passes: a 1-rank group's fit is the plain fit", async () => {
    const child = spawn(process.execPath, [join(ROOT, 'scripts', 'nccl-check.mjs'), '--backend', 'gloo', '--device', 'cpu', '--data', join(root, 'synth')],
      { cwd: ROOT, env: { ...process.env, OMP_NUM_THREADS: '1' } });
    let output = '';
    child.stdout.on('data', (d: Buffer) => { output += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { output += d.toString(); });
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code, output).toBe(0);
    expect(output).toMatch(/through a 1-rank gloo group vs none: parameters \S+ of scale apart/);
    expect(output).toContain('nccl-check: done');
  }, 120_000);

  it('ranks started with different seeds are refused at start-up with ERR_MISMATCH', async () => {
    const { ranks } = await job('mismatch', 'float32', [{ name: 'run', scenario: 'reference', epochs: 1, batchSize: 2, byRank: { seed: [1, 2] } }]);
    for (const r of ranks) {
      expect(r.code, r.stdout + r.stderr).toBe(3);
      expect(r.stdout).toMatch(/FAILED ERR_MISMATCH: data-parallel ranks 0 and 1 differ in seed/);
    }
  }, 120_000);
});
