// `ipclip train` with a held-out validation share, early stopping, the best epoch kept, and --extend, run as users
// run it (node bin/ipclip.js on the compiled dist/) on tiny SynthDomains with the clip-tiny fixture.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCheckpoint } from '../lib/ipclip/checkpoint.js';
import { ensureDist } from './helpers/dist.js';
import { evaluationWarnings } from '../lib/cli/train.js';
import type { EvaluationReport } from '../lib/ipclip/evaluator.js';
import { CLIP_TINY, HAVE_SHARED, VOCAB_PATH } from './helpers/fixtures.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'bin', 'ipclip.js');
const CLIP_ARGS = ['--clip', CLIP_TINY.openaiSafetensors, '--vocab', VOCAB_PATH, '--threads', '2'];

function ipclip(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 180_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe.skipIf(!HAVE_SHARED)('ipclip train: validation, early stopping, --restore-best, --extend', () => {
  let dir: string;
  let data: string;
  beforeAll(() => {
    ensureDist(ROOT);
    dir = mkdtempSync(join(tmpdir(), 'ipclip-cli-val-'));
    data = join(dir, 'synth');
    const r = ipclip(['synth', '--out', data, '--per-class', '5', '--size', '32', '--seed', '3']);
    if (r.code !== 0) throw new Error(r.stderr);
  }, 180_000);
  afterAll(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  const train = (out: string, ...extra: string[]) => ipclip(['train', '--data', data, '--authorized', 'photo', '--unauthorized', 'sketch',
    '--seed', '2', '--batch-size', '4', '--out', out, '--skip-eval', '--json', ...CLIP_ARGS, ...extra]);

  it('holds out a share of the training split, scores each epoch, stops early and writes the best epoch', async () => {
    const out = join(dir, 'val');
    // minDelta is 0, so with patience 1 the run stops at the first epoch that does not beat the best score.
    const r = train(out, '--epochs', '4', '--validation-split', '0.25', '--early-stopping', '1', '--restore-best');
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout);
    // 5 per class × 10 classes, 80 % train = 40 images; a quarter of each class held out: 10, leaving 30.
    expect(r.stderr).toMatch(/30 training images \(10 held out for validation\)/);
    expect(res.validationSplit).toBe(0.25);
    for (const h of res.history) {
      expect(h.validation.score).toBeCloseTo(h.validation.authorized - Math.max(0, h.validation.unauthorized - 0.1), 12);
      expect(h.validation.authorized).toBeGreaterThanOrEqual(0);
    }
    expect(r.stderr).toMatch(/epoch 1\/4: validation photo \d+\.\d%, sketch \d+\.\d%, score/);
    const scores: number[] = res.history.map((h: { validation: { score: number } }) => h.validation.score);
    const best = scores.indexOf(Math.max(...scores));
    expect(res.best.epoch).toBe(best);
    // Stopped exactly when an epoch failed to beat the best before it (or ran all 4).
    if (res.stopped === 'early-stopping') expect(scores.at(-1)!).toBeLessThanOrEqual(Math.max(...scores.slice(0, -1)));
    else expect(scores).toHaveLength(4);
    expect(res.restoredBest).toBe(true);
    const written = await readCheckpoint(join(out, 'prompt.safetensors'));
    const kept = await readCheckpoint(join(out, 'best.safetensors'));
    for (const [k, t] of Object.entries(kept.state)) expect(Array.from(written.state[k]!.data), k).toEqual(Array.from(t.data));
    expect(train(out, '--early-stopping', '2').code).toBe(2); // --early-stopping without --validation-split
  }, 240_000);

  it('--extend continues a finished run for more epochs (here with --feature-cache, which the checkpoint records)', () => {
    const out = join(dir, 'ext');
    const one = train(out, '--epochs', '1', '--feature-cache');
    expect(one.code, one.stderr).toBe(0);
    expect(JSON.parse(one.stdout).featureCache).toBe(true);
    const refused = train(out, '--epochs', '2', '--feature-cache');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/epochs was 1, now 2.*--extend/);
    expect(train(out, '--epochs', '2', '--extend').stderr).toMatch(/featureCache was true, now false/);
    const two = train(out, '--epochs', '2', '--extend', '--feature-cache');
    expect(two.code, two.stderr).toBe(0);
    const a = JSON.parse(one.stdout), b = JSON.parse(two.stdout);
    expect(b.resumedFrom).toBe(a.iterations);
    expect(b.iterations).toBe(2 * a.iterations);
    expect(b.history).toHaveLength(2);
    expect(existsSync(join(out, 'prompt.safetensors'))).toBe(true);
  }, 240_000);
});

describe('the test-split warnings of ipclip train', () => {
  const report = (a: number, zs: number, u: Record<string, number>): EvaluationReport => ({
    sets: Object.fromEntries([['authorized', { accuracy: a, macroF1: 0, n: 10 }], ...Object.entries(u).map(([k, v]) => [k, { accuracy: v, macroF1: 0, n: 10 }])]),
    authorized: 'authorized', unauthorized: Object.keys(u), metrics: null, reference: null,
    zeroShot: { authorized: zs }, chance: 0.1, skippedImages: [],
  }) as unknown as EvaluationReport;

  it('names an authorized accuracy > 5 points below zero-shot and each unauthorized set > 10 points above chance', () => {
    const w = evaluationWarnings(report(0.8, 0.9, { sketch: 0.78, clipart: 0.15 }), 'photo', false);
    expect(w).toHaveLength(2);
    expect(w[0]).toMatch(/photo\) is 80\.0%, below zero-shot CLIP's 90\.0%/);
    expect(w[1]).toMatch(/'sketch' is still at 78\.0% \(chance 10\.0%\)/);
    expect(evaluationWarnings(report(0.86, 0.9, { sketch: 0.2, clipart: 0.19 }), 'photo', false)).toEqual([]);
    // A reference is meant to work everywhere: only the authorized check applies.
    expect(evaluationWarnings(report(0.9, 0.9, { sketch: 0.9 }), 'photo', true)).toEqual([]);
  });
});
