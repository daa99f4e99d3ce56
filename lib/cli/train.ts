/**
 * `ipclip train`: trains an IP prompt in any scenario on domain folders, with a resumable checkpoint, progress,
 * Ctrl-C handling, and a test-set evaluation at the end.
 */
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { readCheckpoint } from '../ipclip/checkpoint.js';
import { DomainDataset } from '../data/dataset.js';
import { IpclipError } from '../core/errors.js';
import { Evaluator, type EvaluationReport } from '../ipclip/evaluator.js';
import { LOSS_TERMS, type LossTermName } from '../ipclip/loss-terms.js';
import { ProgressBar } from '../tools/progress.js';
import { PromptModel } from '../ipclip/prompt-model.js';
import {
  DEFAULT_SCENARIO, PROTECTION_SCENARIOS, SCENARIOS, SCENARIO_DESCRIPTORS, needsOtherDomains, resolveScenario, type ProtectionScenario, type Scenario,
} from '../ipclip/scenario.js';
import { PAIRINGS, type Pairing } from '../ipclip/trainer/streams.js';
import { CHECKPOINT_FILE, IPTrainer, type TrainProgress } from '../ipclip/trainer/trainer.js';
import { DataParallel } from '../ipclip/trainer/distributed.js';
import { DATA_PARALLEL_FLAGS, launchIfAsked, rankFromEnv } from './launch.js';
import { UsageError, bool, choice, int, positiveNumber, required, str, type Command, type Io, type Parsed } from './args.js';
import {
  BAD_IMAGE_FLAG, CLIP_FLAGS, JSON_FLAG, dataRoot, domainSplits, loadClipFromFlags, onBadImageFlag, printJson, splitSizes, withInterrupt,
} from './common.js';
import { evaluationPlan, rowsOf, rowsTable, type EvalPlan, type SetRow } from './sets.js';
import type { BadImage } from '../data/dataset.js';

/** Exit code of a run stopped by Ctrl-C after writing its checkpoint (128 + SIGINT, the shell's convention). */
export const EXIT_INTERRUPTED = 130;

/** Name of the final prompt (no optimiser state) written next to the checkpoint. */
export const PROMPT_FILE = 'prompt.safetensors';

/**
 * The shown values of one step: the non-zero loss terms among `terms` (default: all of {@link LOSS_TERMS}; the
 * default line shows the scenario's `progressTerms`, which fit 80 columns, `--verbose` all) and the learning rate.
 */
export function progressValues(p: TrainProgress, terms: readonly LossTermName[] = LOSS_TERMS): Record<string, number> {
  const values: Record<string, number> = {};
  for (const k of terms) if (p.terms[k] !== 0) values[k] = p.terms[k];
  values.lr = p.lr;
  return values;
}

