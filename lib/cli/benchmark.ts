/**
 * `ipclip benchmark`: every protection scenario × N seeds (lib/ipclip/benchmark.ts), a table of mean ± std per
 * set, `benchmark.json` and `benchmark.html`. Exit code 0 when every scenario passes on every seed, 1 otherwise.
 */
import { join } from 'node:path';
import { Writable } from 'node:stream';
import {
  DEFAULT_RECIPE, DEFAULT_TARGETS, runProtectionBenchmark, type BenchmarkRecipe, type BenchmarkResult, type BenchmarkTargets,
} from '../ipclip/benchmark.js';
import { PROTECTION_SCENARIOS, type ProtectionScenario } from '../ipclip/scenario.js';
import { DataParallel } from '../ipclip/trainer/distributed.js';
import type { Preset } from '../ipclip/schedule.js';
import { ProgressBar } from '../tools/progress.js';
import { writeBenchmark } from '../tools/report/benchmark-page.js';
import { generateSynthDomains } from '../tools/synth/synth.js';
import { UsageError, bool, choice, int, list, positiveNumber, str, type Command, type Io, type Parsed } from './args.js';
import { CLIP_FLAGS, JSON_FLAG, clipDtypeFlag, loadClipFromFlags, pct, printJson, table, withInterrupt } from './common.js';
import { DATA_PARALLEL_FLAGS, launchIfAsked, rankFromEnv } from './launch.js';

const PRESETS = ['paper', 'official'] as const satisfies readonly Preset[];

/** `--seeds 0-4` or `--seeds 0,2,7`. */
export function parseSeeds(text: string): number[] {
  const out: number[] = [];
  for (const part of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const range = /^(\d+)-(\d+)$/.exec(part);
    if (range) {
      const [a, b] = [Number(range[1]), Number(range[2])];
      if (b < a || b - a > 999) throw new UsageError(`--seeds: bad range '${part}'`);
      for (let s = a; s <= b; s++) out.push(s);
    } else if (/^\d+$/.test(part)) {
      out.push(Number(part));
    } else {
      throw new UsageError(`--seeds: '${part}' is not a seed or a range like 0-4`);
    }
  }
  if (out.length === 0) throw new UsageError('--seeds needs at least one seed');
  if (new Set(out).size !== out.length) throw new UsageError('--seeds: a seed is repeated');
  return out;
}

const fraction = (p: Parsed, name: string): number | undefined => {
  if (str(p, name) === undefined) return undefined;
  const v = Number(str(p, name));
  if (!Number.isFinite(v) || v < 0 || v > 1) throw new UsageError(`--${name} must be a number in [0, 1], got '${str(p, name)}'`);
  return v;
};

const pm = (s: { mean: number; std: number }) => `${(100 * s.mean).toFixed(1)} ± ${(100 * s.std).toFixed(1)}`;

/** The text summary: per scenario, a row per set and the metrics, then the verdict. */
export function benchmarkTable(result: BenchmarkResult): string {
  const lines: string[] = [];
  for (const s of result.scenarios) {
    lines.push('', `${s.scenario}: ${s.pass ? 'PASS' : 'FAIL'} on ${s.passedSeeds.length}/${s.passedSeeds.length + s.failedSeeds.length} seeds` +
      `${s.failedSeeds.length ? ` (failing seeds: ${s.failedSeeds.join(', ')})` : ''}`);
    lines.push(table(['set', 'role', 'zero-shot %', 'reference %', 'IP-CLIP %'], Object.entries(s.sets).map(([name, v]) => [
      name, name === s.authorizedSet ? 'authorized' : s.scoredSets.includes(name) ? 'unauthorized' : 'unseen',
      pm(v.zeroShot), pm(v.reference), pm(v.protected),
    ])));
    lines.push(`retention vs best ${s.metrics.retention.mean.toFixed(3)} ± ${s.metrics.retention.std.toFixed(3)}, ` +
      `vs reference ${s.metrics.retentionVsReference.mean.toFixed(3)}, suppression ${s.metrics.suppression.mean.toFixed(3)}` +
      (s.metrics.pValue ? `, watermark p ≤ ${Math.max(...s.metrics.pValue.values).toExponential(1)}` : ''));
    for (const r of result.runs.filter((x) => x.scenario === s.scenario && !x.pass)) {
      for (const c of r.checks.filter((x) => !x.pass)) {
        lines.push(`  seed ${r.seed}: FAIL ${c.name}: ${c.name.includes('p <') ? c.value.toExponential(1) : pct(c.value)} (limit ${c.name.includes('p <') ? c.limit : pct(c.limit)})`);
      }
    }
  }
  lines.push('', `${result.pass ? 'PASS' : 'FAIL'}: ${result.scenarios.filter((s) => s.pass).length} of ${result.scenarios.length} scenarios pass on every seed ` +
    `(${result.seeds.length} seeds, ${Math.round(result.seconds)} s)`);
  return lines.join('\n');
}

