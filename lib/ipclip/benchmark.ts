/**
 * {@link runProtectionBenchmark}: every protection scenario × several seeds on one dataset and one CLIP, scored
 * against zero-shot CLIP and the unprotected reference, with mean ± std per set and pass/fail against targets.
 *
 * One seed is not a result: the same code on the same data gave authorized accuracies from 49 % to 84 % over four
 * seeds before the recipe was fixed. A claim about protection is therefore a claim about the distribution over
 * seeds, and every figure here comes with its spread and its per-seed values.
 */
import type { Clip } from '../clip/clip.js';
import { check, IpclipError } from '../core/errors.js';
import { DomainDataset } from '../data/dataset.js';
import { AUTHORIZED_SET, Evaluator, type EvalSet } from './evaluator.js';
import { binomialTestLess } from './metrics.js';
import { PromptModel } from './prompt-model.js';
import {
  PROTECTION_SCENARIOS, REFERENCE_SCENARIO, SCENARIO_DESCRIPTORS, WATERMARK_SUFFIX, evaluationSets, resolveScenario, trainingStreams, type ProtectionScenario,
} from './scenario.js';
import type { Preset } from './schedule.js';
import { IPTrainer, type TrainProgress } from './trainer/trainer.js';
import { dataParallelOption, withDataParallel, type DataParallel, type DistributedOptions } from './trainer/distributed.js';
import type { DisguiseOptions } from './trainer/disguise.js';

/**
 * What a scenario must reach, per seed (accuracies as fractions).
 * @category Evaluation
 */
export interface BenchmarkTargets {
  /** The reference on the authorized set must reach zero-shot − this (prompt learning must not hurt). */
  referenceSlack: number;
  /** Protected authorized accuracy ≥ this × best, best = max(reference, zero-shot) on the authorized set. */
  retention: number;
  /** Every scored unauthorized set ≤ chance + this. */
  margin: number;
  /** Ownership only: the watermark collapse must be significant below this p-value (see {@link BenchmarkRun}). */
  pValue?: number;
}

/**
 * The targets: the paper's claim (authorized accuracy kept, unauthorized at chance) made checkable.
 * @category Evaluation
 */
export const DEFAULT_TARGETS: Readonly<Record<ProtectionScenario, Readonly<BenchmarkTargets>>> = Object.freeze({
  'target-specified': { referenceSlack: 0.01, retention: 0.97, margin: 0.05 },
  'target-free': { referenceSlack: 0.01, retention: 0.95, margin: 0.1 },
  ownership: { referenceSlack: 0.01, retention: 0.97, margin: 0.05, pValue: 1e-9 },
  authorization: { referenceSlack: 0.01, retention: 0.95, margin: 0.1 },
});

/**
 * The training settings of both runs of a seed (reference and protected).
 * @category Evaluation
 */
export interface BenchmarkRecipe {
  epochs: number;
  lr: number;
  batchSize: number;
  preset: Preset;
  /** See `TrainerOptions.featureCache`: the vision tower once per sample, the test transform for every stream. */
  featureCache: boolean;
  trainEnhancer: boolean;
  /**
   * The protected run's disguised-unauthorized defence (`TrainerOptions.disguisedUnauthorized`; target-specified,
   * `paper` preset; default false). The reference never reads U, so it does not depend on this field.
   */
  disguisedUnauthorized?: boolean | DisguiseOptions;
  /** The protected run's CE_U bounded per sample (`TrainerOptions.clampPerSample`, `paper` preset). */
  clampPerSample?: boolean;
}

/**
 * The benchmark's default recipe (see docs/method.md, "Recipe on small data").
 * @category Evaluation
 */
export const DEFAULT_RECIPE: Readonly<BenchmarkRecipe> = Object.freeze({
  epochs: 20, lr: 0.001, batchSize: 8, preset: 'paper', featureCache: true, trainEnhancer: false,
});

/**
 * Options of {@link runProtectionBenchmark}.
 * @category Evaluation
 */