/** `ipclip train`. */
export const trainCommand: Command = {
  name: 'train',
  summary: 'Train an IP-CLIP prompt (or the unprotected reference) on domain folders.',
  usage: 'train --data DIR --authorized DOMAIN [--unauthorized DOMAIN] [--scenario NAME] [--out DIR] [flags]',
  flags: {
    data: { type: 'string', value: 'dir', help: 'dataset root: <dir>/<domain>/<class>/<image>' },
    authorized: { type: 'string', value: 'domain', help: 'the authorized (source) domain' },
    unauthorized: { type: 'string', value: 'domain', help: 'the unauthorized (target) domain: target-specified only' },
    scenario: { type: 'string', value: 'name', help: `${SCENARIOS.join(' | ')} (default ${DEFAULT_SCENARIO})` },
    preset: { type: 'string', value: 'name', help: "'paper' (default) or 'official' (the authors' release)" },
    pairing: { type: 'string', value: 'name', help: "paired | independent: U beside A's same images, or in its own shuffle (default: paper paired, official independent)" },
    'reference-for': { type: 'string', value: 'name', help: `scenario reference: the scenario it is the baseline of (default ${referenceDefault()})` },
    epochs: { type: 'string', value: 'n', help: 'epochs over the authorized training split (default 50)' },
    'batch-size': { type: 'string', value: 'n', help: 'images per stream per step (default 8)' },
    lr: { type: 'string', value: 'x', help: 'peak learning rate (default 0.01)' },
    seed: { type: 'string', value: 'n', help: 'seed of the prompt, the splits and the data order (default 0)' },
    'split-sizes': { type: 'string', value: 'spec', help: 'office-home | office-31 | mini-domainnet | <train>/<test> (default 80%/20%)' },
    out: { type: 'string', value: 'dir', help: 'run folder: last.safetensors (resumed if present) and prompt.safetensors' },
    fresh: { type: 'boolean', help: 'start over, deleting the checkpoint in --out' },
    'checkpoint-every': { type: 'string', value: 'n', help: 'also checkpoint every n iterations (always at each epoch end)' },
    'skip-eval': { type: 'boolean', help: 'do not evaluate on the test splits afterwards' },
    'validation-split': { type: 'string', value: 'x', help: 'hold out this share of each training split (0-1) and score it every epoch' },
    'early-stopping': { type: 'string', value: 'n', help: 'stop after n epochs without a better validation score (needs --validation-split)' },
    'restore-best': { type: 'boolean', help: 'save the best validation epoch as prompt.safetensors (needs --validation-split)' },
    extend: { type: 'boolean', help: 'continue the run in --out for more --epochs instead of refusing it' },
    'feature-cache': { type: 'boolean', help: 'run the frozen vision tower once per image (test transform instead of random crops; see the README)' },
    verbose: { type: 'boolean', help: 'show every non-zero loss term in the progress line (default: the scenario\'s, to fit 80 columns)' },
    ...DATA_PARALLEL_FLAGS,
    ...BAD_IMAGE_FLAG,
    ...CLIP_FLAGS,
    ...JSON_FLAG,
  },
  details: `Scenarios (method §5, §7):
${scenarioLines()}
A scenario without a U domain of its own draws the unauthorized stream from --authorized. The reference trains
on the authorized stream of --reference-for (watermarked images when that scenario's are, else clean ones).

The checkpoint is written after the feature banks, at every epoch end and when stopped. Running the same command
again resumes where it stopped and ends with the same parameters as an uninterrupted run; --fresh starts over.
Ctrl-C stops after the current step, writes the checkpoint and exits with code ${EXIT_INTERRUPTED}.
A finished run goes on for more epochs with a larger --epochs and --extend (the learning rate then follows the
schedule of the longer run from where it stopped).

--validation-split x holds out a share x of each class of the training split(s) (by --seed) and scores the prompt
on it after every epoch: the authorized accuracy minus how far the unauthorized one is above chance (the
authorized one alone for a reference or when the scenario has no U domain of its own). The test splits are never used for this. With
--early-stopping n the run stops after n epochs without a better score; with --restore-best the best epoch is
the prompt written (best.safetensors keeps it too). If the last authorized validation accuracy ends more than 5
points below zero-shot CLIP on the same images, a warning says that training made the classifier worse.
Afterwards the prompt is scored on the test splits (see \`ipclip eval\`).

Every image of the training and test splits is checked (header and end of file, no decode) before CLIP is
loaded: unreadable files are all listed at once (exit 1), or left out with --on-bad-image skip (they count as
absent: the split sizes are met from the other images) and listed in --json as skippedImages. Each image is
placed in train or test by a hash of its path within the domain and the seed, so adding or removing an image
moves at most one other. The checkpoint records the data root, domains, split rule, sizes and seed, and the
header-check mode: \`ipclip eval\` defaults to them, and resuming with any of them changed is refused.

Data parallelism: --nproc-per-node N starts N ranks of one job on this machine; under torchrun (or any launcher
setting RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) each process is one rank. --batch-size is per
rank: the run is the single-process run with batches of N × batch size. Rank 0 prints, writes the checkpoint and
the prompt and evaluates; rerunning the same command resumes every rank from the checkpoint.

Exit codes: 0 done, 1 failure (missing folder, bad file, ...), 2 wrong usage, ${EXIT_INTERRUPTED} stopped by Ctrl-C.`,
  run: runTrain,
};

/** One line per scenario for `--help`. */
function scenarioLines(): string {
  return Object.entries(SCENARIO_DESCRIPTORS).map(([name, d]) => `  ${name.padEnd(17)} ${d.summary}`).join('\n');
}

/** The scenario a reference is the baseline of when --reference-for is not given. */
function referenceDefault(): string {
  return Object.values(SCENARIO_DESCRIPTORS).find((d) => d.referenceOf)?.referenceOf?.default ?? DEFAULT_SCENARIO;
}

