/**
 * {@link IPTrainer}: trains a {@link PromptModel} in one of the scenarios of method §5 (or the unprotected
 * reference of method §7). This file is the orchestration: the training loop over the two data streams, the
 * learning-rate schedule, progress, checkpoints and exact resumption; the parts it drives live beside it.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clip } from '../../clip/clip.js';
import { readCheckpoint, runRecordOf, writeCheckpoint, type EpochRecord, type RunRecord } from '../checkpoint.js';
import { IpclipError, check } from '../../core/errors.js';
import type { BadImage } from '../../data/dataset.js';
import type { NativeStepOptions } from '../../native/types.js';
import type { PromptModel, NativeStepResult } from '../prompt-model.js';
import { Rng } from '../../core/rng.js';
import { bankStreams, stepLoss, withoutRandomCrop, type ResolvedScenario } from '../scenario.js';
import { learningRate } from '../schedule.js';
import type { FloatTensor, ImageTensor } from '../../core/tensor.js';
import { buildBanks } from './banks.js';
import { checkShardable, dataParallelOption, withDataParallel, type DataParallel, type ResolvedDistributed } from './distributed.js';
import { withDisguisedUnauthorized } from './disguise.js';
import { FeatureCache } from './feature-cache.js';
import { resolveTrainerOptions, type ResolvedTrainerOptions, type TrainerHooks, type TrainerOptions } from './options.js';
import { RunState, checkResumable, type StepTerms, type TrainProgress } from './run-state.js';
import { StreamSchedule, resolveTrainingData, streamLoader, type LoaderSettings, type StreamData, type TrainingData } from './streams.js';

import { bestEpoch, earlyStopDue, trainingWarnings, validate } from './validation.js';

export type { TrainerOptions, ResolvedTrainerOptions } from './options.js';
export type { ValidationData, EarlyStoppingOptions, EpochEndInfo, EpochEndAction } from './validation.js';
export type { StepTerms, TrainProgress } from './run-state.js';
export type { TrainingData } from './streams.js';

/**
 * Name of the checkpoint file in `checkpointDir`.
 * @category Training
 */
export const CHECKPOINT_FILE = 'last.safetensors';

/**
 * Name of the best validation epoch's prompt in `checkpointDir` ({@link TrainerOptions.restoreBest}).
 * @category Training
 */
export const BEST_FILE = 'best.safetensors';

/**
 * A batch for {@link IPTrainer.step}: preprocessed images `[B, 3, S, S]` and their labels.
 * @category Training
 */
export interface TrainBatch {
  images: ImageTensor;
  labels: Int32Array;
}

/**
 * What {@link IPTrainer.fit} resolves to.
 * @category Training
 */
export interface TrainResult {
  iterations: number;
  epochs: number;
  skippedUpdates: number;
  history: EpochRecord[];
  /** The iteration the run resumed from, or null when it started fresh. */
  resumedFrom: number | null;
  /** Images the datasets left out (`onBadImage: 'skip'`), of both streams. */
  skippedImages: BadImage[];
  /** Why the run ended before `epochs`: the early-stopping rule, the epoch-end callback, or null (it did not). */
  stopped: 'early-stopping' | 'callback' | null;
  /** The best validation epoch and its score; null without validation data. */
  best: { epoch: number; score: number } | null;
  /** Whether the best epoch's parameters were put back at the end ({@link TrainerOptions.restoreBest}). */
  restoredBest: boolean;
  /**
   * What went wrong without failing the run; today: the prompt ends more than 5 points below zero-shot CLIP on the
   * authorized validation images ("training made it worse"). Empty without validation data.
   */
  warnings: string[];
}