export interface BenchmarkOptions {
  /** The frozen CLIP (the caller owns it). */
  clip: Clip;
  /** Dataset root: one folder per domain, one subfolder per class. */
  data: string;
  /** The authorized domain. */
  authorized: string;
  /** The target-specified scenario's unauthorized domain (the one it trains against). */
  unauthorized: string;
  /** Domains scored besides the authorized one (default: every other domain folder under `data`). */
  others?: string[];
  /** Default: all four protection scenarios. */
  scenarios?: ProtectionScenario[];
  /** Default 0–4. Each seed draws its own split, prompt initialisation and data order. */
  seeds?: number[];
  /** Share of each domain used for training (default 0.6; the rest is the test split). */
  trainFraction?: number;
  /** One recipe for every scenario, or per scenario; unset fields take {@link DEFAULT_RECIPE}'s. */
  recipe?: Partial<BenchmarkRecipe> | Partial<Record<ProtectionScenario, Partial<BenchmarkRecipe>>>;
  /** Per scenario; unset fields take {@link DEFAULT_TARGETS}'. */
  targets?: Partial<Record<ProtectionScenario, Partial<BenchmarkTargets>>>;
  /** Images per forward pass when evaluating (default 64). */
  evalBatchSize?: number;
  /** Loader worker threads (default: the loader's). */
  workers?: number;
  onProgress?: (event: BenchmarkProgress) => void;
  /**
   * Called with each protected prompt once it is scored, before the benchmark disposes of it (e.g. to save it and
   * run {@link runAttacks} on it later). The prompt must not be kept past the returned promise.
   */
  onProtected?: (run: { scenario: ProtectionScenario; seed: number; prompt: PromptModel }) => void | Promise<void>;
  /** Stops the benchmark after the current training step with `ERR_ABORTED`. */
  signal?: AbortSignal;
  /**
   * Data parallelism (as `TrainerOptions.distributed`): every training run and every evaluation of the benchmark
   * is sharded over the job's ranks; each rank makes the same calls and returns the whole result, so write it from
   * rank 0 only. `onProgress` and `onProtected` are called on every rank. A joined `DataParallel` is left open.
   */
  distributed?: DistributedOptions | 'env' | DataParallel;
}

/**
 * Progress of {@link runProtectionBenchmark}: which run is going, and the trainer's own progress inside it.
 * @category Evaluation
 */
export interface BenchmarkProgress {
  scenario: ProtectionScenario;
  seed: number;
  stage: 'reference' | 'protected' | 'evaluate';
  /** Runs (scenario × seed) finished so far, and in all. */
  runsDone: number;
  runsTotal: number;
  /** The trainer's progress in the `reference` and `protected` stages. */
  training?: TrainProgress;
}

/**
 * One scored set of a run: accuracies of the three models and the set's size.
 * @category Evaluation
 */
export interface BenchmarkSetScore {
  zeroShot: number;
  reference: number;
  protected: number;
  n: number;
}

/**
 * A target checked on one seed.
 * @category Evaluation
 */
export interface BenchmarkCheck {
  name: string;
  value: number;
  /** `≥ limit` or `≤ limit`. */
  op: '>=' | '<=';
  limit: number;
  pass: boolean;
}

/**
 * One scenario on one seed.
 * @category Evaluation
 */
export interface BenchmarkRun {
  scenario: ProtectionScenario;
  seed: number;
  /** Keyed by set name; the authorized one is `authorizedSet`. Watermarked sets end in `+watermark`. */
  sets: Record<string, BenchmarkSetScore>;
  authorizedSet: string;
  /** The sets whose suppression the scenario is judged on (the others are reported only). */
  scoredSets: string[];
  metrics: {
    /** max(reference, zero-shot) on the authorized set. */
    best: number;
    /** Protected / best on the authorized set (not capped). */
    retention: number;
    /** Protected / reference on the authorized set, capped at 1 (method §7's retention). */
    retentionVsReference: number;
    /** Mean over the scored sets of how far each fell from the reference towards chance (method §7). */
    suppression: number;
    /** Ownership: P(at most the watermarked correct count | the clean accuracy), one-sided binomial. */
    pValue?: number;
  };
  checks: BenchmarkCheck[];
  pass: boolean;
  seconds: number;
}

/**
 * Mean, sample standard deviation (n − 1; 0 for one value) and the values, in seed order.
 * @category Evaluation
 */
export interface Spread {
  mean: number;
  std: number;
  values: number[];
}

/**
 * One scenario over all seeds.
 * @category Evaluation
 */