/** `ipclip benchmark`. */
export const benchmarkCommand: Command = {
  name: 'benchmark',
  summary: 'Every protection scenario over several seeds: mean ± std per set, pass/fail; writes benchmark.json and .html.',
  usage: 'benchmark [--data ROOT] [--authorized D] [--unauthorized D] [--scenarios a,b] [--seeds 0-4] [flags]',
  flags: {
    data: { type: 'string', value: 'dir', help: 'dataset root, one folder per domain (default: SynthDomains rendered into .cache/synth)' },
    'per-class': { type: 'string', value: 'n', help: 'SynthDomains only: images per domain and class (default 50)' },
    authorized: { type: 'string', value: 'domain', help: 'the authorized domain (default photo)' },
    unauthorized: { type: 'string', value: 'domain', help: "target-specified's unauthorized domain (default sketch)" },
    others: { type: 'string', value: 'list', help: 'domains scored besides the authorized one (default: all other folders)' },
    scenarios: { type: 'string', value: 'list', help: `scenarios to run (default all: ${PROTECTION_SCENARIOS.join(',')})` },
    seeds: { type: 'string', value: 'list', help: "seeds, e.g. '0-4' (default) or '0,3'" },
    'train-fraction': { type: 'string', value: 'x', help: 'share of each domain used for training (default 0.6)' },
    epochs: { type: 'string', value: 'n', help: `epochs per training run (default ${DEFAULT_RECIPE.epochs})` },
    lr: { type: 'string', value: 'x', help: `peak learning rate (default ${DEFAULT_RECIPE.lr})` },
    'batch-size': { type: 'string', value: 'n', help: `images per stream per step (default ${DEFAULT_RECIPE.batchSize})` },
    preset: { type: 'string', value: 'name', help: `${PRESETS.join(' or ')} (default ${DEFAULT_RECIPE.preset})` },
    'no-feature-cache': { type: 'boolean', help: 'train on augmented images (crop + flip) instead of cached test-transform features' },
    'train-enhancer': { type: 'boolean', help: 'also train the enhancement module' },
    'clamp-per-sample': { type: 'boolean', help: 'bound the unauthorized cross-entropy per sample (beyond the paper; paper preset)' },
    retention: { type: 'string', value: 'x', help: 'target: protected authorized ≥ x · max(reference, zero-shot) (default 0.97; 0.95 target-free, authorization)' },
    margin: { type: 'string', value: 'x', help: 'target: unauthorized sets ≤ chance + x (default 0.05; 0.10 target-free, authorization)' },
    'reference-slack': { type: 'string', value: 'x', help: 'target: reference ≥ zero-shot − x on the authorized set (default 0.01)' },
    'p-value': { type: 'string', value: 'x', help: 'target (ownership): watermark collapse p below x (default 1e-9)' },
    out: { type: 'string', value: 'dir', help: 'where benchmark.json and benchmark.html go (default out/benchmark)' },
    ...DATA_PARALLEL_FLAGS,
    ...CLIP_FLAGS,
    ...JSON_FLAG,
  },
  details: `Per seed: split each domain (the seed draws the split), score zero-shot CLIP, train the reference (CE on the
authorized stream only) and the protected prompt with the same recipe, and score the three on the scenario's
sets (ownership and authorization add watermarked sets). Targets per seed: reference ≥ zero-shot − slack;
protected authorized ≥ retention · max(reference, zero-shot); every scored unauthorized set ≤ chance + margin;
ownership also needs the watermark collapse significant (one-sided binomial, p below --p-value).
Data parallelism: --nproc-per-node N runs every training and evaluation of the benchmark over N local ranks
(under torchrun, or any launcher setting RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, each process is
one rank); --batch-size is per rank. Rank 0 prints and writes the report.
Exit code 0 when every scenario passes on every seed, 1 otherwise, 130 when stopped with Ctrl-C.`,
  async run(p: Parsed, io: Io): Promise<number> {
    const launched = await launchIfAsked(p, io, 'benchmark');
    if (launched !== null) return launched;
    const json = bool(p, 'json');
    const scenarios = (list(p, 'scenarios') ?? PROTECTION_SCENARIOS.slice()).map((s) => {
      if (!PROTECTION_SCENARIOS.includes(s as ProtectionScenario)) throw new UsageError(`--scenarios: unknown scenario '${s}' (${PROTECTION_SCENARIOS.join(', ')})`);
      return s as ProtectionScenario;
    });
    const seeds = parseSeeds(str(p, 'seeds') ?? '0-4');
    const trainFraction = fraction(p, 'train-fraction') ?? 0.6;
    if (trainFraction <= 0 || trainFraction >= 1) throw new UsageError('--train-fraction must be in (0, 1)');
    const recipe: Partial<BenchmarkRecipe> = {
      ...(str(p, 'epochs') ? { epochs: int(p, 'epochs', DEFAULT_RECIPE.epochs, 1, 10_000) } : {}),
      ...(str(p, 'lr') ? { lr: positiveNumber(p, 'lr', DEFAULT_RECIPE.lr) } : {}),
      ...(str(p, 'batch-size') ? { batchSize: int(p, 'batch-size', DEFAULT_RECIPE.batchSize, 2, 4096) } : {}),
      ...(str(p, 'preset') ? { preset: choice<Preset>(p, 'preset', PRESETS, DEFAULT_RECIPE.preset) } : {}),
      ...(bool(p, 'no-feature-cache') ? { featureCache: false } : {}),
      ...(bool(p, 'train-enhancer') ? { trainEnhancer: true } : {}),
      ...(bool(p, 'clamp-per-sample') ? { clampPerSample: true } : {}),
    };
    const override: Partial<BenchmarkTargets> = {
      ...(fraction(p, 'retention') !== undefined ? { retention: fraction(p, 'retention')! } : {}),
      ...(fraction(p, 'margin') !== undefined ? { margin: fraction(p, 'margin')! } : {}),
      ...(fraction(p, 'reference-slack') !== undefined ? { referenceSlack: fraction(p, 'reference-slack')! } : {}),
      ...(fraction(p, 'p-value') !== undefined ? { pValue: fraction(p, 'p-value')! } : {}),
    };
    const targets = Object.fromEntries(scenarios.map((s) => [s, { ...DEFAULT_TARGETS[s], ...override }]));
    const authorized = str(p, 'authorized') ?? 'photo';
    const unauthorized = str(p, 'unauthorized') ?? 'sketch';
    const others = list(p, 'others');
    const outDir = str(p, 'out') ?? join('out', 'benchmark');
    clipDtypeFlag(p); // a bad --dtype is a usage error before any data is rendered

    // One rank of a data-parallel job (else null): joined before the data exists, so that rank 0 alone renders
    // the default SynthDomains while the others wait, then reuse its images.
    const dist = rankFromEnv(p);
    const main = dist === null || dist.rank === 0;
    const stderr = main ? io.stderr : new Writable({ write: (_chunk, _enc, done) => done() });
    const group = dist ? await DataParallel.join(dist) : undefined;
    return withInterrupt(io, async (signal) => {
      let data = str(p, 'data');
      if (data === undefined) {
        const perClass = int(p, 'per-class', 50, 2, 10_000);
        if (group && !main) await group.barrier();
        const bar = new ProgressBar(perClass * 10 * 4, { stream: stderr, label: 'render SynthDomains' });
        const synth = await generateSynthDomains({ out: join('.cache', 'synth'), perClass, seed: 0, size: 64, signal, onProgress: (d) => bar.update(d) });
        bar.done(`SynthDomains: ${synth.count} images in ${synth.root}${synth.reused ? ' (cached)' : ''}`);
        if (group && main) await group.barrier();
        data = synth.root;
      } else if (str(p, 'per-class') !== undefined) {
        throw new UsageError('--per-class only applies to the SynthDomains default (without --data)');
      }
      const clip = await loadClipFromFlags(p);
      try {
        let bar: ProgressBar | undefined;
        let current = '';
        const result = await runProtectionBenchmark({
          clip, data, authorized, unauthorized, ...(others ? { others } : {}), scenarios, seeds, trainFraction, recipe, targets, signal,
          ...(group ? { distributed: group } : {}),
          onProgress: (e) => {
            if (!main) return;
            const label = `${e.scenario} seed ${e.seed} ${e.stage} (run ${e.runsDone + 1}/${e.runsTotal})`;
            if (label !== current) {
              bar?.done();
              bar = undefined;
              current = label;
              if (e.stage === 'evaluate') io.stderr.write(`${label}\n`);
            }
            if (e.training) {
              bar ??= new ProgressBar(e.training.totalIterations, { stream: io.stderr, label });
              bar.update(e.training.iteration, { etaSeconds: e.training.etaSeconds, note: `epoch ${e.training.epoch + 1}` });
            }
          },
        });
        bar?.done();
        if (main) {
          const files = await writeBenchmark(outDir, result);
          if (json) printJson(io, result);
          else io.stdout.write(`${benchmarkTable(result)}\nwrote ${files.json} and ${files.html}\n`);
        }
        // Rank 0 carries the verdict: a launcher stops the other ranks when one exits non-zero, and a failed
        // check is not a failed rank (rank 0 may still be writing the report).
        return result.pass || !main ? 0 : 1;
      } finally {
        clip.dispose();
      }
    }).finally(() => group?.close());
  },
};