/**
 * Trains an IP prompt.
 *
 * ```ts
 * const trainer = new IPTrainer(prompt, { scenario: 'target-specified', epochs: 50, seed: 1, checkpointDir: 'run' });
 * await trainer.fit({ authorized: trainA, unauthorized: trainU });
 * ```
 *
 * Streams (method §5–6, lib/ipclip/scenario.ts, lib/ipclip/trainer/streams.ts): an epoch is one pass over the authorized training set:
 * every A sample once, in ceil(|A| / batchSize) iterations, except that a last batch of a single image is merged
 * into the one before it (the enhancement branch's BatchNorm needs 2 rows), giving floor(|A| / batchSize). The
 * U batch of a step has the size of its A batch. In target-specified training U is its own dataset, cycled
 * sample by sample across its passes (a U batch that reaches the end of a pass continues into the next one); in
 * the other scenarios U is the authorized images under the scenario's other transform, `paired` with A's batch
 * (the same images) or drawn `independent`ly in a shuffle of its own and cycled the same way ({@link
 * TrainerOptions.pairing}).
 *
 * Checks: this class gives the friendly messages of what only it knows (options, labels against the prompt's
 * classes, the pairing of A's and U's batches); the binding checks every tensor's structure and the native core
 * its numbers. Images with NaN or Inf are refused with `ERR_NON_FINITE` before anything is updated; a loss or
 * gradient that becomes non-finite from finite inputs makes the native step skip the update (the step reports
 * `skipped: true`; {@link skippedUpdates} counts them and the progress and history report them).
 *
 * The parts (lib/ipclip/trainer/): options.ts (resolution and validation), streams.ts (the datasets and samples of
 * each step), banks.ts (bank construction), feature-cache.ts (the cached fit's features), disguise.ts (the disguised-unauthorized defence), run-state.ts (position,
 * history, resume checks), validation.ts (epoch-end scores, best epoch, early stopping); checkpoints are written with lib/ipclip/checkpoint.ts.
 * @category Training
 */
export class IPTrainer {
  /** The resolved options. */
  readonly options: Readonly<ResolvedTrainerOptions>;
  /** The frozen CLIP the prompt model runs on (`prompt.clip`). */
  readonly clip: Clip;
  /** The run's scenario: its descriptor and, for a reference, the scenario it is the reference of. */
  readonly scenario: ResolvedScenario;
  private readonly state = new RunState();
  private readonly hooks: TrainerHooks;
  private totalIterations = 0;
  private busy = false;
  /** Set at an epoch's end when the run is to stop there. */
  private stopRequested: TrainResult['stopped'] = null;
  /** The best validation epoch's prompt state, kept for `restoreBest`. */
  private bestState: { epoch: number; state: Record<string, FloatTensor> } | null = null;
  /** What data the current fit uses (recorded in checkpoints, compared on resume). */
  private runRecord?: RunRecord;
  /** Data parallelism (lib/ipclip/trainer/distributed.ts): the job to join, and the group while a fit runs. */
  private readonly distributed: ResolvedDistributed | DataParallel | null;
  private dp: DataParallel | null = null;

  /** @throws IpclipError `ERR_INVALID_ARGUMENT` for bad options or something other than a {@link PromptModel}. */
  constructor(readonly prompt: PromptModel, opts: TrainerOptions) {
    check(prompt !== null && typeof prompt === 'object' && typeof prompt.clip === 'object' && prompt.clip !== null,
      'IPTrainer: the first argument must be a PromptModel (new IPTrainer(promptModel, options))');
    this.clip = prompt.clip;
    const r = resolveTrainerOptions(opts, prompt.seed);
    this.options = r.options;
    this.scenario = r.scenario;
    this.hooks = r.hooks;
    this.distributed = dataParallelOption(opts.distributed);
  }

  /** Optimiser updates done (the next step's iteration). */
  get iteration(): number {
    return this.state.iteration;
  }

  set iteration(value: number) {
    this.state.iteration = value;
  }

  /** Updates skipped because the loss or a gradient was not finite. */
  get skippedUpdates(): number {
    return this.state.skippedUpdates;
  }

  /** Mean terms of every finished epoch. */
  get history(): EpochRecord[] {
    return this.state.history;
  }

  /** The loader seeds of the two streams, derived from the run seed (distinct, so their crops differ). */
  get streamSeeds(): { authorized: number; unauthorized: number } {
    const root = new Rng(this.options.seed);
    return { authorized: root.fork('stream/authorized').seed, unauthorized: root.fork('stream/unauthorized').seed };
  }

  private get loaders(): LoaderSettings {
    return { size: this.clip.config.vision.imageSize, ...(this.hooks.workers !== undefined ? { workers: this.hooks.workers } : {}) };
  }

