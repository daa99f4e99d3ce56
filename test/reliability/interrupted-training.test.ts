// Training that is interrupted loses nothing: a training process killed with SIGKILL at seeded random moments
// (at least 10 times) and resumed each time ends with exactly the parameters of an uninterrupted run, and the
// checkpoint on disk after every kill parses and validates. A full disk gives ERR_IO and keeps the previous
// checkpoint; a non-finite loss skips the update and is counted in the checkpoint.
//
// The trainer runs in child processes (SIGKILL needs a process of its own). Until `ipclip train` (lib/cli.ts)
// lands, the child is a small driver over IPTrainer compiled by tsc into .cache/reliability-dist.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCheckpoint, writeCheckpoint } from '../../lib/checkpoint.js';
import { Clip } from '../../lib/clip.js';
import { DomainDataset } from '../../lib/data.js';
import { addonPath } from '../../lib/native.js';
import { IPPrompt, isPromptParameter } from '../../lib/prompt.js';
import { preprocess } from '../../lib/preprocess.js';
import { Rng } from '../../lib/rng.js';
import type { Tensor } from '../../lib/tensor.js';
import { CHECKPOINT_FILE, IPTrainer } from '../../lib/trainer.js';
import { CLIP_TINY, HAVE_SHARED, VOCAB_PATH } from '../helpers/fixtures.js';
import { codeOf } from './helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DIST = join(ROOT, '.cache', 'reliability-dist');
const CLASSES = ['blue', 'green', 'red'];
const COLOURS: Record<string, [number, number, number]> = { red: [220, 30, 30], green: [30, 200, 40], blue: [40, 50, 230] };
const PER_CLASS = 4; // 12 images, batch 4: 3 iterations per epoch
const EPOCHS = 12; // 36 iterations, a checkpoint after each
const KILLS = 10;

/** The child: trains (or resumes) in `out`, printing `it N` after every iteration. */
const DRIVER = `
import { join } from 'node:path';
const [dist, weights, vocab, data, out] = process.argv.slice(2);
const load = (m) => import(new URL(m + '.js', 'file://' + dist + '/').href);
const { Clip } = await load('clip');
const { IPPrompt } = await load('prompt');
const { IPTrainer } = await load('trainer');
const { DomainDataset } = await load('data');
const classes = ${JSON.stringify(CLASSES)};
const samples = [];
classes.forEach((c, label) => { for (let i = 0; i < ${PER_CLASS}; i++) samples.push({ path: join(data, c, i + '.png'), label }); });
const clip = await Clip.load(weights, { vocab });
const prompt = await IPPrompt.create(clip, classes, { seed: 3 });
const trainer = new IPTrainer(clip, prompt, {
  scenario: 'ownership', epochs: ${EPOCHS}, batchSize: 4, seed: 11, checkpointDir: out, checkpointEvery: 1, workers: 0,
  onProgress: (p) => { process.stdout.write('it ' + p.iteration + '\\n'); },
});
const res = await trainer.fit({ authorized: DomainDataset.fromSamples(samples, classes) });
process.stdout.write('done ' + res.iterations + ' resumed ' + res.resumedFrom + '\\n');
prompt.dispose();
clip.dispose();
`;

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

interface RunResult { code: number | null; signal: NodeJS.Signals | null; lines: string[]; firstItAt: number | null; endedAt: number }

/** When to SIGKILL: `ms` after start, or `ms` after the child reported its `afterIts`-th iteration of this run. */
interface Kill { ms: number; afterIts?: number }

/** Runs the driver, killing it as `kill` says. */
function runDriver(driver: string, data: string, out: string, kill?: Kill): Promise<RunResult> {
  return new Promise((done, fail) => {
    const started = Date.now();
    const child = spawn(process.execPath, [driver, DIST, CLIP_TINY.openaiSafetensors, VOCAB_PATH, data, out], {
      env: { ...process.env, IPCLIP_ADDON: addonPath() }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let firstItAt: number | null = null;
    let timer: NodeJS.Timeout | null = null;
    const arm = () => { timer ??= setTimeout(() => child.kill('SIGKILL'), kill!.ms); };
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (firstItAt === null && stdout.includes('it ')) firstItAt = Date.now() - started;
      if (kill?.afterIts !== undefined && (stdout.match(/^it /gm)?.length ?? 0) >= kill.afterIts) arm();
    });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    if (kill && kill.afterIts === undefined) arm();
    child.on('error', fail);
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      if (code !== 0 && signal !== 'SIGKILL') fail(new Error(`driver failed (${code}): ${stderr.slice(-2000)}`));
      else done({ code, signal, lines: stdout.split('\n').filter(Boolean), firstItAt, endedAt: Date.now() - started });
    });
  });
}

