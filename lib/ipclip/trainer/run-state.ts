/**
 * Where a training run stands, as its checkpoints record it: the iteration, the skipped updates, the learning
 * rate of the last step, the finished epochs' mean terms and the running sums of the epoch in progress; and the
 * checks that a checkpoint belongs to the run that is about to resume from it.
 */
import { IpclipError } from '../../core/errors.js';
import { sameNames } from '../../core/is.js';
import { LOSS_TERMS, lossTermsOf } from '../loss-terms.js';
import type { NativeStepResult, LossTerms } from '../../native/types.js';
import { runDifference, type CheckpointMeta, type EpochAccumulator, type EpochRecord, type RunRecord, type TrainingMeta } from '../checkpoint.js';
import type { ResolvedTrainerOptions } from './options.js';

/**
 * The terms of one step (unclamped, method §4), the total, the learning rate and whether the update was skipped.
 * @category Training
 */
export interface StepTerms extends LossTerms {
  lr: number;
  /** True when the loss or a gradient was not finite: the parameters were left unchanged. */
  skipped: boolean;
}

/**
 * What {@link IPTrainer.fit} reports after every iteration.
 * @category Training
 */
export interface TrainProgress {
  /** Epoch of this iteration (0-based). */
  epoch: number;
  /** Iterations done, this one included. */
  iteration: number;
  totalIterations: number;
  terms: StepTerms;
  lr: number;
  /** Estimated seconds left, from this session's mean iteration time. */
  etaSeconds: number;
  skippedUpdates: number;
}

function emptyAccumulator(): EpochAccumulator {
  return { sums: {}, count: 0, skipped: 0 };
}

/** The position and history of a run. */
export class RunState {
  /** Optimiser updates done (the next step's iteration). */
  iteration = 0;
  /** Updates skipped because the loss or a gradient was not finite. */
  skippedUpdates = 0;
  /** Learning rate of the last update. */
  lastLr = 0;
  /** Mean terms of every finished epoch. */
  history: EpochRecord[] = [];
  private accumulator: EpochAccumulator = emptyAccumulator();

  /** Back to a fresh run. */
  reset(): void {
    this.iteration = 0;
    this.skippedUpdates = 0;
    this.lastLr = 0;
    this.history = [];
    this.accumulator = emptyAccumulator();
  }

  /** Counts a native step's update (when it was one) and turns its result into {@link StepTerms}. */
  record(res: NativeStepResult, lr: number, update: boolean): StepTerms {
    if (update) {
      this.iteration++;
      this.lastLr = lr;
      if (res.skipped) this.skippedUpdates++;
    }
    return { ...lossTermsOf(res.terms), lr, skipped: res.skipped };
  }

  /** Adds a step's terms to the epoch in progress (a skipped update is only counted). */
  accumulate(terms: StepTerms): void {
    if (terms.skipped) { this.accumulator.skipped++; return; }
    for (const k of LOSS_TERMS) this.accumulator.sums[k] = (this.accumulator.sums[k] ?? 0) + terms[k];
    this.accumulator.count++;
  }

  /** Closes epoch `epoch`: its mean terms join the history. */
  closeEpoch(epoch: number): void {
    const a = this.accumulator;
    const terms: Record<string, number> = {};
    for (const k of LOSS_TERMS) terms[k] = a.count > 0 ? (a.sums[k] ?? 0) / a.count : NaN;
    this.history.push({ epoch, iterations: a.count + a.skipped, skipped: a.skipped, terms, lr: this.lastLr });
    this.accumulator = emptyAccumulator();
  }

  /** The checkpoint's `training` part: the run's settings, this state and what the caller adds. */
  trainingMeta(o: Readonly<ResolvedTrainerOptions>, total: number, extra: {
    optimizerStep: number; lossScale?: { scale: number; goodSteps: number }; dtype: string;
    streamSeeds: { authorized: number; unauthorized: number };
  }): TrainingMeta {
    return {
      scenario: o.scenario, preset: o.preset, epochs: o.epochs, batchSize: o.batchSize, lr: o.lr, weightDecay: o.weightDecay,
      trainEnhancer: o.trainEnhancer, featureCache: o.featureCache,
      pairing: o.pairing, ...(o.referenceFor ? { referenceFor: o.referenceFor } : {}),
      ...(o.disguisedUnauthorized ? { disguisedUnauthorized: o.disguisedUnauthorized } : {}),
      ...(o.clampPerSample ? { clampPerSample: true } : {}),
      iteration: this.iteration,
      epoch: total > 0 ? Math.floor((this.iteration * o.epochs) / total) : 0,
      seed: o.seed, totalIterations: total, optimizerStep: extra.optimizerStep, lastLr: this.lastLr, skippedUpdates: this.skippedUpdates,
      dtype: extra.dtype, ...(extra.lossScale ? { lossScale: extra.lossScale } : {}),
      streamSeeds: extra.streamSeeds, history: this.history, accumulator: this.accumulator,
    };
  }

