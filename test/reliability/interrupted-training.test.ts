// Training that is interrupted loses nothing: `ipclip train` (node bin/ipclip.js on the compiled dist/, as users
// run it) killed with SIGKILL at seeded random moments (at least 10 times) and resumed each time with the same
// command ends with exactly the parameters of an uninterrupted run, and the checkpoint on disk after every kill
// parses and validates. A full disk gives ERR_IO and keeps the previous checkpoint; a non-finite loss skips the
// update and is counted in the checkpoint.
//
// Kills are timed from what the child does, not from the clock alone: its start-up line on stderr, and the
// checkpoint writes it makes in --out (watched: a temporary file appears, then is renamed onto
// last.safetensors). Random delays are fractions of the same phases measured on the uninterrupted run, so they
// land inside a run on a fast or a loaded machine.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, watch } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCheckpoint, writeCheckpoint } from '../../lib/ipclip/checkpoint.js';
import { Clip } from '../../lib/clip/clip.js';
import { PromptModel, isPromptParameter } from '../../lib/ipclip/prompt-model.js';
import { preprocess } from '../../lib/image/preprocess.js';
import { Rng } from '../../lib/core/rng.js';
import type { Tensor, FloatTensor } from '../../lib/core/tensor.js';
import { CHECKPOINT_FILE, IPTrainer } from '../../lib/ipclip/trainer/trainer.js';
import { CLIP_TINY, HAVE_SHARED, VOCAB_PATH } from '../helpers/fixtures.js';
import { codeOf, ensureDist } from './helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = join(ROOT, 'bin', 'ipclip.js');
const DOMAIN = 'photo';
const CLASSES = ['blue', 'green', 'red'];
const COLOURS: Record<string, [number, number, number]> = { red: [220, 30, 30], green: [30, 200, 40], blue: [40, 50, 230] };
const PER_CLASS = 5; // 15 images: 12 train (batch 4: 3 iterations per epoch), 3 test (unused: --skip-eval)
const EPOCHS = 12;
const TOTAL = 3 * EPOCHS; // 36 iterations, a checkpoint after each
const KILLS = 10;

async function makeImages(dir: string): Promise<void> {
  for (const cls of CLASSES) {
    mkdirSync(join(dir, cls), { recursive: true });
    for (let i = 0; i < PER_CLASS; i++) {
      const size = 36 + 4 * i;
      const px = Buffer.alloc(size * size * 3);
      for (let p = 0; p < size * size; p++) {
        const shade = 0.7 + 0.3 * (((p % size) + Math.floor(p / size) + 5 * i) % 7) / 6;
        px.set(COLOURS[cls]!.map((v) => Math.round(v * shade)), p * 3);
      }
      await sharp(px, { raw: { width: size, height: size, channels: 3 } }).png().toFile(join(dir, cls, `${i}.png`));
    }
  }
}

/** The `ipclip train` command of every run: the killed ones, their resumptions and the reference. */
function trainArgs(data: string, out: string): string[] {
  return [BIN, 'train', '--clip', CLIP_TINY.openaiSafetensors, '--vocab', VOCAB_PATH, '--threads', '2',
    '--data', data, '--authorized', DOMAIN, '--scenario', 'ownership', '--split-sizes', '12/3',
    '--epochs', String(EPOCHS), '--batch-size', '4', '--seed', '11', '--out', out, '--checkpoint-every', '1',
    '--skip-eval', '--json'];
}

/**
 * When to SIGKILL, counted from this run's own events: `startup`: `ms` after the line saying it starts training
 * (banks being built, or resuming); `between`: `ms` after its `n`-th checkpoint was renamed into place;
 * `write`: the moment its `n`-th checkpoint write opens the temporary file.
 */
type Kill = { kind: 'startup'; ms: number } | { kind: 'between'; n: number; ms: number } | { kind: 'write'; n: number };

/** Milliseconds from spawn: the start-up line, each temporary file seen, each checkpoint renamed into place. */
interface Events { startLine: number | null; writes: number[]; commits: number[] }