export interface BenchmarkScenarioSummary {
  scenario: ProtectionScenario;
  authorizedSet: string;
  scoredSets: string[];
  sets: Record<string, { zeroShot: Spread; reference: Spread; protected: Spread; n: number }>;
  metrics: { best: Spread; retention: Spread; retentionVsReference: Spread; suppression: Spread; pValue?: Spread };
  recipe: BenchmarkRecipe;
  targets: BenchmarkTargets;
  /** Seeds on which every check passed. */
  passedSeeds: number[];
  failedSeeds: number[];
  pass: boolean;
}

/**
 * What {@link runProtectionBenchmark} returns (and `benchmark.json` holds).
 * @category Evaluation
 */
export interface BenchmarkResult {
  clip: { fingerprint: string; dtype: string; device: string };
  data: string;
  classNames: string[];
  chance: number;
  authorized: string;
  unauthorized: string;
  others: string[];
  seeds: number[];
  trainFraction: number;
  scenarios: BenchmarkScenarioSummary[];
  runs: BenchmarkRun[];
  pass: boolean;
  seconds: number;
  /** ISO date of the run. */
  date: string;
}

/** Suffix of a watermarked set's name. */
export const WATERMARKED = WATERMARK_SUFFIX;

/** Mean, sample standard deviation and the values. */
export function spread(values: number[]): Spread {
  check(values.length > 0, 'spread of no values', 'ERR_EMPTY_INPUT');
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const ss = values.reduce((a, v) => a + (v - mean) ** 2, 0);
  return { mean, std: values.length > 1 ? Math.sqrt(ss / (values.length - 1)) : 0, values: values.slice() };
}

/**
 * The test sets a scenario is scored on (method §5's "evaluated on"), by name, and which of them its
 * suppression target applies to:
 * - target-specified: the authorized domain; every other domain, scored on its unauthorized domain only;
 * - target-free: the authorized domain; every other domain, each scored;
 * - ownership: the authorized domain clean, and watermarked (scored);
 * - authorization: the authorized domain watermarked (the key); the clean authorized domain and every other
 *   domain clean and watermarked, each scored.
 */
export function benchmarkSets(scenario: ProtectionScenario, authorized: string, unauthorized: string, others: string[]):
  { authorizedSet: string; sets: { name: string; domain: string; watermark: boolean }[]; scored: string[] } {
  // The sets are the scenario descriptor's (lib/ipclip/scenario.ts); a scenario with a U domain of its own is
  // scored on that domain only, the others on every unauthorized set.
  const resolved = resolveScenario(scenario);
  const planned = evaluationSets(resolved.evaluation, authorized, others);
  const rest = planned.unauthorized;
  const scored = resolved.streams.source === 'own' ? [unauthorized] : rest.map((x) => x.name);
  return { authorizedSet: planned.authorized.name, sets: [planned.authorized, ...rest], scored };
}

function recipeFor(scenario: ProtectionScenario, r: BenchmarkOptions['recipe']): BenchmarkRecipe {
  const perScenario = r !== undefined && PROTECTION_SCENARIOS.some((s) => s in r);
  const own = perScenario ? (r as Partial<Record<ProtectionScenario, Partial<BenchmarkRecipe>>>)[scenario] ?? {} : (r as Partial<BenchmarkRecipe>) ?? {};
  const out = { ...DEFAULT_RECIPE, ...own };
  check(Number.isInteger(out.epochs) && out.epochs > 0, `recipe.epochs must be a positive integer, got ${out.epochs}`);
  check(typeof out.lr === 'number' && out.lr > 0 && Number.isFinite(out.lr), `recipe.lr must be a positive number, got ${out.lr}`);
  check(Number.isInteger(out.batchSize) && out.batchSize >= 2, `recipe.batchSize must be an integer ≥ 2, got ${out.batchSize}`);
  return out;
}

function targetsFor(scenario: ProtectionScenario, t: BenchmarkOptions['targets']): BenchmarkTargets {
  const out = { ...DEFAULT_TARGETS[scenario], ...(t?.[scenario] ?? {}) };
  for (const k of ['referenceSlack', 'retention', 'margin', 'pValue'] as const) {
    const v = out[k];
    check(v === undefined || (typeof v === 'number' && Number.isFinite(v) && v >= 0), `targets.${scenario}.${k} must be a non-negative number, got ${v}`);
  }
  return out;
}