  /**
   * Builds both feature banks (method §3) with the current prompt: the banks are reset, then one no-grad pass over
   * each stream (`paper`: the test transform with the stream's watermark / strong augmentation kept;
   * `official`: the training augmentation, as the release). Authorized rule on A, unauthorized rule on U.
   */
  async buildBanks(data: TrainingData, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const plan = bankStreams(this.options.scenario, this.options.preset);
    const streams = resolveTrainingData(data, plan, this.prompt.classNames);
    await buildBanks(this.prompt, streams, plan, {
      seed: this.options.seed, batchSize: this.options.bankBatchSize, loaders: this.loaders,
      ...(opts.signal ?? this.hooks.signal ? { signal: opts.signal ?? this.hooks.signal } : {}),
      ...(this.dp ? { group: this.dp } : {}),
    });
  }

  /** The native step's options: this run's scenario as data (its loss weights under the preset, whether U is read). */
  private stepOptions(lr: number, update: boolean, returnOutputs: boolean, keepGradients?: boolean): NativeStepOptions {
    return {
      ...stepLoss(this.options.scenario, this.options.preset), lr, weightDecay: this.options.weightDecay,
      // clampPerSample bounds each unauthorized sample's CE at chance, ln C.
      ...(this.options.clampPerSample ? { ceUPerSample: Math.log(this.prompt.numClasses) } : {}),
      update, returnOutputs, trainEnhancer: this.options.trainEnhancer,
      ...(keepGradients === undefined ? {} : { keepGradients }),
    };
  }

  /**
   * One training step on an authorized and an unauthorized batch of the same size: every loss term, the
   * gradients (kept for {@link PromptModel.gradients} with `update: false` or `keepGradients`) and, unless
   * `update: false`, one Adam update at `lr` (default:
   * the options' `lr`; {@link fit} passes the schedule's). Images with NaN/Inf reject with `ERR_NON_FINITE`.
   * {@link fit} (without the feature cache) takes every step through this method, with the loaders' batches
   * (`Batch`: also the dataset indices and the transform of each sample).
   */
  async step(batchA: TrainBatch, batchU: TrainBatch, opts: { lr?: number; update?: boolean; returnOutputs?: boolean; keepGradients?: boolean } = {}):
    Promise<StepTerms & { outputs?: NativeStepResult['outputs'] }> {
    const lr = opts.lr ?? this.options.lr;
    check(typeof lr === 'number' && Number.isFinite(lr) && lr >= 0, `step: lr must be a non-negative number, got ${String(lr)}`);
    const n = this.batchSize(batchA, 'authorized'), m = this.batchSize(batchU, 'unauthorized');
    check(n >= 2, 'step: batches need at least 2 images (the enhancement branch normalises over the batch)');
    check(n === m, `step: the authorized and unauthorized batches must have the same size (${n} vs ${m})`);
    const update = opts.update !== false;
    const res = await this.prompt.exclusive('step', (native) => native.step(
      batchA.images.data, [...batchA.images.shape], batchA.labels,
      batchU.images.data, [...batchU.images.shape], batchU.labels,
      this.stepOptions(lr, update, opts.returnOutputs === true, opts.keepGradients === undefined ? undefined : opts.keepGradients === true)));
    const terms = this.state.record(res, lr, update);
    return res.outputs ? { ...terms, outputs: res.outputs } : terms;
  }

  /**
   * The number of images of a step's batch, after the checks only the trainer can word: a batch object, and
   * labels that fit its images and the prompt's classes. The tensor's structure is the binding's to check (its
   * shape, type and length), its values the core's (NaN, Inf).
   */
  private batchSize(b: TrainBatch, name: string): number {
    check(b !== null && typeof b === 'object' && b.images !== null && typeof b.images === 'object' && Array.isArray(b.images.shape),
      `step: the ${name} batch must be { images: { data, shape: [N, 3, S, S] }, labels }`);
    const n = b.images.shape[0];
    check(Number.isInteger(n), `step: the ${name} images must have shape [N, 3, S, S], got [${String(b.images.shape)}]`);
    if (n === 0) throw new IpclipError('ERR_EMPTY_INPUT', `step (${name} batch): the batch is empty`);
    check(b.labels instanceof Int32Array && b.labels.length === n, `step: the ${name} batch needs an Int32Array of ${n} labels`);
    for (const l of b.labels) check(l >= 0 && l < this.prompt.numClasses, `step: ${name} label ${l} is not in [0, ${this.prompt.numClasses})`);
    return n!;
  }

