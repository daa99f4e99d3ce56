// The protection benchmark: its statistics and checks against hand-computed values, the sets each scenario is
// scored on, the seed syntax, and a reduced run on a small SynthDomains that must show the method's direction
// (authorized kept, unauthorized suppressed), so that a regression in the method cannot land silently.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSeeds } from '../lib/cli/benchmark.js';
import { UsageError } from '../lib/cli/args.js';
import { Clip } from '../lib/clip/clip.js';
import {
  benchmarkSets, DEFAULT_TARGETS, runProtectionBenchmark, scoreRun, spread, type BenchmarkResult, type BenchmarkSetScore,
} from '../lib/ipclip/benchmark.js';
import { renderBenchmarkPage, writeBenchmark } from '../lib/tools/report/benchmark-page.js';
import { generateSynthDomains } from '../lib/tools/synth/synth.js';

const SHIPPED = join(import.meta.dirname, '..', 'models', 'synth-clip', 'model.safetensors');

describe('benchmark statistics and checks', () => {
  it('spread is the mean and the sample standard deviation', () => {
    // (0.5, 0.7, 0.9): mean 0.7, squared deviations 0.04 + 0 + 0.04 over n − 1 = 2 → variance 0.04, std 0.2.
    const s = spread([0.5, 0.7, 0.9]);
    expect(s.mean).toBeCloseTo(0.7, 12);
    expect(s.std).toBeCloseTo(0.2, 12);
    expect(s.values).toEqual([0.5, 0.7, 0.9]);
    expect(spread([0.3]).std).toBe(0);
    expect(() => spread([])).toThrow(expect.objectContaining({ code: 'ERR_EMPTY_INPUT' }));
  });

  it('retention is measured against max(reference, zero-shot), so a weak reference cannot flatter it', () => {
    const sets: Record<string, BenchmarkSetScore> = {
      photo: { zeroShot: 0.9, reference: 0.6, protected: 0.6, n: 100 },
      sketch: { zeroShot: 0.9, reference: 0.8, protected: 0.12, n: 100 },
      clipart: { zeroShot: 0.9, reference: 0.8, protected: 0.8, n: 100 },
    };
    const run = scoreRun('target-specified', 3, sets, 'photo', ['sketch'], 0.1, DEFAULT_TARGETS['target-specified']);
    expect(run.metrics.best).toBe(0.9);
    expect(run.metrics.retention).toBeCloseTo(0.6 / 0.9, 12);
    // Against the reference alone it would read 1.000 (method §7 caps it).
    expect(run.metrics.retentionVsReference).toBe(1);
    // Sketch fell from 0.8 to 0.12 of a span of 0.7 down to chance: (0.8 − 0.12) / 0.7.
    expect(run.metrics.suppression).toBeCloseTo(0.68 / 0.7, 12);
    const byName = Object.fromEntries(run.checks.map((c) => [c.name, c]));
    expect(byName['reference ≥ zero-shot − 0.01']).toMatchObject({ pass: false, limit: expect.closeTo(0.89, 12) });
    expect(byName['photo ≥ 0.97 × best']).toMatchObject({ pass: false, limit: expect.closeTo(0.873, 12) });
    expect(byName['sketch ≤ chance + 0.05']).toMatchObject({ pass: true, value: 0.12 });
    // Clipart is not scored by target-specified (unseen): it has no check.
    expect(run.checks.some((c) => c.name.startsWith('clipart'))).toBe(false);
    expect(run.pass).toBe(false);
  });

  it('a run that meets every limit passes, one just past a limit fails', () => {
    const t = DEFAULT_TARGETS['target-free'];
    const make = (sketch: number) => scoreRun('target-free', 0, {
      photo: { zeroShot: 0.8, reference: 0.9, protected: 0.9 * 0.95, n: 50 },
      sketch: { zeroShot: 0.8, reference: 0.8, protected: sketch, n: 50 },
    }, 'photo', ['sketch'], 0.25, t);
    expect(make(0.35).pass).toBe(true); // exactly chance + 0.10
    expect(make(0.3501).pass).toBe(false);
  });

  it('ownership adds the one-sided binomial p-value of the watermark collapse', () => {
    // Clean 8/10 correct; watermarked 1/10. P(X ≤ 1 | n = 10, p = 0.8) = 0.2^10 + 10 · 0.8 · 0.2^9.
    const sets = { photo: { zeroShot: 0.8, reference: 0.8, protected: 0.8, n: 10 }, 'photo+watermark': { zeroShot: 0.5, reference: 0.7, protected: 0.1, n: 10 } };
    const run = scoreRun('ownership', 0, sets, 'photo', ['photo+watermark'], 0.1, DEFAULT_TARGETS.ownership,
      { authorized: { correct: 8, n: 10 }, 'photo+watermark': { correct: 1, n: 10 } });
    const expected = 0.2 ** 10 + 10 * 0.8 * 0.2 ** 9;
    expect(run.metrics.pValue).toBeCloseTo(expected, 15);
    const p = run.checks.find((c) => c.name.startsWith('watermark collapse'))!;
    expect(p.pass).toBe(false); // 4.2e-6 is not below 1e-9 with only 10 images
  });

  it('each scenario is scored on its own sets', () => {
    const others = ['clipart', 'sketch'];
    expect(benchmarkSets('target-specified', 'photo', 'sketch', others)).toEqual({
      authorizedSet: 'photo', scored: ['sketch'],
      sets: [{ name: 'photo', domain: 'photo', watermark: false }, { name: 'clipart', domain: 'clipart', watermark: false }, { name: 'sketch', domain: 'sketch', watermark: false }],
    });
    expect(benchmarkSets('target-free', 'photo', 'sketch', others).scored).toEqual(['clipart', 'sketch']);
    expect(benchmarkSets('ownership', 'photo', 'sketch', others)).toMatchObject({ authorizedSet: 'photo', scored: ['photo+watermark'] });
    const auth = benchmarkSets('authorization', 'photo', 'sketch', others);
    expect(auth.authorizedSet).toBe('photo+watermark');
    expect(auth.scored).toEqual(['photo', 'clipart', 'clipart+watermark', 'sketch', 'sketch+watermark']);
  });

  it('seeds are a list or ranges', () => {
    expect(parseSeeds('0-4')).toEqual([0, 1, 2, 3, 4]);
    expect(parseSeeds('3,0-1')).toEqual([3, 0, 1]);
    for (const bad of ['', 'a', '4-2', '1,1', '-1']) expect(() => parseSeeds(bad)).toThrow(UsageError);
  });
});