/**
 * Runs every scenario on every seed: per seed, the domains are split (the seed draws the split), zero-shot CLIP is
 * scored, the unprotected reference (CE on the scenario's authorized stream only) and the protected prompt are
 * trained with the same recipe and seed, and the three are scored on the scenario's sets. A reference is shared by
 * the scenarios of a seed whose authorized streams and recipes are the same (target-specified, target-free and
 * ownership all train on the clean authorized images; a scenario given a recipe of its own trains its own).
 * @throws IpclipError `ERR_INVALID_ARGUMENT` for bad options, `ERR_ABORTED` when `signal` fires, `ERR_DISTRIBUTED` /
 * `ERR_MISMATCH` over ranks (as `IPTrainer`), data and native errors.
 * @category Evaluation
 */
export async function runProtectionBenchmark(opts: BenchmarkOptions): Promise<BenchmarkResult> {
  check(opts !== null && typeof opts === 'object', 'runProtectionBenchmark: expected an options object');
  check(typeof opts.data === 'string' && opts.data.length > 0, 'runProtectionBenchmark: data (the dataset root) is required');
  check(typeof opts.authorized === 'string' && opts.authorized.length > 0, 'runProtectionBenchmark: authorized (a domain) is required');
  check(typeof opts.unauthorized === 'string' && opts.unauthorized.length > 0, 'runProtectionBenchmark: unauthorized (a domain) is required');
  check(opts.unauthorized !== opts.authorized, 'runProtectionBenchmark: the unauthorized domain must differ from the authorized one');
  const started = performance.now();
  const scenarios = opts.scenarios ?? PROTECTION_SCENARIOS.slice();
  check(Array.isArray(scenarios) && scenarios.length > 0, 'runProtectionBenchmark: scenarios must be a non-empty list');
  for (const s of scenarios) check(PROTECTION_SCENARIOS.includes(s), `runProtectionBenchmark: unknown scenario '${s}' (${PROTECTION_SCENARIOS.join(', ')})`);
  const seeds = opts.seeds ?? [0, 1, 2, 3, 4];
  check(Array.isArray(seeds) && seeds.length > 0 && seeds.every((s) => Number.isInteger(s) && s >= 0),
    'runProtectionBenchmark: seeds must be a non-empty list of non-negative integers');
  check(new Set(seeds).size === seeds.length, 'runProtectionBenchmark: seeds must not repeat');
  const trainFraction = opts.trainFraction ?? 0.6;
  check(trainFraction > 0 && trainFraction < 1, `runProtectionBenchmark: trainFraction must be in (0, 1), got ${trainFraction}`);
  const others = opts.others ?? (await DomainDataset.listDomains(opts.data)).filter((d) => d !== opts.authorized);
  check(others.includes(opts.unauthorized), `runProtectionBenchmark: the unauthorized domain '${opts.unauthorized}' must be among the scored domains (${others.join(', ')})`);
  check(!others.includes(opts.authorized), 'runProtectionBenchmark: others must not contain the authorized domain');
  const recipes = new Map(scenarios.map((s) => [s, recipeFor(s, opts.recipe)]));
  const targets = new Map(scenarios.map((s) => [s, targetsFor(s, opts.targets)]));
  const job = dataParallelOption(opts.distributed);
  const clip = opts.clip;
  // Over ranks every trainer and the evaluator share one group, joined once for the whole benchmark.
  return withDataParallel(job, async (group) => {
    const evaluator = new Evaluator(clip, {
      batchSize: opts.evalBatchSize ?? 64, ...(group ? { group } : {}), ...(opts.workers !== undefined ? { workers: opts.workers } : {}),
    });
    const runs: BenchmarkRun[] = [];
    const runsTotal = scenarios.length * seeds.length;
    let classNames: string[] | null = null;

    for (const seed of seeds) {
      const splits = new Map<string, { train: DomainDataset; test: DomainDataset }>();
      for (const d of [opts.authorized, ...others]) {
        splits.set(d, await DomainDataset.splits(opts.data, { domain: d, seed, trainFraction, ...(classNames ? { classNames } : {}) }));
      }
      classNames ??= splits.get(opts.authorized)!.train.classNames;
      const chance = 1 / classNames.length;
      const references = new Map<string, PromptModel>();
      const owned: PromptModel[] = [];
      try {
        for (const scenario of scenarios) {
          const t0 = performance.now();
          const recipe = recipes.get(scenario)!;
          const target = targets.get(scenario)!;
          const progress = (stage: BenchmarkProgress['stage'], training?: TrainProgress) =>
            opts.onProgress?.({ scenario, seed, stage, runsDone: runs.length, runsTotal, ...(training ? { training } : {}) });
          const train = async (kind: 'reference' | 'protected'): Promise<PromptModel> => {
            const model = await PromptModel.create(clip, classNames!, { seed });
            owned.push(model);
            const trainer = new IPTrainer(model, {
              scenario: kind === 'protected' ? scenario : REFERENCE_SCENARIO,
              ...(kind === 'protected' ? {} : { referenceFor: scenario }),
              epochs: recipe.epochs, lr: recipe.lr, batchSize: recipe.batchSize, preset: recipe.preset, seed,
              featureCache: recipe.featureCache, trainEnhancer: recipe.trainEnhancer,
              ...(kind === 'protected' && recipe.disguisedUnauthorized ? { disguisedUnauthorized: recipe.disguisedUnauthorized } : {}),
              ...(kind === 'protected' && recipe.clampPerSample ? { clampPerSample: true } : {}),
              ...(opts.workers !== undefined ? { workers: opts.workers } : {}),
              ...(opts.signal ? { signal: opts.signal } : {}),
              ...(group ? { distributed: group } : {}),
              onProgress: (p) => progress(kind, p),
            });
            await trainer.fit({
              authorized: splits.get(opts.authorized)!.train,
              ...(kind === 'protected' && resolveScenario(scenario).streams.source === 'own' ? { unauthorized: splits.get(opts.unauthorized)!.train } : {}),
            });
            return model;
          };
          // Scenarios whose reference trains on the same authorized stream with the same recipe share it.
          const { disguisedUnauthorized: _uOnly, clampPerSample: _uTerm, ...referenceRecipe } = recipe;
          const refKey = JSON.stringify([trainingStreams(REFERENCE_SCENARIO, scenario).authorized, referenceRecipe]);
          let reference = references.get(refKey);
          if (!reference) {
            progress('reference');
            reference = await train('reference');
            references.set(refKey, reference);
          }
          progress('protected');
          const protectedModel = await train('protected');
          progress('evaluate');
          const plan = benchmarkSets(scenario, opts.authorized, opts.unauthorized, others);
          const evalSet = (s: { domain: string; watermark: boolean }): EvalSet => ({ dataset: splits.get(s.domain)!.test, watermark: s.watermark });
          const [first, ...rest] = plan.sets;
          const report = await evaluator.evaluate(protectedModel, {
            authorized: evalSet(first!),
            unauthorized: Object.fromEntries(rest.map((s) => [s.name, evalSet(s)])),
            reference,
          });
          const key = (name: string) => (name === plan.authorizedSet ? AUTHORIZED_SET : name);
          const sets: Record<string, BenchmarkSetScore> = {};
          for (const s of plan.sets) {
            const k = key(s.name);
            sets[s.name] = { zeroShot: report.zeroShot![k]!, reference: report.reference![k]!.accuracy, protected: report.sets[k]!.accuracy, n: report.sets[k]!.n };
          }
          runs.push(scoreRun(scenario, seed, sets, plan.authorizedSet, plan.scored, chance, target, report.sets, (performance.now() - t0) / 1000));
          await opts.onProtected?.({ scenario, seed, prompt: protectedModel });
          protectedModel.dispose();
          owned.splice(owned.indexOf(protectedModel), 1);
        }
      } finally {
        for (const m of owned) m.dispose();
      }
    }
    const chance = 1 / classNames!.length;
    const summaries = scenarios.map((s) => summarise(s, runs.filter((r) => r.scenario === s), recipes.get(s)!, targets.get(s)!));
    return {
      clip: { fingerprint: clip.info.fingerprint, dtype: clip.info.dtype, device: clip.info.device },
      data: opts.data, classNames: classNames!, chance, authorized: opts.authorized, unauthorized: opts.unauthorized, others,
      seeds, trainFraction, scenarios: summaries, runs, pass: summaries.every((s) => s.pass),
      seconds: (performance.now() - started) / 1000, date: new Date().toISOString(),
    };
  });
}