function expectSameTensors(a: Record<string, Tensor>, b: Record<string, Tensor>): void {
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
  const driver = join(tmp, 'driver.mjs');
  let clip: Clip;

  beforeAll(async () => {
    // Compile lib/ for the child processes (errors in files still being written elsewhere do not stop emission).
    const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.build.json'),
      '--outDir', DIST, '--declaration', 'false', '--sourceMap', 'false'], { encoding: 'utf8' });
    if (!existsSync(join(DIST, 'trainer.js'))) throw new Error(`tsc did not emit trainer.js: ${tsc.stdout.slice(-1500)}`);
    writeFileSync(driver, DRIVER);
    await makeImages(data);
    clip = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH });
  }, 180_000);
  afterAll(() => {
    clip?.dispose();
    rmSync(tmp, { recursive: true, force: true });
  });

  it(`SIGKILL at ${KILLS}+ seeded random moments, resumed each time: the final parameters equal an uninterrupted run's`, async () => {
    const reference = join(tmp, 'reference');
    const ref = await runDriver(driver, data, reference);
    expect(ref.lines.at(-1)).toBe(`done ${3 * EPOCHS} resumed null`);
    // Kill moments: every other kill at a random time during start-up and bank building (before or around the
    // first checkpoint), the rest a random time after the run's 1st–3rd iteration (mid-training, often during a
    // checkpoint write). Tied to the child's progress, so they land inside a run on a fast or a slow machine.
    const startup = ref.firstItAt!;
    const perIt = (ref.endedAt - startup) / (3 * EPOCHS);
    const rng = new Rng(2025);
    const dir = join(tmp, 'killed');
    const points: { at: string; iteration: number | null }[] = [];
    let finished = false;
    while (!finished) {
      const killing = points.length < KILLS;
      const early = points.length % 2 === 0;
      const kill: Kill = early ? { ms: Math.round(rng.uniform(0.2, 1.1) * startup) } : { ms: Math.round(rng.uniform(0, perIt)), afterIts: rng.intBetween(1, 3) };
      const at = kill.afterIts === undefined ? `${kill.ms}ms` : `it${kill.afterIts}+${kill.ms}ms`;
      const r = await runDriver(driver, data, dir, killing ? kill : undefined);
      finished = r.signal === null;
      if (finished) expect(r.lines.at(-1)).toMatch(new RegExp(`^done ${3 * EPOCHS} resumed \\d+$`));
      // After every run, killed or not, whatever checkpoint is there is whole: it parses, its metadata
      // validates, and a prompt loads from it (names, shapes and finiteness checked natively).
      const file = join(dir, CHECKPOINT_FILE);
      let iteration: number | null = null;
      if (existsSync(file)) {
        const ck = await readCheckpoint(file);
        iteration = ck.meta!.training!.iteration;
        expect(iteration).toBeLessThanOrEqual(3 * EPOCHS);
        const p = await IPPrompt.load(clip, file);
        p.dispose();
      }
      if (r.signal === 'SIGKILL') points.push({ at, iteration });
      expect(points.length, 'a run finished before the kills were done; the kill window is too late').toBeGreaterThanOrEqual(finished ? KILLS : 0);
    }
    console.log(`kills survived: ${points.length}; kill moments and the checkpoint's iteration after each: ` +
      points.map((p) => `${p.at}→${p.iteration ?? 'none'}`).join(', '));
    expect(points.length).toBeGreaterThanOrEqual(KILLS);
    // Kills landed in the middle of training (not all at start-up, not all after the end).
    expect(points.some((p) => (p.iteration ?? 0) > 0 && p.iteration! < 3 * EPOCHS)).toBe(true);
    const a = await readCheckpoint(join(reference, CHECKPOINT_FILE));
    const b = await readCheckpoint(join(dir, CHECKPOINT_FILE));
    expectSameTensors(a.state, b.state);
    expectSameTensors(a.optimizer!, b.optimizer!);
    const { history: ha, ...ta } = a.meta!.training!;
    const { history: hb, ...tb } = b.meta!.training!;
    expect(tb).toEqual(ta);
    expect(JSON.stringify(hb)).toBe(JSON.stringify(ha));
  }, 600_000);

  it('a full disk (a small tmpfs): writing a checkpoint is ERR_IO and the previous one stays intact', async (ctx) => {
    using prompt = await IPPrompt.create(clip, CLASSES, { seed: 5 });
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
    using prompt = await IPPrompt.create(clip, CLASSES, { seed: 6 });
    const dir = join(tmp, 'nonfinite');
    const trainer = new IPTrainer(clip, prompt, { scenario: 'ownership', batchSize: 4, checkpointDir: dir });
    const images = await preprocess(CLASSES.map((c) => join(data, c, '0.png')).concat(join(data, 'red', '1.png')), { size: 32 });
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
    expect(await codeOf(IPPrompt.load(clip, poisoned))).toBe('ERR_NON_FINITE');
  });
});