describe('a reduced protection benchmark on SynthDomains with the shipped CLIP', () => {
  let dir: string;
  let clip: Clip;
  let result: BenchmarkResult;
  let root: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ipclip-benchmark-'));
    const synth = await generateSynthDomains({ out: join(dir, 'synth'), perClass: 12, seed: 0, size: 64 });
    root = synth.root;
    clip = await Clip.load(SHIPPED);
    result = await runProtectionBenchmark({
      clip, data: synth.root, authorized: 'photo', unauthorized: 'sketch', others: ['sketch', 'clipart'],
      scenarios: ['target-specified'], seeds: [0], recipe: { epochs: 6, lr: 0.0005 },
    });
  }, 600_000);

  afterAll(async () => {
    clip?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('keeps the authorized domain and suppresses the unauthorized one', () => {
    const s = result.scenarios[0]!;
    const photo = s.sets.photo!;
    const sketch = s.sets.sketch!;
    // Zero-shot CLIP recognises both domains; the protected prompt must keep photo and push sketch towards
    // chance (0.1): a method that does nothing, or destroys everything, fails one of these.
    expect(sketch.zeroShot.mean).toBeGreaterThan(0.6);
    expect(photo.protected.mean).toBeGreaterThan(0.6);
    expect(sketch.protected.mean).toBeLessThan(0.35);
    expect(photo.protected.mean - sketch.protected.mean).toBeGreaterThan(0.35);
    // The reference (CE on photo only) does not suppress sketch.
    expect(sketch.reference.mean).toBeGreaterThan(sketch.protected.mean + 0.3);
    expect(result.runs).toHaveLength(1);
    expect(result.runs[0]!.sets.photo!.n).toBeGreaterThan(0);
  });

  it('scenarios share a reference only when their authorized stream and recipe are the same', async () => {
    // Target-specified and ownership train their reference on the clean authorized images with the same recipe:
    // one reference for both. Target-free, given a recipe of its own (no feature cache), trains its own reference
    // that way too; before the fix it was handed the cached-feature reference of target-specified.
    const references: string[] = [];
    const r = await runProtectionBenchmark({
      clip, data: root, authorized: 'photo', unauthorized: 'sketch', others: ['sketch'],
      scenarios: ['target-specified', 'ownership', 'target-free'], seeds: [1],
      recipe: { 'target-specified': { epochs: 1 }, ownership: { epochs: 1 }, 'target-free': { epochs: 1, featureCache: false } },
      onProgress: (e) => { if (e.stage === 'reference' && !e.training) references.push(e.scenario); },
    });
    expect(references).toEqual(['target-specified', 'target-free']);
    expect(r.scenarios.map((s) => s.recipe.featureCache)).toEqual([true, true, false]);
    // The shared reference scores the same on photo in both scenarios that use it.
    const photo = (s: string) => r.runs.find((x) => x.scenario === s)!.sets.photo!.reference;
    expect(photo('ownership')).toBe(photo('target-specified'));
  }, 600_000);

  it('writes benchmark.json and a self-contained HTML page with a bar per set and model, a dot per seed and the checks', async () => {
    const files = await writeBenchmark(join(dir, 'out'), result);
    const json = JSON.parse(await readFile(files.json, 'utf8')) as BenchmarkResult;
    expect(json.scenarios[0]!.sets.photo!.protected.mean).toBe(result.scenarios[0]!.sets.photo!.protected.mean);
    const html = await readFile(files.html, 'utf8');
    expect(html).toBe(renderBenchmarkPage(result));
    expect(html).not.toMatch(/<script|(?:src|href)="https?:/);
    // 3 sets × 3 models: one bar and one dot (one seed) each.
    expect(html.match(/<rect class="bar"/g)).toHaveLength(9);
    expect(html.match(/<circle class="seed"/g)).toHaveLength(9);
    expect(html).toContain('data-scenario="target-specified"');
  });
});