/** The metrics and checks of one run, from its per-set accuracies. */
export function scoreRun(scenario: ProtectionScenario, seed: number, sets: Record<string, BenchmarkSetScore>, authorizedSet: string,
  scored: string[], chance: number, target: BenchmarkTargets, counts?: Record<string, { correct: number; n: number }>, seconds = 0): BenchmarkRun {
  const a = sets[authorizedSet];
  if (!a) throw new IpclipError('ERR_INVALID_ARGUMENT', `scoreRun: no authorized set '${authorizedSet}'`);
  const best = Math.max(a.reference, a.zeroShot);
  const retention = best > 0 ? a.protected / best : 1;
  const retentionVsReference = a.reference > 0 ? Math.min(1, a.protected / a.reference) : 1;
  let suppression = 0;
  for (const name of scored) {
    const s = sets[name]!;
    const span = s.reference - chance;
    suppression += span > 0 ? Math.min(1, Math.max(0, (s.reference - s.protected) / span)) : s.protected <= chance ? 1 : 0;
  }
  suppression /= Math.max(1, scored.length);
  const checks: BenchmarkCheck[] = [
    { name: `reference ≥ zero-shot − ${target.referenceSlack}`, value: a.reference, op: '>=', limit: a.zeroShot - target.referenceSlack, pass: false },
    { name: `${authorizedSet} ≥ ${target.retention} × best`, value: a.protected, op: '>=', limit: target.retention * best, pass: false },
    ...scored.map((name) => ({ name: `${name} ≤ chance + ${target.margin}`, value: sets[name]!.protected, op: '<=' as const, limit: chance + target.margin, pass: false })),
  ];
  const metrics: BenchmarkRun['metrics'] = { best, retention, retentionVsReference, suppression };
  if (SCENARIO_DESCRIPTORS[scenario].ownershipEvidence && counts) {
    // How surprising the watermarked tally is if the model were as accurate on watermarked images as on clean ones.
    const clean = counts[AUTHORIZED_SET]!;
    const marked = counts[scored[0]!]!;
    metrics.pValue = binomialTestLess(marked.correct, marked.n, Math.min(1, Math.max(0, clean.correct / clean.n)));
    if (target.pValue !== undefined) checks.push({ name: `watermark collapse p < ${target.pValue}`, value: metrics.pValue, op: '<=', limit: target.pValue, pass: false });
  }
  // A tiny tolerance so that a value printed as equal to its limit is not failed by float round-off.
  for (const c of checks) c.pass = c.op === '>=' ? c.value >= c.limit - 1e-12 : c.value <= c.limit + 1e-12;
  return { scenario, seed, sets, authorizedSet, scoredSets: scored.slice(), metrics, checks, pass: checks.every((c) => c.pass), seconds };
}