  /**
   * Trains for `epochs` epochs: builds the banks with the initial prompt (where the scenario has banks), then runs
   * the loop with the preset's schedule. With `checkpointDir`, `last.safetensors` is written (atomically) after the
   * banks, at the end of every epoch and every `checkpointEvery` iterations; a `checkpointDir` that already holds
   * a checkpoint of the same run is resumed from, giving the same final parameters as an uninterrupted run.
   *
   * Aborting (`signal`, here or in the options): the current step finishes, a checkpoint is written (when
   * `checkpointDir` is set), and the promise rejects with `ERR_ABORTED`; calling `fit` again resumes.
   * @throws IpclipError `ERR_EMPTY_INPUT`, `ERR_MISMATCH` (class names, or a checkpoint of another run),
   * `ERR_INVALID_ARGUMENT`, `ERR_ABORTED`, loader and native errors.
   */
  async fit(data: TrainingData, opts: { signal?: AbortSignal } = {}): Promise<TrainResult> {
    check(!this.busy, 'fit: this trainer is already running');
    this.busy = true;
    try {
      const result = await this.withGroup(() => this.run(data, opts.signal ?? this.hooks.signal));
      return { ...result, skippedImages: this.runRecord?.skippedImages ?? [] };
    } finally {
      this.busy = false;
    }
  }

  private async run(data: TrainingData, signal: AbortSignal | undefined): Promise<Omit<TrainResult, 'skippedImages'>> {
    this.stopRequested = null;
    const plan = this.scenario.streams;
    const streams = resolveTrainingData(data, plan, this.prompt.classNames);
    const ownU = plan.source === 'own';
    this.runRecord = runRecordOf(this.options.scenario, streams.authorized, ownU ? streams.unauthorized : undefined);
    throwIfAborted(signal, 'training');
    const disguise = this.options.disguisedUnauthorized;
    if (disguise) {
      // The defence: U's own samples, then their disguised copies (a pure function of the run seed and the data).
      streams.unauthorized = await withDisguisedUnauthorized(streams.authorized, streams.unauthorized, disguise, {
        size: this.clip.config.vision.imageSize, seed: this.options.seed, ...(this.hooks.workers !== undefined ? { workers: this.hooks.workers } : {}),
      });
      data = streams;
      throwIfAborted(signal, 'training');
    }
    const seeds = this.streamSeeds;
    const globalBatch = this.options.batchSize * (this.dp?.worldSize ?? 1); // each rank takes its slice of it
    const aLoader = streamLoader(this.loaders, streams.authorized, plan.authorized, seeds.authorized, globalBatch, true, true);
    // U: its own dataset or the authorized images, in U's own shuffle (unused when paired).
    const uLoader = streamLoader(this.loaders, streams.unauthorized, plan.unauthorized, seeds.unauthorized, globalBatch, true, true);
    try {
      const schedule = new StreamSchedule(aLoader, uLoader, this.options.pairing);
      const perEpoch = schedule.perEpoch;
      const total = perEpoch * this.options.epochs;
      this.totalIterations = total;
      const dir = this.hooks.checkpointDir;
      const file = dir ? join(dir, CHECKPOINT_FILE) : undefined;
      let resumedFrom: number | null = null;
      const resume = file !== undefined && existsSync(file);
      if (this.dp) await this.agreeOnRun(aLoader, streams, total, resume);
      if (resume) {
        await this.restore(file!, total);
        this.totalIterations = total;
        resumedFrom = this.iteration;
        // A run whose patience had run out stays stopped (its history says so).
        const rule = this.hooks.validation.earlyStopping;
        if (rule && earlyStopDue(this.history, rule)) this.stopRequested = 'early-stopping';
      } else {
        this.state.reset();
        this.bestState = null;
        if (this.scenario.descriptor.buildsBanks) await this.buildBanks(data, { signal });
        if (file) {
          await mkdir(dir!, { recursive: true }).catch((err: unknown) => {
            throw new IpclipError('ERR_IO', `cannot create checkpointDir ${dir}: ${(err as Error).message}`, { cause: err });
          });
          await this.writeCheckpoint(file, total);
        }
      }
      if (this.dp) await this.prompt.exclusive('broadcastState', (native) => native.broadcastState(0)); // rank 0's parameters and banks everywhere
      const started = Date.now();
      const startIt = this.iteration;
      const finish = (e: number, terms: StepTerms, lr: number) =>
        this.finishIteration({ epoch: e, terms, lr, perEpoch, total, started, startIt, file, signal });
      const result = async () => {
        const restoredBest = await this.restoreBestIfAsked();
        const best = bestEpoch(this.history);
        const warnings = await trainingWarnings(this.prompt, this.hooks.validation.data, this.history, this.scenario,
          restoredBest && best ? best.epoch : null, this.hooks.workers);
        return {
          iterations: this.iteration, epochs: this.options.epochs, skippedUpdates: this.skippedUpdates, history: [...this.history], resumedFrom,
          stopped: this.stopRequested, best, restoredBest, warnings,
        };
      };
      if (this.options.featureCache) {
        await this.runCached(schedule, streams, signal, finish);
        return await result();
      }
      // Both loaders prefetch along the same step plan, from the step this session starts at.
      const aBatches = aLoader.batches(map(schedule.steps(startIt, total), (s) => this.mine(s.a)))[Symbol.asyncIterator]();
      const uBatches = uLoader.batches(map(schedule.steps(startIt, total), (s) => this.mine(s.u)))[Symbol.asyncIterator]();
      try {
        while (this.iteration < total && this.stopRequested === null) {
          const it = this.iteration;
          const [a, u] = [await aBatches.next(), await uBatches.next()];
          check(!a.done && !u.done, 'the training streams ended early');
          const lr = this.learningRate(it, perEpoch);
          await finish(Math.floor(it / perEpoch), await this.step(a.value, u.value, { lr }), lr);
        }
      } finally {
        await aBatches.return?.();
        await uBatches.return?.();
      }
      return await result();
    } finally {
      await aLoader.close();
      await uLoader.close();
    }
  }

