/**
 * `ipclip eval` and `ipclip verify-ownership`: score a trained prompt on test splits.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { readCheckpoint, type RunRecord } from '../ipclip/checkpoint.js';
import { DomainDataset, SPLIT_RULE } from '../data/dataset.js';
import { IpclipError } from '../core/errors.js';
import { Evaluator, refuseTrainingImages } from '../ipclip/evaluator.js';
import { PromptModel } from '../ipclip/prompt-model.js';
import {
  SCENARIOS, SCENARIO_DESCRIPTORS, authorizedImages, describeEvaluation, isProtectionScenario, isScenario, needsOtherDomains, referenceFits,
  resolveScenario, type ResolvedScenario,
} from '../ipclip/scenario.js';
import { UsageError, bool, int, list, positiveNumber, required, str, type Command, type Io, type Parsed } from './args.js';
import {
  BAD_IMAGE_FLAG, CLIP_FLAGS, JSON_FLAG, dataRoot, domainTest, loadClipFromFlags, onBadImageFlag, pct, printJson, progressOf, resolveCheckpoint,
  splitSizes, withInterrupt, type SplitFlags,
} from './common.js';
import { evaluationPlan, rowsOf, rowsTable } from './sets.js';

const SPLIT_FLAGS = {
  seed: { type: 'string', value: 'n', help: "split seed (default: the checkpoint's run record, else its training seed)" },
  'split-sizes': { type: 'string', value: 'spec', help: "the training's --split-sizes (default: the checkpoint's run record, else 80%/20%)" },
  'ignore-run': { type: 'boolean', help: "score other data or another authorized domain / scenario than the checkpoint's run record names" },
  ...BAD_IMAGE_FLAG,
} as const;

/** The data and split settings of an evaluation: flags first, else the checkpoint's run record. */
interface EvalSetup {
  root: string;
  authorized: string;
  split: SplitFlags;
  /** The checkpoint's scenario (training metadata or run record), or `--scenario`. */
  scenario: string | undefined;
  /** A reference checkpoint's `referenceFor` (training metadata). */
  referenceFor: string | undefined;
  run: RunRecord | undefined;
  /** The domain the run trained U on (target-specified). */
  recordedUnauthorized: string | null;
}

/**
 * Reads the checkpoint's run record and fills in what the flags leave out: `--data`, `--authorized`, `--seed`,
 * `--split-sizes` and `--on-bad-image` default to the record. A given `--data`, `--authorized` or `--scenario`
 * that contradicts it is `ERR_MISMATCH` unless `--ignore-run`.
 */
async function evalSetup(p: Parsed, file: string): Promise<EvalSetup> {
  const meta = (await readCheckpoint(file)).meta;
  const run = meta?.run;
  const ignore = bool(p, 'ignore-run');
  const refuse = (what: string, was: string, now: string, flag: string) => {
    if (!ignore) {
      throw new IpclipError('ERR_MISMATCH', `${file} was trained with ${what} '${was}', not '${now}' (its run record); ` +
        `drop ${flag} to use the recorded one, or pass --ignore-run to score these sets anyway`);
    }
  };
  if (run?.split && run.split.version !== SPLIT_RULE.version) {
    throw new IpclipError('ERR_MISMATCH', `${file} records split rule ${run.split.rule}/${run.split.version}; this version cuts ` +
      `${SPLIT_RULE.name}/${SPLIT_RULE.version}, so its test split cannot be cut again`);
  }
  let root: string;
  if (str(p, 'data') === undefined && run?.data) {
    root = existsSync(run.data.resolved) ? run.data.resolved : run.data.root;
    if (!existsSync(root)) throw new IpclipError('ERR_FILE_NOT_FOUND', `the run's data root ${run.data.resolved} is gone; pass --data`);
  } else {
    root = dataRoot(p);
    if (run?.data && resolve(root) !== run.data.resolved) refuse('the data root', run.data.resolved, resolve(root), '--data');
  }
  const given = str(p, 'authorized');
  const authorized = given ?? run?.authorized;
  if (authorized === undefined || authorized === '') throw new UsageError('--authorized is required (the checkpoint has no run record naming it)');
  if (given !== undefined && run && run.authorized !== given) refuse('the authorized domain', run.authorized, given, '--authorized');
  const recordedScenario = meta?.training?.scenario ?? run?.scenario;
  const flag = str(p, 'scenario');
  if (flag !== undefined) {
    if (!isScenario(flag)) throw new UsageError(`--scenario must be one of ${SCENARIOS.join(', ')}; got '${flag}'`);
    if (recordedScenario !== undefined && recordedScenario !== flag) refuse('the scenario', recordedScenario, flag, '--scenario');
  }
  const scenario = flag ?? recordedScenario;
  const split = run?.split ?? null;
  const seed = str(p, 'seed') !== undefined ? int(p, 'seed', 0, 0, 0xffffffff) : split?.seed ?? meta?.training?.seed ?? meta?.seed ?? 0;
  const sizes = splitSizes(p) ?? (split ? split.preset ?? split.sizes ?? undefined : undefined);
  const trainFraction = sizes === undefined && split?.trainFraction != null ? split.trainFraction : undefined;
  const onBadImage = onBadImageFlag(p, split?.onBadImage ?? 'error');
  return {
    root, authorized, scenario, referenceFor: meta?.training?.referenceFor, run, recordedUnauthorized: run?.unauthorized ?? null,
    split: { seed, onBadImage, ...(sizes !== undefined ? { sizes } : {}), ...(trainFraction !== undefined ? { trainFraction } : {}) },
  };
}