/** The scenarios whose unauthorized stream is a domain of their own (--unauthorized). */
function ownUScenarios(): Scenario[] {
  return SCENARIOS.filter((s) => SCENARIO_DESCRIPTORS[s].streams?.source === 'own');
}

async function runTrain(p: Parsed, io: Io): Promise<number> {
  const json = bool(p, 'json');
  const launched = await launchIfAsked(p, io, 'train');
  if (launched !== null) return launched;
  // One rank of a data-parallel job when torchrun's variables are set (else null: a single process).
  const dist = rankFromEnv(p);
  const main = dist === null || dist.rank === 0;
  const scenario = choice<Scenario>(p, 'scenario', SCENARIOS, DEFAULT_SCENARIO);
  const descriptor = SCENARIO_DESCRIPTORS[scenario];
  const preset = choice(p, 'preset', ['paper', 'official'] as const, 'paper');
  const pairing = str(p, 'pairing') === undefined ? undefined : choice<Pairing>(p, 'pairing', PAIRINGS, 'paired');
  const referenceFor = str(p, 'reference-for') === undefined ? undefined
    : choice<ProtectionScenario>(p, 'reference-for', PROTECTION_SCENARIOS, PROTECTION_SCENARIOS[0]!);
  if (referenceFor !== undefined && !descriptor.referenceOf) throw new UsageError('--reference-for is only used by --scenario reference');
  const resolved = resolveScenario(scenario, referenceFor);
  const ownU = resolved.streams.source === 'own';
  if (pairing === 'paired' && ownU) {
    throw new UsageError('--pairing paired needs a scenario that draws its unauthorized stream from --authorized');
  }
  const epochs = int(p, 'epochs', 50, 1);
  const batchSize = int(p, 'batch-size', 8, 2);
  const lr = positiveNumber(p, 'lr', 0.01);
  const seed = int(p, 'seed', 0, 0, 0xffffffff);
  const checkpointEvery = int(p, 'checkpoint-every', 0, 0);
  const validationSplit = str(p, 'validation-split') === undefined ? null : positiveNumber(p, 'validation-split', 0.1);
  if (validationSplit !== null && !(validationSplit < 1)) throw new UsageError(`--validation-split must be a number in (0, 1), got ${str(p, 'validation-split')}`);
  const patience = str(p, 'early-stopping') === undefined ? null : int(p, 'early-stopping', 1, 1);
  const restoreBest = bool(p, 'restore-best');
  if (validationSplit === null && (patience !== null || restoreBest)) {
    throw new UsageError(`--${patience !== null ? 'early-stopping' : 'restore-best'} needs --validation-split (the held-out share it is scored on)`);
  }
  const sizes = splitSizes(p);
  const authorized = required(p, 'authorized', 'the authorized domain, a folder under --data');
  const unauthorized = str(p, 'unauthorized');
  if (ownU && unauthorized === undefined) {
    throw new UsageError(`--unauthorized is required for the ${scenario} scenario (the target domain)`);
  }
  if (!ownU && unauthorized !== undefined) {
    throw new UsageError(`--unauthorized is only used by ${ownUScenarios().join(', ')}; ${scenario} draws its unauthorized stream from --authorized`);
  }
  if (unauthorized === authorized) throw new UsageError('--authorized and --unauthorized must be different domains');
  const out = str(p, 'out') ?? join('runs', [scenario, referenceFor, authorized, unauthorized].filter(Boolean).join('-'));
  const root = dataRoot(p);
  const onBadImage = onBadImageFlag(p);
  // Data first: a missing domain, an empty class folder or an unreadable image (of any split the run will read,
  // the test splits of the final evaluation included) fails before seconds of model loading.
  const a = await domainSplits(root, authorized, { seed, sizes, onBadImage });
  const u = unauthorized ? await domainSplits(root, unauthorized, { seed, sizes, onBadImage }) : undefined;
  // The held-out validation share comes off the training splits (never the test splits).
  const cutA = validationSplit === null ? null : a.train.holdOut(validationSplit, seed);
  const cutU = validationSplit === null || !u ? null : u.train.holdOut(validationSplit, seed);
  const trainA = cutA?.rest ?? a.train, trainU = cutU?.rest ?? u?.train;
  const say = (line: string) => { if (main) io.stderr.write(`${line}\n`); };
  let plan: EvalPlan | null = null;
  if (!bool(p, 'skip-eval')) {
    // A reference is scored on the sets of the scenario it is the baseline of (resolved.evaluation).
    const needsOthers = needsOtherDomains(resolved.evaluation);
    const others = !needsOthers ? [] : unauthorized ? [unauthorized] : (await DomainDataset.listDomains(root)).filter((d) => d !== authorized);
    if (needsOthers && others.length === 0) say('no other domain under --data to evaluate against; skipping the evaluation');
    else plan = await evaluationPlan(resolved.evaluation, root, authorized, others, { seed, sizes, onBadImage });
  }
  const skippedImages = dedupe([...a.train.skipped, ...(u?.train.skipped ?? []), ...(plan ? planSkipped(plan) : [])]);
  if (skippedImages.length > 0) {
    say(`skipping ${skippedImages.length} unreadable image${skippedImages.length === 1 ? '' : 's'} (--on-bad-image skip): ` +
      `${skippedImages.slice(0, 3).map((b) => b.path).join(', ')}${skippedImages.length > 3 ? ', ...' : ''}`);
  }
  const clip = await loadClipFromFlags(p);
  let prompt: PromptModel | undefined;
  // One rank of a job: joined once, for training and then the sharded evaluation.
  const group = dist ? await DataParallel.join(dist) : undefined;
  try {
    prompt = await PromptModel.create(clip, a.train.classNames, { seed });
    const file = join(out, CHECKPOINT_FILE);
    if (bool(p, 'fresh')) await rm(file, { force: true });
    const resuming = existsSync(file);
    say(`ipclip train: ${scenario} (${preset}), authorized ${authorized}${unauthorized ? `, unauthorized ${unauthorized}` : ''}: ` +
      `${trainA.length} training images${cutA ? ` (${cutA.validation.length} held out for validation)` : ''}, ` +
      `${trainA.numClasses} classes, ${epochs} epoch${epochs === 1 ? '' : 's'} of batch ${batchSize}`);
    say(resuming ? `resuming from ${file}` : descriptor.buildsBanks ? 'building the feature banks' : 'starting');
    let bar: ProgressBar | undefined;
    const pct = (x: number | null) => (x === null ? '-' : `${(100 * x).toFixed(1)}%`);
    const trainer = new IPTrainer(prompt, {
      scenario, preset, epochs, batchSize, lr, seed, checkpointDir: out, checkpointEvery,
      ...(pairing ? { pairing } : {}), ...(referenceFor ? { referenceFor } : {}),
      ...(bool(p, 'extend') ? { extend: true } : {}), ...(bool(p, 'feature-cache') ? { featureCache: true } : {}),
      ...(cutA ? { validation: { authorized: cutA.validation, ...(cutU ? { unauthorized: cutU.validation } : {}) } } : {}),
      ...(patience !== null ? { earlyStopping: { patience } } : {}), ...(restoreBest ? { restoreBest } : {}),
      onEpochEnd: ({ epoch, record, best }) => {
        const v = record.validation;
        if (!v) return;
        const line = `epoch ${epoch + 1}/${epochs}: validation ${authorized} ${pct(v.authorized)}` +
          `${v.unauthorized === null ? '' : `, ${unauthorized} ${pct(v.unauthorized)}`}, score ${v.score.toFixed(3)}` +
          `${best?.epoch === epoch ? ' (best)' : ''}`;
        if (bar) bar.log(line); else say(line);
      },
      ...(group ? { distributed: group } : {}),
      onProgress: (pr) => {
        if (!main) return;
        bar ??= new ProgressBar(pr.totalIterations, { stream: io.stderr, label: 'train' });
        bar.update(pr.iteration, {
          etaSeconds: pr.etaSeconds, note: `epoch ${pr.epoch + 1}/${epochs}`,
          values: progressValues(pr, bool(p, 'verbose') ? LOSS_TERMS : descriptor.progressTerms),
        });
      },
    });
    let result;
    try {
      result = await withInterrupt(io, (signal) => trainer.fit({ authorized: trainA, ...(trainU ? { unauthorized: trainU } : {}) }, { signal }));
    } catch (err) {
      bar?.done();
      if (err instanceof IpclipError && err.code === 'ERR_MISMATCH' && resuming) {
        throw new IpclipError('ERR_MISMATCH', `${err.message}; pass --fresh to start over, or another --out`);
      }
      if (err instanceof IpclipError && err.code === 'ERR_ABORTED') {
        const where = existsSync(file) ? `checkpoint ${file} written at iteration ${trainer.iteration}` : 'no checkpoint yet';
        say(`ipclip train: stopped (${where}); run the same command again to resume`);
        if (json) printJson(io, { stopped: true, iteration: trainer.iteration, checkpoint: existsSync(file) ? file : null });
        return EXIT_INTERRUPTED;
      }
      throw err;
    }
    bar?.done();
    const promptFile = join(out, PROMPT_FILE);
    if (main) await prompt.save(promptFile); // rank 0 saves and reports; every rank evaluates its shard
    say(`trained ${result.iterations} iterations${result.resumedFrom !== null ? ` (resumed from ${result.resumedFrom})` : ''}; ` +
      `checkpoint ${file}, prompt ${promptFile}`);
    if (result.stopped === 'early-stopping') say(`stopped early after epoch ${result.history.length}: ${patience} epoch(s) without a better validation score`);
    if (result.restoredBest && result.best) say(`the prompt is the best validation epoch, ${result.best.epoch + 1} (score ${result.best.score.toFixed(3)})`);
    const warnings = [...result.warnings];
    for (const w of warnings) say(`warning: ${w}`);
    let rows: SetRow[] | null = null;
    if (plan) {
      const run = (await readCheckpoint(file)).meta?.run;
      const report = await new Evaluator(clip, group ? { group } : {}).evaluate(prompt, { authorized: plan.authorized, unauthorized: plan.unauthorized, ...(run ? { run } : {}) });
      rows = rowsOf(report, plan.authorizedName);
      if (!json && main) io.stdout.write(`\ntest splits (chance ${(100 / prompt.numClasses).toFixed(1)}%):\n${rowsTable(rows)}\n`);
      const testWarnings = evaluationWarnings(report, plan.authorizedName, descriptor.referenceOf !== null);
      for (const w of testWarnings) say(`warning: ${w}`);
      warnings.push(...testWarnings);
    }
    if (json && main) {
      printJson(io, {
        scenario, preset, pairing: trainer.options.pairing, referenceFor: trainer.options.referenceFor, epochs, batchSize, lr, seed,
        authorized, unauthorized: unauthorized ?? null,
        classNames: prompt.classNames, checkpoint: file, prompt: promptFile, iterations: result.iterations,
        resumedFrom: result.resumedFrom, skippedUpdates: result.skippedUpdates, history: result.history, evaluation: rows,
        featureCache: trainer.options.featureCache, validationSplit, stopped: result.stopped, best: result.best, restoredBest: result.restoredBest, warnings,
        onBadImage, skippedImages,
      });
    }
    return 0;
  } finally {
    await group?.close();
    prompt?.dispose();
    clip.dispose();
  }
}