  /**
   * At an epoch's end: its validation scores (into its history record), the best epoch's state for
   * `restoreBest`, the epoch-end callback and the early-stopping rule.
   */
  private async endEpoch(epoch: number): Promise<void> {
    const v = this.hooks.validation;
    const record = this.history[this.history.length - 1]!;
    if (v.data) {
      record.validation = await validate(this.prompt, v.data, this.scenario, this.hooks.workers);
      if (v.restoreBest && bestEpoch(this.history)?.epoch === epoch) {
        this.bestState = { epoch, state: await this.prompt.state() };
        const dir = this.hooks.checkpointDir;
        if (dir && (this.dp?.rank ?? 0) === 0) await this.prompt.save(join(dir, BEST_FILE)); // over ranks: rank 0's copy
      }
    }
    const action = await this.hooks.onEpochEnd?.({ epoch, epochs: this.options.epochs, record, best: bestEpoch(this.history) });
    // Over ranks: a callback that stops on any rank stops every rank at this epoch's end.
    if (this.dp ? await this.dp.any(action === 'stop') : action === 'stop') this.stopRequested = 'callback';
    if (v.earlyStopping && earlyStopDue(this.history, v.earlyStopping)) this.stopRequested = 'early-stopping';
  }

  /** With `restoreBest`, puts the best validation epoch's parameters back; whether it did. */
  private async restoreBestIfAsked(): Promise<boolean> {
    const best = bestEpoch(this.history);
    if (!this.hooks.validation.restoreBest || best === null) return false;
    let state = this.bestState?.epoch === best.epoch ? this.bestState.state : null;
    const dir = this.hooks.checkpointDir;
    if (!state && dir && existsSync(join(dir, BEST_FILE))) state = (await readCheckpoint(join(dir, BEST_FILE))).state;
    if (!state) throw new IpclipError('ERR_FILE_NOT_FOUND', `restoreBest: the state of epoch ${best.epoch + 1} is gone (${BEST_FILE} missing in ${dir ?? 'memory'})`);
    await this.prompt.setState(state);
    return true;
  }