/**
 * A reference trained on another kind of authorized images than the protected prompt's scenario scores on
 * (clean vs watermarked) would give meaningless metrics: refused with `ERR_MISMATCH`.
 */
async function checkReference(refFile: string, scenario: string): Promise<void> {
  const t = (await readCheckpoint(refFile)).meta?.training;
  const referenceOf = t && isScenario(t.scenario) ? SCENARIO_DESCRIPTORS[t.scenario].referenceOf : null;
  if (!t || !referenceOf || !isProtectionScenario(scenario)) return;
  const was = t.referenceFor ?? referenceOf.default; // references from before referenceFor trained on the default's images
  if (isProtectionScenario(was) && !referenceFits(scenario, was)) {
    throw new IpclipError('ERR_MISMATCH', `the reference ${refFile} was trained for ${was} (${authorizedImages(was)} ` +
      `authorized images), but a ${scenario} prompt is scored on ${authorizedImages(scenario)} ones: ` +
      `train the reference with --scenario reference --reference-for ${scenario}`);
  }
}

/** The scenario a checkpoint is scored as: a reference with the `referenceFor` it recorded (absent: its default). */
function resolvedFor(scenario: string, referenceFor: string | undefined, file: string): ResolvedScenario {
  if (!isScenario(scenario)) {
    throw new IpclipError('ERR_BAD_FILE', `${file} records scenario '${scenario}', which this version does not know (${SCENARIOS.join(', ')})`);
  }
  const of = SCENARIO_DESCRIPTORS[scenario].referenceOf && isProtectionScenario(referenceFor) ? referenceFor : undefined;
  return resolveScenario(scenario, of);
}

/** One line per protection scenario: the sets it is scored on. */
function evaluationLines(): string {
  return Object.entries(SCENARIO_DESCRIPTORS).filter(([, d]) => d.evaluation)
    .map(([name, d]) => `  ${name.padEnd(17)} ${describeEvaluation(d.evaluation!)}`).join('\n');
}