/**
 * What the test splits say went wrong: the authorized accuracy more than 5 points below zero-shot CLIP's, and,
 * for a protection scenario, an unauthorized set still more than 10 points above chance (the loosest limit of the
 * protection benchmark's targets).
 */
export function evaluationWarnings(report: EvaluationReport, authorizedName: string, isReference: boolean): string[] {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const out: string[] = [];
  const a = report.sets[report.authorized]!.accuracy;
  const zs = report.zeroShot?.[report.authorized];
  if (zs !== undefined && a < zs - 0.05) {
    out.push(`the authorized test accuracy (${authorizedName}) is ${pct(a)}, below zero-shot CLIP's ${pct(zs)}: training made the classifier worse`);
  }
  if (!isReference) {
    for (const name of report.unauthorized) {
      const u = report.sets[name]!.accuracy;
      if (u > report.chance + 0.1) out.push(`'${name}' is still at ${pct(u)} (chance ${pct(report.chance)}): the protection does not hold there`);
    }
  }
  return out;
}

/** The images the evaluation's datasets left out. */
function planSkipped(plan: EvalPlan): BadImage[] {
  const sets = [plan.authorized, ...Object.values(plan.unauthorized)];
  return sets.flatMap((s) => ('dataset' in s ? s.dataset : s).skipped);
}

function dedupe(list: BadImage[]): BadImage[] {
  const seen = new Set<string>();
  return list.filter((b) => !seen.has(b.path) && seen.add(b.path) !== undefined);
}
