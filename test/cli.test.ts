// The `ipclip` command line, run as users run it (node bin/ipclip.js … on the compiled dist/): help, usage errors
// (exit 2), failures (exit 1), synth, a 1-epoch train with --json on tiny SynthDomains and the clip-tiny fixture,
// info, predict (against the library), eval with a reference, and Ctrl-C during training (exit 130, checkpoint
// written, the same command resumes). Also the progress bar's output in both modes.
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDist } from './helpers/dist.js';
import { Clip } from '../lib/clip/clip.js';
import { ProgressBar, formatDuration, renderBar } from '../lib/tools/progress.js';
import { PromptModel } from '../lib/ipclip/prompt-model.js';
import { SYNTH_CLASSES, SYNTH_DOMAINS } from '../lib/tools/synth/synth.js';
import { CLIP_TINY, HAVE_SHARED, VOCAB_PATH } from './helpers/fixtures.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'bin', 'ipclip.js');
const CLIP_ARGS = ['--clip', CLIP_TINY.openaiSafetensors, '--vocab', VOCAB_PATH, '--threads', '2'];

interface Result { code: number | null; stdout: string; stderr: string }

function ipclip(args: string[], cwd = ROOT): Result {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('progress bar', () => {
  it('formats durations and bars', () => {
    expect(formatDuration(0)).toBe('0s');
    expect(formatDuration(75)).toBe('1m15s');
    expect(formatDuration(3725)).toBe('1h02m');
    expect(formatDuration(NaN)).toBe('?');
    expect(renderBar(1, 4, 8)).toBe('██░░░░░░');
    expect(renderBar(9, 4, 4)).toBe('████');
  });

  it('prints plain lines at most once per interval (and always the last); redraws in place on a terminal', () => {
    let now = 0;
    const plain: string[] = [];
    const bar = new ProgressBar(10, { stream: { write: (s: string) => plain.push(s) }, tty: false, label: 'train', intervalMs: 1000, now: () => now });
    for (let i = 1; i <= 10; i++) {
      now += 300; // 0.3 s per step: a line at steps 1, 5 and 9 (≥ 1 s apart), plus the last
      bar.update(i, { values: { loss: 0.123456, lr: 1e-5 } });
    }
    expect(plain).toHaveLength(4);
    expect(plain[0]).toBe('train 1/10  10% eta 3s | loss 0.1235 lr 1.00e-5\n');
    expect(plain[3]).toMatch(/^train 10\/10 100% eta 0s/);
    const tty: string[] = [];
    const t = new ProgressBar(4, { stream: { write: (s: string) => tty.push(s), columns: 30 }, tty: true, now: () => 0 });
    t.update(2, { note: 'a very long note that does not fit in thirty columns' });
    expect(tty[0]!.startsWith('\r\x1b[2K██████████░░░░░░░░░░ 2/4')).toBe(true);
    expect(tty[0]!.length).toBeLessThan(30 + 5); // clipped to the width (plus the control characters)
    t.done('ok');
    expect(tty.slice(1)).toEqual(['\n', 'ok\n']);
  });
});

describe('ipclip usage', () => {
  beforeAll(() => ensureDist(ROOT), 180_000);

  it('--help lists every command; each command has --help', () => {
    const r = ipclip(['--help']);
    expect(r.code).toBe(0);
    const commands = ['demo', 'train', 'eval', 'predict', 'verify-ownership', 'info', 'synth', 'pretrain', 'build'];
    for (const c of commands) expect(r.stdout).toMatch(new RegExp(`^  ${c} `, 'm'));
    for (const c of commands.filter((c) => c !== 'build')) { // build's --help is the build script's (the launcher runs it)
      const h = ipclip([c, '--help']);
      expect(h.code, c).toBe(0);
      expect(h.stdout).toContain(`usage: ipclip ${c}`);
      expect(h.stdout).toContain('--help');
    }
  });

  it("pretrain --help offers every flag of scripts/pretrain.mjs with the script's own defaults", () => {
    const script = readFileSync(join(ROOT, 'scripts', 'pretrain.mjs'), 'utf8');
    // The script's parseArgs options with a literal default: `'name': { type: 'string', default: 'value' }`.
    const literal = [...script.matchAll(/^\s+'?([a-z-]+)'?: \{ type: 'string', default: '([^']*)' \}/gm)].map((m) => [m[1]!, m[2]!]);
    expect(literal.length).toBeGreaterThanOrEqual(12);
    const help = ipclip(['pretrain', '--help']).stdout;
    for (const [name, value] of literal) {
      const line = help.split('\n').find((l) => l.trimStart().startsWith(`--${name} `));
      expect(line, `--${name} is missing from ipclip pretrain --help`).toBeDefined();
      expect(line, `--${name}`).toMatch(new RegExp(`\\(default ${value.replace('.', '\\.')}[):]`));
    }
    const bad = ipclip(['pretrain', '--fade', '2']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--fade must be a number from 0 to 1/);
  });

  it('wrong usage exits 2 with a message naming the problem', () => {
    const cases: [string[], RegExp][] = [
      [['frobnicate'], /unknown command 'frobnicate'/],
      [['train', '--bogus'], /unknown flag '--bogus'/],
      [['benchmark', '--dtype', 'half'], /--dtype must be one of float32, bfloat16, float16, float64, auto; got 'half'/],
      [['train', '--epochs'], /--epochs' needs a value/],
      [['train', '--epochs', 'two', '--data', '.', '--authorized', 'a'], /--epochs must be an integer/],
      [['train', '--data', '.', '--authorized', 'a', '--scenario', 'nope'], /--scenario must be one of target-specified/],
      [['train', '--data', '.', '--authorized', 'photo'], /--unauthorized is required for the target-specified/],
      [['train', '--data', '.', '--authorized', 'photo', '--scenario', 'ownership', '--unauthorized', 'sketch'], /only used by target-specified/],
      [['train', '--data', '.', '--authorized', 'a', '--unauthorized', 'b', '--split-sizes', '10-2'], /--split-sizes must be/],
      [['synth', '--out', 'x'], /--per-class is required/],
      [['info'], /exactly one checkpoint/],
      [['info', 'a', 'b'], /exactly one checkpoint/],
      [['eval', 'stray'], /unexpected argument 'stray'/],
      [[], /usage: ipclip <command>/],
    ];
    for (const [args, message] of cases) {
      const r = ipclip(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack traces
    }
  });

  it('missing folders and files exit 1 with a clear message', () => {
    const cases: [string[], RegExp][] = [
      [['train', '--data', '/nonexistent/data', '--authorized', 'photo', '--unauthorized', 'sketch'], /data folder not found: \/nonexistent\/data/],
      [['info', '/nonexistent/ckpt.safetensors'], /checkpoint not found/],
      [['info', BIN], /ERR_BAD_FILE/],
      [['predict', 'x.png', '--checkpoint', '/nonexistent/ckpt'], /checkpoint not found/],
      [['train', '--data', ROOT, '--authorized', 'photo', '--unauthorized', 'sketch'], /domain 'photo' not found/],
    ];
    for (const [args, message] of cases) {
      const r = ipclip(args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr, args.join(' ')).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });
});

describe.skipIf(!HAVE_SHARED)('ipclip on tiny SynthDomains with the clip-tiny fixture', () => {
  let dir: string;
  let data: string;
  beforeAll(() => {
    ensureDist(ROOT);
    dir = mkdtempSync(join(tmpdir(), 'ipclip-cli-'));
    data = join(dir, 'synth');
  }, 180_000);
  afterAll(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  it('synth renders the domain/class layout, then reuses it', () => {
    const r = ipclip(['synth', '--out', data, '--per-class', '4', '--size', '32', '--seed', '3', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ count: 4 * 10 * 4, reused: false, perClass: 4, size: 32 });
    expect(readdirSync(data).filter((d) => !d.endsWith('.json')).sort()).toEqual([...SYNTH_DOMAINS].sort());
    for (const d of SYNTH_DOMAINS) expect(readdirSync(join(data, d)).sort()).toEqual([...SYNTH_CLASSES].sort());
    expect(readdirSync(join(data, 'sketch', 'star'))).toHaveLength(4);
    const again = ipclip(['synth', '--out', data, '--per-class', '4', '--size', '32', '--seed', '3']);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/^reused 160 images/);
  });

  it('train --json (1 epoch), info, predict and eval with a reference', async () => {
    const run = join(dir, 'run');
    // 40 images per domain, 80% for training: 32 images = 4 iterations of 8.
    const r = ipclip(['train', '--data', data, '--authorized', 'photo', '--unauthorized', 'sketch', '--epochs', '1', '--seed', '5', '--out', run, '--json', ...CLIP_ARGS]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ scenario: 'target-specified', iterations: 4, resumedFrom: null, classNames: [...SYNTH_CLASSES].sort() });
    expect(out.history).toHaveLength(1);
    expect(Number.isFinite(out.history[0].terms.loss)).toBe(true);
    expect(out.evaluation.map((e: { set: string; n: number }) => [e.set, e.n])).toEqual([['photo', 8], ['sketch', 8]]);
    expect(existsSync(join(run, 'last.safetensors')) && existsSync(join(run, 'prompt.safetensors'))).toBe(true);
    expect(r.stderr).toMatch(/train 4\/4 100%/); // progress went to stderr, stdout is only the JSON

    const info = JSON.parse(ipclip(['info', run, '--json']).stdout);
    expect(info.training).toMatchObject({ scenario: 'target-specified', preset: 'paper', iteration: 4, totalIterations: 4, complete: true, epoch: 1, seed: 5 });
    expect(info.classNames).toEqual([...SYNTH_CLASSES].sort());
    expect(info.clip.fingerprint).toMatch(/^[0-9a-f]+$/);
    const text = ipclip(['info', join(run, 'prompt.safetensors')]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/no training state/);

    // predict agrees with the library's own classification of the same files.
    const images = [join(data, 'photo', 'star', 'star_0000.png'), join(data, 'sketch', 'moon', 'moon_0001.png')];
    const p = ipclip(['predict', ...images, '--checkpoint', run, '--top', '3', '--json', ...CLIP_ARGS]);
    expect(p.code, p.stderr).toBe(0);
    const preds = JSON.parse(p.stdout) as { image: string; label: string; score: number; top: { label: string; score: number }[] }[];
    const clip = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH });
    try {
      using prompt = await PromptModel.load(clip, join(run, 'last.safetensors'));
      const lib = await prompt.classify(images);
      expect(preds.map((x) => x.label)).toEqual(lib.map((x) => x.label));
      preds.forEach((x, i) => {
        expect(x.score).toBeCloseTo(lib[i]!.scores[lib[i]!.index]!, 5);
        expect(x.top).toHaveLength(3);
        expect(x.top[0]!.label).toBe(x.label);
      });
    } finally {
      clip.dispose();
    }
    const missing = ipclip(['predict', join(dir, 'nope.png'), '--checkpoint', run, ...CLIP_ARGS]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/image not found/);

    // eval with the run's own saved prompt as the reference: the metrics then have known values (retention 1 where
    // the reference scores above 0, suppression 0 where it is above chance: nothing was suppressed relative to itself).
    const ev = ipclip(['eval', '--checkpoint', run, '--reference', join(run, 'prompt.safetensors'), '--data', data, '--authorized', 'photo',
      '--unauthorized', 'sketch', '--no-zero-shot', '--json', ...CLIP_ARGS]);
    expect(ev.code, ev.stderr).toBe(0);
    const e = JSON.parse(ev.stdout);
    expect(e.seed).toBe(5); // the split seed comes from the checkpoint, so these are train's test splits
    expect(e.sets.map((s: { set: string; accuracy: number }) => [s.set, s.accuracy]))
      .toEqual(out.evaluation.map((s: { set: string; accuracy: number }) => [s.set, s.accuracy]));
    for (const s of e.sets) expect(s.reference).toBe(s.accuracy);
    const u = e.sets[1] as { accuracy: number };
    expect(e.metrics.retention).toBe(1);
    expect(e.metrics.suppression).toBe(u.accuracy > 0.1 ? 0 : 1);
    expect(e.metrics.dropA).toBe(0);
  }, 240_000);

  it('Ctrl-C during train writes a checkpoint and exits 130; the same command resumes and finishes', async () => {
    const run = join(dir, 'interrupted');
    const args = ['train', '--data', data, '--authorized', 'photo', '--unauthorized', 'sketch', '--epochs', '3', '--seed', '1',
      '--out', run, '--skip-eval', '--json', ...CLIP_ARGS];
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT });
    let stderr = '';
    let stdout = '';
    child.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
    const code = await new Promise<number | null>((resolve, reject) => {
      let sent = false;
      child.stderr.on('data', (b: Buffer) => {
        stderr += b.toString();
        // The first progress line means training is under way (the SIGINT handler is installed by then).
        if (!sent && /^train \d+\/12/m.test(stderr)) { sent = true; child.kill('SIGINT'); }
      });
      child.on('error', reject);
      child.on('exit', (c) => resolve(c));
    });
    expect(code, stderr).toBe(130);
    expect(stderr).toMatch(/SIGINT: stopping after the current step/);
    expect(stderr).toMatch(/run the same command again to resume/);
    const stopped = JSON.parse(stdout);
    expect(stopped.stopped).toBe(true);
    const info = JSON.parse(ipclip(['info', run, '--json']).stdout);
    expect(info.training.iteration).toBe(stopped.iteration);
    expect(info.training.iteration).toBeGreaterThan(0);
    expect(info.training.iteration).toBeLessThan(12);
    expect(info.training.complete).toBe(false);

    const resumed = ipclip(args);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/resuming from/);
    expect(JSON.parse(resumed.stdout)).toMatchObject({ resumedFrom: stopped.iteration, iterations: 12 });
    // Changed settings do not silently mix runs.
    const other = ipclip(['train', '--data', data, '--authorized', 'photo', '--unauthorized', 'sketch', '--epochs', '2', '--out', run, ...CLIP_ARGS]);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/belongs to another run.*--fresh/);
  }, 240_000);

  it('unreadable images: all reported before any training step, or skipped and listed; the run record drives eval and resume', () => {
    // A copy of three domains with three broken files in photo (every image is used by the 80/20 split).
    const root = join(dir, 'broken');
    for (const d of ['photo', 'sketch', 'clipart']) cpSync(join(data, d), join(root, d), { recursive: true });
    const bad = [join(root, 'photo', 'star', 'truncated.png'), join(root, 'photo', 'moon', 'noise.jpg'), join(root, 'photo', 'moon', 'zero.png')];
    const png = readFileSync(join(root, 'photo', 'star', 'star_0000.png'));
    writeFileSync(bad[0]!, png.subarray(0, png.length - 16));
    writeFileSync(bad[1]!, Buffer.from(Array.from({ length: 600 }, (_, i) => (i * 97 + 5) % 256)));
    writeFileSync(bad[2]!, Buffer.alloc(0));
    const run = join(dir, 'skip-run');
    // Sizes 30/13 use all 43 listed photo images; with the 3 bad ones skipped they scale to the 40 readable
    // ones: 12 test (floor(40·13/43)) and 28 train (4 iterations of 8); sketch has 40: 12 test as well.
    const base = ['train', '--data', root, '--authorized', 'photo', '--unauthorized', 'sketch', '--epochs', '1',
      '--split-sizes', '30/13', '--seed', '2', '--out', run, ...CLIP_ARGS];

    const failed = ipclip(base);
    expect(failed.code, failed.stderr).toBe(1);
    expect(failed.stderr).toMatch(/ERR_BAD_IMAGE|3 unreadable images/);
    for (const f of bad) expect(failed.stderr).toContain(f);
    expect(failed.stderr).not.toMatch(/^train \d+\//m); // no step ran
    expect(failed.stderr).not.toMatch(/building the feature banks/); // nor was CLIP loaded
    expect(existsSync(join(run, 'last.safetensors'))).toBe(false);

    const ok = ipclip([...base, '--on-bad-image', 'skip', '--json']);
    expect(ok.code, ok.stderr).toBe(0);
    const out = JSON.parse(ok.stdout);
    expect(out.skippedImages.map((b: { path: string }) => b.path).sort()).toEqual([...bad].sort());
    expect(out.iterations).toBe(4);
    expect(out.evaluation.map((e: { set: string; n: number }) => [e.set, e.n])).toEqual([['photo', 12], ['sketch', 12]]);
    const info = JSON.parse(ipclip(['info', run, '--json']).stdout);
    expect(info.run).toMatchObject({ authorized: 'photo', unauthorized: 'sketch', data: { root, resolved: root },
      split: { rule: 'path-hash', version: 1, seed: 2, sizes: { train: 30, test: 13 }, onBadImage: 'skip', nTrain: 28, nTest: 12, listed: 43 } });
    expect(info.run.skippedImages).toHaveLength(3);
    expect(ipclip(['info', run]).stdout).toMatch(/^split\s+path-hash\/1, seed 2, sizes 30\/13: 28 train \/ 12 test of 43; header check 'skip', 3 unreadable images skipped$/m);

    // eval with nothing but the checkpoint scores the training's test splits (12 images each, not 20% = 8).
    const ev = ipclip(['eval', '--checkpoint', run, '--no-zero-shot', '--json', ...CLIP_ARGS]);
    expect(ev.code, ev.stderr).toBe(0);
    const e = JSON.parse(ev.stdout);
    expect(e).toMatchObject({ scenario: 'target-specified', authorized: 'photo', seed: 2, splitSizes: { train: 30, test: 13 } });
    expect(e.sets.map((x: { set: string; n: number; accuracy: number }) => [x.set, x.n, x.accuracy]))
      .toEqual(out.evaluation.map((x: { set: string; n: number; accuracy: number }) => [x.set, x.n, x.accuracy]));
    // Another authorized domain, or a test set reaching into the training split, is refused.
    const other = ipclip(['eval', '--checkpoint', run, '--authorized', 'sketch', '--unauthorized', 'photo', '--no-zero-shot', ...CLIP_ARGS]);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/ERR_MISMATCH|authorized domain 'photo', not 'sketch'/);
    const overlap = ipclip(['eval', '--checkpoint', run, '--split-sizes', '1/39', '--no-zero-shot', ...CLIP_ARGS]);
    expect(overlap.code).toBe(1);
    expect(overlap.stderr).toMatch(/holds \d+ of 39 images from the run's training split of 'photo'/); // 39 of the 40 readable
    // A saved prompt has no training metadata: its scenario must be given.
    const noMeta = ipclip(['eval', '--checkpoint', join(run, 'prompt.safetensors'), '--data', root, '--authorized', 'photo', '--no-zero-shot', ...CLIP_ARGS]);
    expect(noMeta.code).toBe(2);
    expect(noMeta.stderr).toMatch(/pass --scenario/);
    // Resuming with another unauthorized domain (same sizes, so the same number of iterations) is refused.
    const resume = ipclip(['train', '--data', root, '--authorized', 'photo', '--unauthorized', 'clipart', '--epochs', '1',
      '--split-sizes', '30/13', '--seed', '2', '--out', run, '--on-bad-image', 'skip', '--skip-eval', ...CLIP_ARGS]);
    expect(resume.code).toBe(1);
    expect(resume.stderr).toMatch(/the unauthorized domain was "sketch", now "clipart".*--fresh/);
  }, 240_000);
});