/** `ipclip eval`. */
export const evalCommand: Command = {
  name: 'eval',
  summary: 'Accuracy and macro-F1 of a trained prompt per test set; with --reference, the protection metrics.',
  usage: 'eval --checkpoint FILE [--data DIR] [--authorized DOMAIN] [--unauthorized A,B] [--reference FILE] [flags]',
  flags: {
    checkpoint: { type: 'string', value: 'file', help: 'the protected prompt (a checkpoint, or a run folder)' },
    reference: { type: 'string', value: 'file', help: 'the unprotected reference prompt (scenario reference) for the metrics' },
    data: { type: 'string', value: 'dir', help: "dataset root: <dir>/<domain>/<class>/<image> (default: the checkpoint's run record)" },
    authorized: { type: 'string', value: 'domain', help: "the authorized domain (default: the checkpoint's run record)" },
    unauthorized: { type: 'string', value: 'list', help: 'unauthorized domains, comma-separated (default: the trained one for target-specified, else all others)' },
    scenario: { type: 'string', value: 'name', help: 'which sets to score, for a prompt without training metadata (e.g. a saved prompt.safetensors)' },
    'no-zero-shot': { type: 'boolean', help: 'skip zero-shot CLIP' },
    ...SPLIT_FLAGS,
    ...CLIP_FLAGS,
    ...JSON_FLAG,
  },
  details: `The sets follow the checkpoint's scenario (a reference: the scenario it is the reference of):
${evaluationLines()}
A prompt without training metadata needs --scenario.

A checkpoint written by \`ipclip train\` records its run: data root, domains, split rule, sizes and seed. These
are the defaults, so the test splits are the training's; a different --data, --authorized or --scenario is
refused (ERR_MISMATCH) unless --ignore-run, and a set holding images of the run's training split is always
refused. Metrics (method §7): retention = protected / reference accuracy on the authorized set; suppression = how
far each unauthorized accuracy fell from the reference's towards chance; protection = their harmonic mean.`,
  async run(p: Parsed, io: Io): Promise<number> {
    const json = bool(p, 'json');
    const file = resolveCheckpoint(required(p, 'checkpoint', 'the trained prompt'));
    const refFile = str(p, 'reference') === undefined ? undefined : resolveCheckpoint(str(p, 'reference')!);
    const setup = await evalSetup(p, file);
    const { root, authorized, split, run } = setup;
    const scenario = setup.scenario;
    if (scenario === undefined) {
      throw new UsageError(`${file} has no training metadata, so its scenario is unknown: pass --scenario (${SCENARIOS.join(', ')})`);
    }
    const resolved = resolvedFor(scenario, setup.referenceFor, file);
    // A run with a U domain of its own is scored against that domain unless told otherwise.
    const others = list(p, 'unauthorized') ?? (resolved.streams.source === 'own' && setup.recordedUnauthorized
      ? [setup.recordedUnauthorized] : (await DomainDataset.listDomains(root)).filter((d) => d !== authorized));
    if (others.includes(authorized)) throw new UsageError('--unauthorized must not include the authorized domain');
    if (needsOtherDomains(resolved.evaluation) && others.length === 0) throw new UsageError('no unauthorized domain to evaluate: pass --unauthorized');
    if (refFile) await checkReference(refFile, scenario);
    const plan = await evaluationPlan(resolved.evaluation, root, authorized, others, split);
    const clip = await loadClipFromFlags(p);
    const prompts: PromptModel[] = [];
    try {
      const prompt = await PromptModel.load(clip, file);
      prompts.push(prompt);
      const reference = refFile ? await PromptModel.load(clip, refFile, { classNames: [...prompt.classNames] }) : undefined;
      if (reference) prompts.push(reference);
      const progress = progressOf(io, 'eval', json);
      const report = await withInterrupt(io, (signal) => new Evaluator(clip, { zeroShot: !bool(p, 'no-zero-shot') }).evaluate(prompt, {
        authorized: plan.authorized, unauthorized: plan.unauthorized, ...(reference ? { reference } : {}), ...(run ? { run } : {}),
      }, { onProgress: progress.onProgress, signal })).finally(progress.done);
      const rows = rowsOf(report, plan.authorizedName);
      if (json) {
        printJson(io, {
          checkpoint: file, reference: refFile ?? null, scenario, data: root, authorized, seed: split.seed,
          splitSizes: split.sizes ?? null, trainFraction: split.trainFraction ?? (split.sizes === undefined ? 0.8 : null),
          chance: report.chance, sets: rows, metrics: report.metrics, skippedImages: report.skippedImages,
        });
        return 0;
      }
      io.stdout.write(`${file} (${scenario}), chance ${pct(report.chance)}\n${rowsTable(rows)}\n`);
      if (report.skippedImages.length > 0) io.stdout.write(`(${report.skippedImages.length} unreadable images skipped)\n`);
      const m = report.metrics;
      if (m) {
        io.stdout.write(`\nretention ${m.retention.toFixed(3)}  suppression ${m.suppression.toFixed(3)}  protection ${m.protection.toFixed(3)}` +
          `  (drop on authorized ${pct(m.dropA)}, mean drop on unauthorized ${pct(m.dropU)})\n`);
      }
      return 0;
    } finally {
      for (const x of prompts) x.dispose();
      clip.dispose();
    }
  },
};