  private learningRate(iteration: number, perEpoch: number): number {
    return learningRate(iteration, { preset: this.options.preset, lr: this.options.lr, itersPerEpoch: perEpoch, epochs: this.options.epochs });
  }

  /** After each step: epoch means, progress, checkpoints and the abort check. */
  private async finishIteration(p: {
    epoch: number; terms: StepTerms; lr: number; perEpoch: number; total: number; started: number; startIt: number;
    file: string | undefined; signal: AbortSignal | undefined;
  }): Promise<void> {
    const { epoch: e, terms, lr, total, file, signal } = p;
    this.state.accumulate(terms);
    const endOfEpoch = this.iteration % p.perEpoch === 0;
    if (endOfEpoch) {
      this.state.closeEpoch(e);
      await this.endEpoch(e);
    }
    const onProgress = this.hooks.onProgress;
    if (onProgress) {
      const elapsed = (Date.now() - p.started) / 1000;
      const done = this.iteration - p.startIt;
      await onProgress({
        epoch: e, iteration: this.iteration, totalIterations: total, terms, lr,
        etaSeconds: done > 0 ? (elapsed / done) * (total - this.iteration) : NaN, skippedUpdates: this.skippedUpdates,
      });
    }
    const every = this.options.checkpointEvery;
    // Over ranks every one stops after the same step (an abort on any rank stops all): one tiny all-reduce.
    const aborted = this.dp ? await this.dp.any(signal?.aborted === true) : signal?.aborted === true;
    if (file && (endOfEpoch || aborted || (every > 0 && this.iteration % every === 0))) await this.writeCheckpoint(file, total);
    if (aborted) {
      throw new IpclipError('ERR_ABORTED', `training stopped on request after iteration ${this.iteration} of ${total}` +
        (file ? ` (checkpoint written to ${file}; fit again to resume)` : ''));
    }
  }

  /**
   * featureCache: runs the vision tower once over every sample of each stream the loss reads (kept native-side),
   * with the random crop replaced by the test transform and per-sample random transforms drawn as epoch 0 of the stream's seed
   * (in dataset order, unshuffled), so each sample's features depend only on (seed, sample); then the training
   * loop over the cached features (the same step plan and schedule as the image loop).
   */
  private async runCached(schedule: StreamSchedule, streams: StreamData, signal: AbortSignal | undefined,
    finish: (e: number, terms: StepTerms, lr: number) => Promise<void>): Promise<void> {
    const plan = this.scenario.streams;
    const readsU = this.scenario.descriptor.loss.unauthorized;
    const seeds = this.streamSeeds;
    const cache = new FeatureCache(this.prompt);
    const fill = async (stream: 'authorized' | 'unauthorized', data: StreamData[typeof stream], transform: typeof plan.authorized, seed: number) => {
      // Over ranks a loader batch is a global one: each rank encodes its bankBatchSize slice of it.
      const loader = streamLoader(this.loaders, data, withoutRandomCrop(transform), seed, this.options.bankBatchSize * (this.dp?.worldSize ?? 1), false);
      try {
        await cache.fill(stream, loader, signal, this.dp ?? undefined);
      } finally {
        await loader.close();
      }
    };
    try {
      await cache.clear();
      await fill('authorized', streams.authorized, plan.authorized, seeds.authorized);
      if (readsU) await fill('unauthorized', streams.unauthorized, plan.unauthorized, seeds.unauthorized);
      const perEpoch = schedule.perEpoch;
      const total = perEpoch * this.options.epochs;
      while (this.iteration < total && this.stopRequested === null) {
        const it = this.iteration;
        const draws = schedule.at(it);
        const idxA = Int32Array.from(this.mine(draws.a), (d) => d.index), idxU = Int32Array.from(this.mine(draws.u), (d) => d.index);
        const labelsA = Int32Array.from(idxA, (i) => streams.authorized.samples[i]!.label);
        const labelsU = Int32Array.from(idxU, (i) => streams.unauthorized.samples[i]!.label);
        const lr = this.learningRate(it, perEpoch);
        const res = await cache.step(idxA, labelsA, idxU, labelsU, this.stepOptions(lr, true, false));
        await finish(draws.epoch, this.state.record(res, lr, true), lr);
      }
    } finally {
      await cache.clear();
    }
  }