function summarise(scenario: ProtectionScenario, runs: BenchmarkRun[], recipe: BenchmarkRecipe, targets: BenchmarkTargets): BenchmarkScenarioSummary {
  const first = runs[0]!;
  const sets: BenchmarkScenarioSummary['sets'] = {};
  for (const name of Object.keys(first.sets)) {
    const of = (k: 'zeroShot' | 'reference' | 'protected') => spread(runs.map((r) => r.sets[name]![k]));
    sets[name] = { zeroShot: of('zeroShot'), reference: of('reference'), protected: of('protected'), n: first.sets[name]!.n };
  }
  const m = (k: 'best' | 'retention' | 'retentionVsReference' | 'suppression') => spread(runs.map((r) => r.metrics[k]));
  const metrics: BenchmarkScenarioSummary['metrics'] = { best: m('best'), retention: m('retention'), retentionVsReference: m('retentionVsReference'), suppression: m('suppression') };
  if (runs.every((r) => r.metrics.pValue !== undefined)) metrics.pValue = spread(runs.map((r) => r.metrics.pValue!));
  const passedSeeds = runs.filter((r) => r.pass).map((r) => r.seed);
  return {
    scenario, authorizedSet: first.authorizedSet, scoredSets: first.scoredSets, sets, metrics, recipe, targets,
    passedSeeds, failedSeeds: runs.filter((r) => !r.pass).map((r) => r.seed), pass: passedSeeds.length === runs.length,
  };
}