/** `ipclip verify-ownership`. */
export const verifyOwnershipCommand: Command = {
  name: 'verify-ownership',
  summary: 'Ownership evidence: accuracy on clean vs watermarked test images, with a one-sided binomial test.',
  usage: 'verify-ownership --checkpoint FILE [--data DIR] [--authorized DOMAIN] [--alpha 0.01] [flags]',
  flags: {
    checkpoint: { type: 'string', value: 'file', help: 'the prompt trained with --scenario ownership' },
    data: { type: 'string', value: 'dir', help: "dataset root: <dir>/<domain>/<class>/<image> (default: the checkpoint's run record)" },
    authorized: { type: 'string', value: 'domain', help: "the domain the owner trained on (default: the checkpoint's run record)" },
    alpha: { type: 'string', value: 'p', help: 'significance level (default 0.01)' },
    ...SPLIT_FLAGS,
    ...CLIP_FLAGS,
    ...JSON_FLAG,
  },
  details: `Ownership is supported when the clean accuracy is significantly above chance (p < alpha) and the
watermarked accuracy is not. The exit code is 0 whenever the test ran (read the verdict), 1 on failure.`,
  async run(p: Parsed, io: Io): Promise<number> {
    const file = resolveCheckpoint(required(p, 'checkpoint', 'the trained prompt'));
    const alpha = positiveNumber(p, 'alpha', 0.01);
    if (alpha >= 1) throw new UsageError(`--alpha must be below 1, got ${alpha}`);
    const { root, authorized, split, run, scenario } = await evalSetup(p, file);
    // Only a scenario whose descriptor says so leaves ownership evidence in the prompt (the watermark it was taught).
    if (scenario !== undefined && !(isScenario(scenario) && SCENARIO_DESCRIPTORS[scenario].ownershipEvidence)) {
      const evidence = SCENARIOS.filter((s) => SCENARIO_DESCRIPTORS[s].ownershipEvidence);
      throw new IpclipError('ERR_MISMATCH', `${file} was trained for the ${scenario} scenario, not ${evidence.join(' or ')}: it carries no ` +
        `watermark to verify (train one with --scenario ${evidence[0]})`);
    }
    const test = await domainTest(root, authorized, split);
    if (run) refuseTrainingImages(run, authorized, test);
    const clip = await loadClipFromFlags(p);
    try {
      using prompt = await PromptModel.load(clip, file);
      const progress = progressOf(io, 'verify', bool(p, 'json'));
      const r = await withInterrupt(io, (signal) => new Evaluator(clip, { zeroShot: false })
        .evaluateOwnership(prompt, test, { alpha, onProgress: progress.onProgress, signal })).finally(progress.done);
      if (bool(p, 'json')) {
        printJson(io, { checkpoint: file, n: r.clean.n, clean: r.clean, watermarked: r.watermarked, ...r.evidence });
        return 0;
      }
      const e = r.evidence;
      io.stdout.write([
        `clean        ${pct(e.cleanAccuracy)} of ${r.clean.n}  (p above chance ${e.pValueCleanAboveChance.toExponential(2)})`,
        `watermarked  ${pct(e.watermarkedAccuracy)} of ${r.watermarked.n}  (p above chance ${e.pValueWatermarkedAboveChance.toExponential(2)})`,
        `chance       ${pct(e.chance)}, alpha ${alpha}`,
        `verdict: ${e.supported ? 'OWNERSHIP SUPPORTED' : 'NOT SUPPORTED'} (${e.verdict})`,
        '',
      ].join('\n'));
      return 0;
    } finally {
      clip.dispose();
    }
  },
};