  /** Takes the position and history of a checkpoint's `training` part (copied). */
  restore(t: TrainingMeta): void {
    this.iteration = t.iteration;
    this.skippedUpdates = t.skippedUpdates;
    this.lastLr = t.lastLr;
    this.history = t.history.map((h) => ({ ...h, terms: { ...h.terms } }));
    this.accumulator = { sums: { ...t.accumulator.sums }, count: t.accumulator.count, skipped: t.accumulator.skipped };
  }
}

/** What a resume must match: the prompt's classes and CLIP, the run's settings, its size and its data. */
export interface ResumeTarget {
  classNames: readonly string[];
  fingerprint: string;
  dtype: string;
  options: Readonly<ResolvedTrainerOptions>;
  /** Iterations of the run about to resume (known from the dataset size), when known. */
  totalIterations?: number;
  run?: RunRecord;
  /** Accept a checkpoint of the same run with fewer epochs (continued up to `options.epochs`). */
  extend?: boolean;
}

/**
 * The checkpoint's `training` part, when `meta` (of `file`) belongs to the run `target` describes.
 * @throws IpclipError `ERR_BAD_FILE` (no training metadata, an iteration past the run's end), `ERR_MISMATCH`
 * naming the first difference (classes, CLIP fingerprint, a setting, the run's size, the compute dtype, the data).
 */
export function checkResumable(file: string, meta: CheckpointMeta | undefined | null, target: ResumeTarget): TrainingMeta {
  const t = meta?.training;
  if (!meta || !t) throw new IpclipError('ERR_BAD_FILE', `${file} is not a training checkpoint (no training metadata)`);
  const mismatch = (what: string, was: unknown, now: unknown) =>
    new IpclipError('ERR_MISMATCH', `${file} belongs to another run: ${what} was ${JSON.stringify(was)}, now ${JSON.stringify(now)}`);
  const names = target.classNames;
  if (!sameNames(meta.classNames, names)) throw mismatch('classNames', meta.classNames, names);
  if (meta.clip.fingerprint !== target.fingerprint) throw mismatch('the CLIP fingerprint', meta.clip.fingerprint, target.fingerprint);
  const o = target.options;
  // Extending: fewer epochs recorded is the same run, shorter; its epochs must be as long as this run's.
  const extending = target.extend === true && t.epochs < o.epochs;
  const pairs: [string, unknown, unknown][] = [
    ['scenario', t.scenario, o.scenario], ['preset', t.preset, o.preset],
    ...(extending ? [] : [['epochs', t.epochs, o.epochs] as [string, unknown, unknown]]),
    ['batchSize', t.batchSize, o.batchSize], ['lr', t.lr, o.lr], ['weightDecay', t.weightDecay, o.weightDecay],
    ['seed', t.seed, o.seed], ['trainEnhancer', t.trainEnhancer, o.trainEnhancer],
    ['featureCache', t.featureCache, o.featureCache],
    // Checkpoints from before the stream rules were recorded used another sample plan: not resumable.
    ['pairing', t.pairing ?? 'unrecorded (a checkpoint from an older stream rule)', o.pairing],
    ['referenceFor', t.referenceFor ?? null, o.referenceFor],
    ['disguisedUnauthorized', JSON.stringify(t.disguisedUnauthorized ?? null), JSON.stringify(o.disguisedUnauthorized)],
    ['clampPerSample', t.clampPerSample === true, o.clampPerSample],
  ];
  if (target.totalIterations !== undefined) {
    if (extending) pairs.push(['the iterations per epoch (dataset size)', t.totalIterations / t.epochs, target.totalIterations / o.epochs]);
    else pairs.push(['the number of iterations (dataset size)', t.totalIterations, target.totalIterations]);
  }
  // Another compute dtype is another run: other rounding, and a float16 loss scale that means nothing elsewhere.
  if (t.dtype !== undefined) pairs.push(['the compute dtype', t.dtype, target.dtype]);
  for (const [what, was, now] of pairs) {
    if (was === now) continue;
    const err = mismatch(what, was, now);
    // More epochs than the checkpoint's is the one difference a run can be continued across.
    if (what === 'epochs' && typeof was === 'number' && typeof now === 'number' && was < now) {
      err.message += ' (to continue it for more epochs, pass extend: true, or --extend on the command line)';
    }
    throw err;
  }
  const runDiff = meta.run && target.run ? runDifference(meta.run, target.run) : null;
  if (runDiff) throw mismatch(...runDiff);
  if (t.iteration > t.totalIterations) throw new IpclipError('ERR_BAD_FILE', `${file}: iteration ${t.iteration} is past the run's ${t.totalIterations}`);
  return t;
}