/** `leftTemp`: this run left a temporary checkpoint file behind (it was killed in the middle of a write). */
interface RunResult { signal: NodeJS.Signals | null; stdout: string; events: Events; leftTemp: boolean }

const isTemp = (f: string) => f.startsWith(`.${CHECKPOINT_FILE}.`) && f.endsWith('.tmp');

/** Runs `ipclip train` into `out`, killing it as `kill` says; rejects if it fails any other way. */
function runTrain(data: string, out: string, kill?: Kill): Promise<RunResult> {
  mkdirSync(out, { recursive: true }); // watched from the start (the CLI accepts an existing, empty --out)
  const tempBefore = new Set(readdirSync(out).filter(isTemp)); // left by earlier kills
  return new Promise((done, fail) => {
    const t0 = Date.now();
    const ms = () => Date.now() - t0;
    const events: Events = { startLine: null, writes: [], commits: [] };
    const seen = new Set<string>();
    let timer: NodeJS.Timeout | null = null;
    let child: ChildProcess | null = null;
    const killNow = () => { child?.kill('SIGKILL'); };
    const arm = (delay: number) => { timer ??= setTimeout(killNow, delay); };
    const watcher = watch(out, (type, name) => {
      if (name === null || type !== 'rename') return;
      if (isTemp(name) && !seen.has(name)) {
        seen.add(name);
        events.writes.push(ms());
        if (kill?.kind === 'write' && events.writes.length === kill.n) killNow();
      } else if (name === CHECKPOINT_FILE) {
        // The temporary file renamed onto last.safetensors: one event per committed checkpoint.
        events.commits.push(ms());
        if (kill?.kind === 'between' && events.commits.length === kill.n) arm(kill.ms);
      }
    });
    child = spawn(process.execPath, trainArgs(data, out), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (events.startLine === null && /^(building the feature banks|resuming from )/m.test(stderr)) {
        events.startLine = ms();
        if (kill?.kind === 'startup') arm(kill.ms);
      }
    });
    child.on('error', fail);
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      watcher.close();
      const leftTemp = readdirSync(out).some((f) => isTemp(f) && !tempBefore.has(f));
      if (code !== 0 && signal !== 'SIGKILL') fail(new Error(`ipclip train failed (${code ?? signal}): ${stderr.slice(-2000)}`));
      else done({ signal, stdout, events, leftTemp });
    });
  });
}

function expectSameTensors(a: Record<string, FloatTensor>, b: Record<string, FloatTensor>): void {
  expect(Object.keys(a).sort()).toEqual(Object.keys(b).sort());
  for (const [name, t] of Object.entries(a)) {
    expect(b[name]!.shape, name).toEqual(t.shape);
    const x = t.data as Float32Array;
    const y = b[name]!.data as Float32Array;
    let same = x.length === y.length;
    for (let i = 0; same && i < x.length; i++) same = Object.is(x[i], y[i]);
    expect(same, `tensor ${name} differs`).toBe(true);
  }
}