  /** Writes the current state (prompt, enhancer, banks, optimiser, position) as a checkpoint, atomically. */
  async saveCheckpoint(file: string): Promise<void> {
    await this.writeCheckpoint(file, this.totalIterations);
  }

  private async writeCheckpoint(file: string, total: number): Promise<void> {
    // Data parallelism: rank 0 writes, every rank waits at a barrier until the file is in place.
    if (this.dp && this.dp.rank !== 0) return this.dp.barrier();
    await this.writeCheckpointFile(file, total);
    if (this.dp) await this.dp.barrier();
  }

  private async writeCheckpointFile(file: string, total: number): Promise<void> {
    const optim = await this.prompt.exclusive('optimizerState', (native) => native.optimizerState());
    const training = this.state.trainingMeta(this.options, total, {
      optimizerStep: optim.step, dtype: this.clip.info.dtype, streamSeeds: this.streamSeeds,
      ...(optim.lossScale ? { lossScale: optim.lossScale } : {}),
    });
    await writeCheckpoint(file, {
      state: await this.prompt.state(),
      optimizer: optim.tensors,
      meta: { ...this.prompt.metadata(), training, ...(this.runRecord ? { run: this.runRecord } : {}) },
    });
  }

  /** This rank's slice of a global batch (all of it in a single process). */
  private mine<T>(draws: readonly T[]): readonly T[] {
    return this.dp ? this.dp.shard(draws) : draws;
  }

  /** Runs `fn` as a member of the data-parallel job when the options name one: joined, attached, then left. */
  private async withGroup<T>(fn: () => Promise<T>): Promise<T> {
    return withDataParallel(this.distributed, async (dp) => {
      if (!dp) return fn();
      try {
        await this.prompt.exclusive('attachGroup', (native) => native.attachGroup(dp.group));
        this.dp = dp;
        return await fn();
      } finally {
        this.dp = null;
        await this.prompt.exclusive('attachGroup', (native) => native.attachGroup(null)).catch(() => undefined);
      }
    });
  }

  /** Refuses (ERR_MISMATCH) a job whose ranks would train different runs, before anything is trained. */
  private async agreeOnRun(loader: { batchesPerEpoch(): number; batchRange(b: number): [number, number] }, streams: StreamData,
    total: number, resume: boolean): Promise<void> {
    checkShardable(loader, this.dp!.worldSize);
    const labels = (d: StreamData['authorized']) => `${d.length}:${d.samples.map((s) => s.label).join(',')}`;
    await this.dp!.agree({
      'CLIP fingerprint': this.clip.info.fingerprint, 'class list': JSON.stringify(this.prompt.classNames),
      seed: String(this.options.seed), 'prompt seed': String(this.prompt.seed), dtype: this.clip.info.dtype,
      settings: JSON.stringify(this.options), iterations: String(total),
      data: `${labels(streams.authorized)}|${labels(streams.unauthorized)}`,
      'checkpoint found': String(resume),
    });
  }

  /**
   * Restores a checkpoint of this run: prompt, enhancer, banks, optimiser, position and history.
   * @throws IpclipError `ERR_MISMATCH` when it belongs to another CLIP, other classes or other settings.
   */
  async restore(file: string, expectedTotal?: number): Promise<void> {
    const content = await readCheckpoint(file);
    const t = checkResumable(file, content.meta, {
      classNames: this.prompt.classNames, fingerprint: this.clip.info.fingerprint, dtype: this.clip.info.dtype, options: this.options,
      ...(expectedTotal !== undefined ? { totalIterations: expectedTotal } : {}), ...(this.runRecord ? { run: this.runRecord } : {}),
      extend: this.hooks.extend,
    });
    await this.prompt.setState(content.state);
    await this.prompt.exclusive('setOptimizerState', (native) => native.setOptimizerState({ step: t.optimizerStep, tensors: content.optimizer ?? {}, ...(t.lossScale ? { lossScale: t.lossScale } : {}) }));
    this.state.restore(t);
  }
}

function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new IpclipError('ERR_ABORTED', `${what} stopped on request`);
}

function* map<T, R>(items: Iterable<T>, f: (item: T) => R): Generator<R> {
  for (const x of items) yield f(x);
}