describe.skipIf(!HAVE_SHARED)('interrupted training', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'ipclip-interrupt-'));
  const data = join(tmp, 'data');
  let clip: Clip;

  beforeAll(async () => {
    ensureDist(ROOT);
    await makeImages(join(data, DOMAIN));
    clip = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH });
  }, 180_000);
  afterAll(() => {
    clip?.dispose();
    rmSync(tmp, { recursive: true, force: true });
  });

  it(`ipclip train SIGKILLed at ${KILLS}+ seeded random moments, resumed each time: the final parameters equal an uninterrupted run's`, async () => {
    const reference = join(tmp, 'reference');
    const ref = await runTrain(data, reference);
    const refJson = JSON.parse(ref.stdout) as { iterations: number; resumedFrom: number | null; skippedUpdates: number };
    expect([refJson.iterations, refJson.resumedFrom]).toEqual([TOTAL, null]);
    // One commit after the banks, then one per iteration.
    expect(ref.events.commits.length).toBe(TOTAL + 1);
    // The phases of an uninterrupted run, to scale the random delays: start-up line → first checkpoint (banks),
    // and one iteration (step + checkpoint write).
    const banksMs = ref.events.commits[0]! - ref.events.startLine!;
    const perItMs = (ref.events.commits.at(-1)! - ref.events.commits[0]!) / TOTAL;
    console.log(`uninterrupted run: banks and first checkpoint ${banksMs} ms, ${perItMs.toFixed(0)} ms per iteration`);
    const rng = new Rng(2025);
    const dir = join(tmp, 'killed');
    const points: { at: string; iteration: number | null; midWrite: boolean }[] = [];
    let last: RunResult | null = null;
    for (let run = 0; last === null || last.signal !== null; run++) {
      expect(run, 'too many runs').toBeLessThan(3 * KILLS);
      let kill: Kill | undefined;
      if (points.length < KILLS) {
        // Kinds in turn (start-up, between two checkpoints, at a write), the rest drawn from the seeded Rng; each
        // kill lets at most a few iterations through, so 10 kills fit in the 36 iterations.
        const kind = (['startup', 'between', 'write'] as const)[points.length % 3]!;
        kill = kind === 'startup' ? { kind, ms: Math.round(rng.uniform(0, 1.2) * banksMs) }
          : kind === 'between' ? { kind, n: rng.intBetween(1, 3), ms: Math.round(rng.uniform(0, 1) * perItMs) }
            : { kind, n: rng.intBetween(1, 3) };
      }
      const r = await runTrain(data, dir, kill);
      last = r;
      // After every run, killed or not, whatever checkpoint is there is whole: it parses, its metadata
      // validates, and a prompt loads from it (names, shapes and finiteness checked natively).
      const file = join(dir, CHECKPOINT_FILE);
      let iteration: number | null = null;
      if (existsSync(file)) {
        const ck = await readCheckpoint(file);
        iteration = ck.meta!.training!.iteration;
        expect(iteration).toBeLessThanOrEqual(TOTAL);
        const p = await PromptModel.load(clip, file);
        p.dispose();
      }
      if (r.signal === 'SIGKILL') {
        const at = kill!.kind === 'startup' ? `start+${kill!.ms}ms` : kill!.kind === 'between' ? `ck${kill!.n}+${kill!.ms}ms` : `write${kill!.n}`;
        points.push({ at, iteration, midWrite: r.leftTemp });
      } else {
        expect(points.length, 'a run finished before it was killed: the kill moments are too late').toBeGreaterThanOrEqual(KILLS);
      }
    }
    const done = JSON.parse(last.stdout) as typeof refJson;
    expect(done.iterations).toBe(TOTAL);
    expect(done.resumedFrom).toBe(points.at(-1)!.iteration);
    console.log(`kills survived: ${points.length} (${points.filter((p) => p.midWrite).length} in the middle of a checkpoint write); ` +
      'kill moment → checkpoint iteration after it: ' + points.map((p) => `${p.at}→${p.iteration ?? 'none'}${p.midWrite ? '*' : ''}`).join(', '));
    expect(points.length).toBeGreaterThanOrEqual(KILLS);
    // Kills landed in the middle of training (not all at start-up, not all after the end).
    expect(points.some((p) => (p.iteration ?? 0) > 0 && p.iteration! < TOTAL)).toBe(true);
    const a = await readCheckpoint(join(reference, CHECKPOINT_FILE));
    const b = await readCheckpoint(join(dir, CHECKPOINT_FILE));
    expectSameTensors(a.state, b.state);
    expectSameTensors(a.optimizer!, b.optimizer!);
    const { history: ha, ...ta } = a.meta!.training!;
    const { history: hb, ...tb } = b.meta!.training!;
    expect(tb).toEqual(ta);
    expect(JSON.stringify(hb)).toBe(JSON.stringify(ha));
    // The prompt the CLI saves at the end is the same too.
    expectSameTensors((await readCheckpoint(join(reference, 'prompt.safetensors'))).state, (await readCheckpoint(join(dir, 'prompt.safetensors'))).state);
  }, 600_000);

  it('a full disk (a small tmpfs): writing a checkpoint is ERR_IO and the previous one stays intact', async (ctx) => {
    using prompt = await PromptModel.create(clip, CLASSES, { seed: 5 });
    const state = await prompt.state();
    const meta = prompt.metadata();
    const probe = join(tmp, 'probe.safetensors');
    await writeCheckpoint(probe, { state, meta });
    const size = statSync(probe).size;
    const mnt = join(tmp, 'tmpfs');
    mkdirSync(mnt);
    // Room for one checkpoint but not two: the atomic write needs the new copy beside the old one.
    const bytes = Math.ceil((size * 1.5) / 4096) * 4096;
    const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', mnt], { encoding: 'utf8' });
    if (mount.status !== 0) {
      console.warn(`skipped: cannot mount a tmpfs here (${(mount.stderr || String(mount.error)).trim()}); run as root to test a full disk`);
      ctx.skip();
    }
    try {
      const file = join(mnt, CHECKPOINT_FILE);
      await writeCheckpoint(file, { state, meta });
      const changed = Object.fromEntries(Object.entries(state).map(([k, t]) => [k, { data: (t.data as Float32Array).map((v) => v + 1), shape: t.shape }]));
      const err = await writeCheckpoint(file, { state: changed, meta }).catch((e: Error) => e);
      expect(await codeOf(Promise.reject(err))).toBe('ERR_IO');
      expect((err as Error).message).toMatch(/ENOSPC|space/i);
      expectSameTensors(state, (await readCheckpoint(file)).state);
      expect(readdirSync(mnt)).toEqual([CHECKPOINT_FILE]); // the failed temporary file was removed
    } finally {
      spawnSync('umount', [mnt]);
    }
  });

  it('a non-finite loss skips the update, is counted and reported in the checkpoint; NaN state is refused at load', async () => {
    using prompt = await PromptModel.create(clip, CLASSES, { seed: 6 });
    const dir = join(tmp, 'nonfinite');
    const trainer = new IPTrainer(prompt, { scenario: 'ownership', batchSize: 4, checkpointDir: dir });
    const images = await preprocess(CLASSES.map((c) => join(data, DOMAIN, c, '0.png')).concat(join(data, DOMAIN, 'red', '1.png')), { size: 32 });
    const labels = Int32Array.from([0, 1, 2, 2]);
    const before = await prompt.state();
    // Finite pixels whose activations overflow float32: the loss is not finite.
    const huge = { images: { data: images.data.map((v) => v * 1e37), shape: images.shape }, labels };
    const t = await trainer.step(huge, huge);
    expect([t.skipped, Number.isFinite(t.loss), trainer.skippedUpdates]).toEqual([true, false, 1]);
    expectSameTensors(before, await prompt.state());
    const ok = await trainer.step({ images, labels }, { images, labels });
    expect([ok.skipped, Number.isFinite(ok.loss), trainer.skippedUpdates, trainer.iteration]).toEqual([false, true, 1, 2]);
    mkdirSync(dir, { recursive: true });
    const file = join(dir, 'manual.safetensors');
    await trainer.saveCheckpoint(file);
    expect((await readCheckpoint(file)).meta!.training!.skippedUpdates).toBe(1);

    // A checkpoint whose parameters hold a NaN (e.g. written by a buggy tool) is refused, not trained on.
    const ck = await readCheckpoint(file);
    const name = Object.keys(ck.state).find((n) => isPromptParameter(n))!;
    (ck.state[name]!.data as Float32Array)[0] = NaN;
    const poisoned = join(dir, 'nan.safetensors');
    await writeCheckpoint(poisoned, { state: ck.state, meta: ck.meta! });
    expect(await codeOf(PromptModel.load(clip, poisoned))).toBe('ERR_NON_FINITE');
  });
});
