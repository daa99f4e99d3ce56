/**
 * {@link IPTrainer}: trains an {@link PromptModel} in one of the scenarios of method §5 (or the unprotected
 * reference of method §7): bank construction, the training loop over the two data streams, the learning-rate
 * schedule, progress, checkpoints and exact resumption.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clip } from '../../clip/clip.js';
import {
  readCheckpoint, runDifference, runRecordOf, writeCheckpoint, type EpochAccumulator, type EpochRecord, type RunRecord, type TrainingMeta,
} from '../checkpoint.js';
import type { BadImage, DomainDataset } from '../../data/dataset.js';
import { IpclipError, check } from '../../core/errors.js';
import { BatchLoader, type TransformChoice } from '../../data/loader.js';
import { callNative } from '../../native/errors.js';
import type { NativeStepResult as RawStepResult } from '../../native/types.js';
import { checkImages, type PromptModel, type LossTerms, type NativeStepResult } from '../prompt-model.js';
import { Rng } from '../../core/rng.js';
import {
  bankStreams, checkScenario, isProtectionScenario, PROTECTION_SCENARIOS, stepLoss, trainingStreams, withoutRandomCrop,
  type ProtectionScenario, type Scenario, type StreamPlan,
} from '../scenario.js';
import { learningRate, type Preset } from '../schedule.js';
import { resolvePairing, StreamSchedule, type Pairing } from './streams.js';
import type { FloatTensor, ImageTensor, Tensor } from '../../core/tensor.js';

/** Name of the checkpoint file in `checkpointDir`. */
export const CHECKPOINT_FILE = 'last.safetensors';

/** A batch for {@link IPTrainer.step}: preprocessed images `[B, 3, S, S]` and their labels. */
export interface TrainBatch {
  images: ImageTensor;
  labels: Int32Array;
}

/** The terms of one step (unclamped, method §4), the total, the learning rate and whether the update was skipped. */
export interface StepTerms extends LossTerms {
  lr: number;
  /** True when the loss or a gradient was not finite: the parameters were left unchanged. */
  skipped: boolean;
}

/** What {@link IPTrainer.fit} reports after every iteration. */
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

/** Options of {@link IPTrainer}. */
export interface TrainerOptions {
  scenario: Scenario;
  /** Default `'paper'`. */
  preset?: Preset;
  /** Default 50. */
  epochs?: number;
  /** Images per stream per step (default 8). */
  batchSize?: number;
  /** Peak learning rate (default 0.01). */
  lr?: number;
  /** Coupled L2 weight decay of Adam (default 5e-4). */
  weightDecay?: number;
  /** Seed of the data streams (order and augmentation); default the prompt's seed. */
  seed?: number;
  /** Also train the enhancement module (the release never does; default false). */
  trainEnhancer?: boolean;
  /** Folder for `last.safetensors`; a run finding a checkpoint there resumes from it. */
  checkpointDir?: string;
  /** Also checkpoint every this many iterations (always at each epoch's end). */
  checkpointEvery?: number;
  onProgress?: (progress: TrainProgress) => void | Promise<void>;
  /** Stops {@link IPTrainer.fit} after the current step (see there). */
  signal?: AbortSignal;
  /** Images per batch when building the banks (default 32; the result does not depend on it). */
  bankBatchSize?: number;
  /** Loader worker threads (default: the loader's). */
  workers?: number;
  /**
   * Cache each sample's vision-tower output so that {@link IPTrainer.fit} runs the frozen vision tower once per
   * sample instead of once per epoch (default false). This CHANGES THE AUGMENTATION: every stream's random
   * crop + flip is replaced by the test transform, and the per-sample random transforms (strong augmentation,
   * the authorization mixture's draw) are drawn once, as epoch 0 of the stream's seed, and then frozen for the
   * whole run. Watermarks are kept. The cache is a pure function of (seed, sample), rebuilt on every
   * {@link IPTrainer.fit} (so resuming is exact); it holds `D + 2·L·W` floats per sample and stream in memory.
   * Only {@link IPTrainer.fit} uses it; {@link IPTrainer.step} and {@link IPTrainer.buildBanks} take images.
   */
  featureCache?: boolean;
  /**
   * How the unauthorized stream lines up with the authorized one when it is drawn from the authorized images
   * (see {@link Pairing}): default `paired` for the `paper` preset (MSE and KL then compare the same image under
   * the two transforms, as the method intends), `independent` for `official` (as the release draws it).
   */
  pairing?: Pairing;
  /**
   * Scenario `reference` only: the protection scenario this reference is for (default `target-specified`). Its
   * authorized stream is that scenario's (watermarked images for `authorization`, clean ones otherwise), so the
   * metrics compare the protected prompt with a reference trained on the same kind of images.
   */
  referenceFor?: ProtectionScenario;
}

/** The training data: the authorized stream, and the unauthorized one where the scenario has its own. */
export interface TrainingData {
  authorized: DomainDataset;
  /**
   * target-specified: the target domain (required). Other scenarios draw U from the authorized images
   * (method §5); there it may be omitted or be the authorized dataset itself.
   */
  unauthorized?: DomainDataset;
}

/** What {@link IPTrainer.fit} resolves to. */
export interface TrainResult {
  iterations: number;
  epochs: number;
  skippedUpdates: number;
  history: EpochRecord[];
  /** The iteration the run resumed from, or null when it started fresh. */
  resumedFrom: number | null;
  /** Images the datasets left out (`onBadImage: 'skip'`), of both streams. */
  skippedImages: BadImage[];
}

interface Resolved {
  scenario: Scenario;
  preset: Preset;
  epochs: number;
  batchSize: number;
  lr: number;
  weightDecay: number;
  seed: number;
  trainEnhancer: boolean;
  checkpointEvery: number;
  bankBatchSize: number;
  featureCache: boolean;
  pairing: Pairing;
  /** The protection scenario a `reference` run is for; null for the protection scenarios. */
  referenceFor: ProtectionScenario | null;
}

const TERM_KEYS: readonly (keyof LossTerms)[] = ['loss', 'ceA', 'ceU', 'ceSelf', 'ceCross', 'mse', 'kl', 'entropy'];

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
 * Non-finite values: images with NaN or Inf are refused with `ERR_NON_FINITE` before anything runs; a loss or
 * gradient that becomes non-finite from finite inputs makes the native step skip the update (the step reports
 * `skipped: true`; {@link skippedUpdates} counts them and the progress and history report them).
 */
export class IPTrainer {
  /** The resolved options. */
  readonly options: Readonly<Resolved>;
  /** Optimiser updates done (the next step's iteration). */
  iteration = 0;
  /** Updates skipped because the loss or a gradient was not finite. */
  skippedUpdates = 0;
  /** Mean terms of every finished epoch. */
  history: EpochRecord[] = [];
  private accumulator: EpochAccumulator = emptyAccumulator();
  private lastLr = 0;
  private totalIterations = 0;
  private busy = false;
  private readonly checkpointDir?: string;
  private readonly onProgress?: TrainerOptions['onProgress'];
  private readonly signal?: AbortSignal;
  private readonly workers?: number;
  /** What data the current fit uses (recorded in checkpoints, compared on resume). */
  private runRecord?: RunRecord;

  /** The frozen CLIP the prompt model runs on (`prompt.clip`). */
  readonly clip: Clip;

  /** @throws IpclipError `ERR_INVALID_ARGUMENT` for bad options or something other than a {@link PromptModel}. */
  constructor(readonly prompt: PromptModel, opts: TrainerOptions) {
    check(prompt !== null && typeof prompt === 'object' && typeof prompt.clip === 'object' && prompt.clip !== null,
      'IPTrainer: the first argument must be a PromptModel (new IPTrainer(promptModel, options))');
    check(opts !== null && typeof opts === 'object', 'IPTrainer: options are required');
    this.clip = prompt.clip;
    checkScenario(opts.scenario);
    const preset = opts.preset ?? 'paper';
    check(preset === 'paper' || preset === 'official', `preset must be 'paper' or 'official', got ${String(preset)}`);
    const positiveInt = (v: number, name: string) => check(Number.isInteger(v) && v > 0, `${name} must be a positive integer, got ${String(v)}`);
    const epochs = opts.epochs ?? 50;
    const batchSize = opts.batchSize ?? 8;
    const bankBatchSize = opts.bankBatchSize ?? 32;
    const checkpointEvery = opts.checkpointEvery ?? 0;
    positiveInt(epochs, 'epochs');
    check(Number.isInteger(batchSize) && batchSize >= 2, `batchSize must be an integer ≥ 2 (the enhancement branch normalises over the batch), got ${String(batchSize)}`);
    positiveInt(bankBatchSize, 'bankBatchSize');
    check(Number.isInteger(checkpointEvery) && checkpointEvery >= 0, `checkpointEvery must be a non-negative integer, got ${String(checkpointEvery)}`);
    const lr = opts.lr ?? 0.01;
    check(typeof lr === 'number' && Number.isFinite(lr) && lr > 0, `lr must be a positive number, got ${String(lr)}`);
    const weightDecay = opts.weightDecay ?? 5e-4;
    check(typeof weightDecay === 'number' && Number.isFinite(weightDecay) && weightDecay >= 0, `weightDecay must be a non-negative number, got ${String(weightDecay)}`);
    const seed = opts.seed ?? prompt.seed;
    check(Number.isSafeInteger(seed) && seed >= 0, `seed must be a non-negative integer, got ${String(seed)}`);
    check(opts.checkpointDir === undefined || (typeof opts.checkpointDir === 'string' && opts.checkpointDir.length > 0), 'checkpointDir must be a path');
    check(opts.onProgress === undefined || typeof opts.onProgress === 'function', 'onProgress must be a function');
    check(opts.featureCache === undefined || typeof opts.featureCache === 'boolean', `featureCache must be a boolean, got ${String(opts.featureCache)}`);
    check(opts.referenceFor === undefined || isProtectionScenario(opts.referenceFor),
      `referenceFor must be one of ${PROTECTION_SCENARIOS.join(', ')}, got ${String(opts.referenceFor)}`);
    const referenceFor = opts.scenario === 'reference' ? opts.referenceFor ?? 'target-specified' : null;
    check(referenceFor !== null || opts.referenceFor === undefined, `referenceFor applies to the reference scenario only, not to '${opts.scenario}'`);
    const pairing = resolvePairing(trainingStreams(opts.scenario).source, preset, opts.pairing);
    this.options = Object.freeze({
      scenario: opts.scenario, preset, epochs, batchSize, lr, weightDecay, seed,
      trainEnhancer: opts.trainEnhancer === true, checkpointEvery, bankBatchSize, featureCache: opts.featureCache === true,
      pairing, referenceFor,
    });
    this.checkpointDir = opts.checkpointDir;
    this.onProgress = opts.onProgress;
    this.signal = opts.signal;
    this.workers = opts.workers;
  }

  /** The loader seeds of the two streams, derived from the run seed (distinct, so their crops differ). */
  get streamSeeds(): { authorized: number; unauthorized: number } {
    const root = new Rng(this.options.seed);
    return { authorized: root.fork('stream/authorized').seed, unauthorized: root.fork('stream/unauthorized').seed };
  }

  /**
   * Builds both feature banks (method §3) with the current prompt: the banks are reset, then one no-grad pass over
   * each stream (`paper`: the test transform with the stream's watermark / strong augmentation kept;
   * `official`: the training augmentation, as the release). Authorized rule on A, unauthorized rule on U.
   */
  async buildBanks(data: TrainingData, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const { authorized, unauthorized, plan } = this.resolveData(data, bankStreams(this.options.scenario, this.options.preset));
    await this.prompt.resetBanks();
    const seeds = new Rng(this.options.seed);
    const pass = async (dataset: DomainDataset, transform: TransformChoice, key: string, which: 'authorized' | 'unauthorized') => {
      const loader = this.loader(dataset, transform, seeds.fork(key).seed, this.options.bankBatchSize, false);
      try {
        for await (const b of loader.epoch(0)) {
          throwIfAborted(opts.signal ?? this.signal, 'bank construction');
          await this.prompt.updateBanks(b.images, b.labels, which);
        }
      } finally {
        await loader.close();
      }
    };
    await pass(authorized, plan.authorized, 'bank/authorized', 'authorized');
    await pass(plan.source === 'own' ? unauthorized : authorized, plan.unauthorized, 'bank/unauthorized', 'unauthorized');
  }

  /** This run's training streams (for `reference`: those of the scenario it is the reference of). */
  private trainingPlan(): StreamPlan {
    return trainingStreams(this.options.scenario, this.options.referenceFor ?? undefined);
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
    const size = this.clip.config.vision.imageSize;
    const lr = opts.lr ?? this.options.lr;
    check(typeof lr === 'number' && Number.isFinite(lr) && lr >= 0, `step: lr must be a non-negative number, got ${String(lr)}`);
    for (const [name, b] of [['authorized', batchA], ['unauthorized', batchU]] as const) {
      check(b !== null && typeof b === 'object', `step: the ${name} batch must be { images, labels }`);
      checkImages(b.images, size, `step (${name} batch)`);
      check(b.labels instanceof Int32Array && b.labels.length === b.images.shape[0],
        `step: the ${name} batch needs an Int32Array of ${b.images.shape[0]} labels`);
      for (const l of b.labels) check(l >= 0 && l < this.prompt.numClasses, `step: ${name} label ${l} is not in [0, ${this.prompt.numClasses})`);
    }
    check(batchA.images.shape[0]! >= 2, 'step: batches need at least 2 images (the enhancement branch normalises over the batch)');
    check(batchA.images.shape[0] === batchU.images.shape[0],
      `step: the authorized and unauthorized batches must have the same size (${batchA.images.shape[0]} vs ${batchU.images.shape[0]})`);
    const update = opts.update !== false;
    const native = this.prompt.native;
    const res = await callNative(() => native.step(
      batchA.images.data, [...batchA.images.shape], batchA.labels,
      batchU.images.data, [...batchU.images.shape], batchU.labels,
      {
        ...stepLoss(this.options.scenario, this.options.preset), lr, weightDecay: this.options.weightDecay,
        update, returnOutputs: opts.returnOutputs === true, trainEnhancer: this.options.trainEnhancer,
        ...(opts.keepGradients === undefined ? {} : { keepGradients: opts.keepGradients === true }),
      }));
    const terms = this.record(res, lr, update);
    return res.outputs ? { ...terms, outputs: res.outputs } : terms;
  }

  /** Counts a native step's update and turns its result into {@link StepTerms}. */
  private record(res: RawStepResult, lr: number, update: boolean): StepTerms {
    if (update) {
      this.iteration++;
      this.lastLr = lr;
      if (res.skipped) this.skippedUpdates++;
    }
    return { ...pickTerms(res.terms), lr, skipped: res.skipped };
  }

  /**
   * Trains for `epochs` epochs: builds the banks with the initial prompt (not for `reference`), then runs the
   * loop with the preset's schedule. With `checkpointDir`, `last.safetensors` is written (atomically) after the
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
      const result = await this.run(data, opts.signal ?? this.signal);
      return { ...result, skippedImages: this.runRecord?.skippedImages ?? [] };
    } finally {
      this.busy = false;
    }
  }

  private async run(data: TrainingData, signal: AbortSignal | undefined): Promise<Omit<TrainResult, 'skippedImages'>> {
    const { authorized, unauthorized, plan } = this.resolveData(data, this.trainingPlan());
    this.runRecord = runRecordOf(this.options.scenario, authorized, plan.source === 'own' ? unauthorized : undefined);
    throwIfAborted(signal, 'training');
    const seeds = this.streamSeeds;
    const aLoader = this.loader(authorized, plan.authorized, seeds.authorized, this.options.batchSize, true, true);
    // U: its own dataset (target-specified) or the authorized images, in U's own shuffle (unused when paired).
    const uLoader = this.loader(plan.source === 'own' ? unauthorized : authorized, plan.unauthorized, seeds.unauthorized,
      this.options.batchSize, true, true);
    try {
      const schedule = new StreamSchedule(aLoader, uLoader, this.options.pairing);
      const perEpoch = schedule.perEpoch;
      const total = perEpoch * this.options.epochs;
      this.totalIterations = total;
      const file = this.checkpointDir ? join(this.checkpointDir, CHECKPOINT_FILE) : undefined;
      let resumedFrom: number | null = null;
      if (file && existsSync(file)) {
        await this.restore(file, total);
        this.totalIterations = total;
        resumedFrom = this.iteration;
      } else {
        this.resetRun();
        if (this.options.scenario !== 'reference') await this.buildBanks(data, { signal });
        if (file) {
          await mkdir(this.checkpointDir!, { recursive: true }).catch((err: unknown) => {
            throw new IpclipError('ERR_IO', `cannot create checkpointDir ${this.checkpointDir}: ${(err as Error).message}`, { cause: err });
          });
          await this.writeCheckpoint(file, total);
        }
      }
      const started = Date.now();
      const startIt = this.iteration;
      const finish = (e: number, terms: StepTerms, lr: number) =>
        this.finishIteration({ epoch: e, terms, lr, perEpoch, total, started, startIt, file, signal });
      if (this.options.featureCache) {
        try {
          await this.fillFeatures(authorized, unauthorized, plan, signal);
          await this.runCached(schedule, authorized, plan.source === 'own' ? unauthorized : authorized, finish);
        } finally {
          await callNative(() => this.prompt.native.clearFeatures()).catch(() => undefined); // a disposed prompt has nothing to free
        }
        return { iterations: this.iteration, epochs: this.options.epochs, skippedUpdates: this.skippedUpdates, history: [...this.history], resumedFrom };
      }
      // Both loaders prefetch along the same step plan, from the step this session starts at.
      const aBatches = aLoader.batches(map(schedule.steps(startIt, total), (s) => s.a))[Symbol.asyncIterator]();
      const uBatches = uLoader.batches(map(schedule.steps(startIt, total), (s) => s.u))[Symbol.asyncIterator]();
      try {
        while (this.iteration < total) {
          const it = this.iteration;
          const [a, u] = [await aBatches.next(), await uBatches.next()];
          check(!a.done && !u.done, 'the training streams ended early');
          const lr = learningRate(it, { preset: this.options.preset, lr: this.options.lr, itersPerEpoch: perEpoch, epochs: this.options.epochs });
          await finish(Math.floor(it / perEpoch), await this.step(a.value, u.value, { lr }), lr);
        }
      } finally {
        await aBatches.return?.();
        await uBatches.return?.();
      }
      return { iterations: this.iteration, epochs: this.options.epochs, skippedUpdates: this.skippedUpdates, history: [...this.history], resumedFrom };
    } finally {
      await aLoader.close();
      await uLoader.close();
    }
  }

  /** After each step: epoch means, progress, checkpoints and the abort check. */
  private async finishIteration(p: {
    epoch: number; terms: StepTerms; lr: number; perEpoch: number; total: number; started: number; startIt: number;
    file: string | undefined; signal: AbortSignal | undefined;
  }): Promise<void> {
    const { epoch: e, terms, lr, total, file, signal } = p;
    this.accumulate(terms);
    const endOfEpoch = this.iteration % p.perEpoch === 0;
    if (endOfEpoch) this.closeEpoch(e);
    if (this.onProgress) {
      const elapsed = (Date.now() - p.started) / 1000;
      const done = this.iteration - p.startIt;
      await this.onProgress({
        epoch: e, iteration: this.iteration, totalIterations: total, terms, lr,
        etaSeconds: done > 0 ? (elapsed / done) * (total - this.iteration) : NaN, skippedUpdates: this.skippedUpdates,
      });
    }
    const every = this.options.checkpointEvery;
    const aborted = signal?.aborted === true;
    if (file && (endOfEpoch || aborted || (every > 0 && this.iteration % every === 0))) await this.writeCheckpoint(file, total);
    if (aborted) {
      throw new IpclipError('ERR_ABORTED', `training stopped on request after iteration ${this.iteration} of ${total}` +
        (file ? ` (checkpoint written to ${file}; fit again to resume)` : ''));
    }
  }

  /**
   * featureCache: runs the vision tower once over every sample of each stream, with the random crop replaced by
   * the test transform and per-sample random transforms drawn as epoch 0 of the stream's seed (in dataset order,
   * unshuffled), so each sample's features depend only on (seed, sample).
   */
  private async fillFeatures(authorized: DomainDataset, unauthorized: DomainDataset, plan: StreamPlan, signal: AbortSignal | undefined): Promise<void> {
    const seeds = this.streamSeeds;
    const native = this.prompt.native;
    await callNative(() => native.clearFeatures());
    const pass = async (stream: 'authorized' | 'unauthorized', dataset: DomainDataset, transform: TransformChoice, seed: number) => {
      const loader = this.loader(dataset, withoutRandomCrop(transform), seed, this.options.bankBatchSize, false);
      try {
        for await (const b of loader.epoch(0)) {
          throwIfAborted(signal, 'feature caching');
          await callNative(() => native.cacheFeatures(stream, dataset.length, Int32Array.from(b.indices), b.images.data, [...b.images.shape]));
        }
      } finally {
        await loader.close();
      }
    };
    await pass('authorized', authorized, plan.authorized, seeds.authorized);
    // The reference scenario's loss never reads U: nothing to cache for it.
    if (stepLoss(this.options.scenario, this.options.preset).unauthorized) {
      await pass('unauthorized', unauthorized, plan.unauthorized, seeds.unauthorized);
    }
  }

  /** featureCache: the training loop over cached features (the same step plan and schedule as the image loop). */
  private async runCached(schedule: StreamSchedule, authorized: DomainDataset, uDataset: DomainDataset,
    finish: (e: number, terms: StepTerms, lr: number) => Promise<void>): Promise<void> {
    const perEpoch = schedule.perEpoch;
    const total = perEpoch * this.options.epochs;
    const native = this.prompt.native;
    const loss = stepLoss(this.options.scenario, this.options.preset);
    while (this.iteration < total) {
      const it = this.iteration;
      const draws = schedule.at(it);
      const idxA = Int32Array.from(draws.a, (d) => d.index), idxU = Int32Array.from(draws.u, (d) => d.index);
      const labelsA = Int32Array.from(idxA, (i) => authorized.samples[i]!.label);
      const labelsU = Int32Array.from(idxU, (i) => uDataset.samples[i]!.label);
      const lr = learningRate(it, { preset: this.options.preset, lr: this.options.lr, itersPerEpoch: perEpoch, epochs: this.options.epochs });
      const res = await callNative(() => native.stepCached(idxA, labelsA, idxU, labelsU, {
        ...loss, lr, weightDecay: this.options.weightDecay, update: true, returnOutputs: false, trainEnhancer: this.options.trainEnhancer,
      }));
      await finish(draws.epoch, this.record(res, lr, true), lr);
    }
  }

  /** Writes the current state (prompt, enhancer, banks, optimiser, position) as a checkpoint, atomically. */
  async saveCheckpoint(file: string): Promise<void> {
    await this.writeCheckpoint(file, this.totalIterations);
  }

  private async writeCheckpoint(file: string, total: number): Promise<void> {
    const native = this.prompt.native;
    const optim = await callNative(() => native.optimizerState());
    const seeds = this.streamSeeds;
    const training: TrainingMeta = {
      scenario: this.options.scenario, preset: this.options.preset, epochs: this.options.epochs,
      batchSize: this.options.batchSize, lr: this.options.lr, weightDecay: this.options.weightDecay,
      trainEnhancer: this.options.trainEnhancer, featureCache: this.options.featureCache,
      pairing: this.options.pairing, ...(this.options.referenceFor ? { referenceFor: this.options.referenceFor } : {}),
      iteration: this.iteration,
      epoch: total > 0 ? Math.floor((this.iteration * this.options.epochs) / total) : 0,
      seed: this.options.seed, totalIterations: total, optimizerStep: optim.step, lastLr: this.lastLr, skippedUpdates: this.skippedUpdates,
      dtype: this.clip.info.dtype, ...(optim.lossScale ? { lossScale: optim.lossScale } : {}),
      streamSeeds: seeds, history: this.history, accumulator: this.accumulator,
    };
    await writeCheckpoint(file, {
      state: await this.prompt.state(),
      optimizer: optim.tensors,
      meta: { ...this.prompt.metadata(), training, ...(this.runRecord ? { run: this.runRecord } : {}) },
    });
  }

  /**
   * Restores a checkpoint of this run: prompt, enhancer, banks, optimiser, position and history.
   * @throws IpclipError `ERR_MISMATCH` when it belongs to another CLIP, other classes or other settings.
   */
  async restore(file: string, expectedTotal?: number): Promise<void> {
    const content = await readCheckpoint(file);
    const meta = content.meta;
    const t = meta?.training;
    if (!meta || !t) throw new IpclipError('ERR_BAD_FILE', `${file} is not a training checkpoint (no training metadata)`);
    const mismatch = (what: string, was: unknown, now: unknown) =>
      new IpclipError('ERR_MISMATCH', `${file} belongs to another run: ${what} was ${JSON.stringify(was)}, now ${JSON.stringify(now)}`);
    const names = this.prompt.classNames;
    if (meta.classNames.length !== names.length || meta.classNames.some((c, i) => c !== names[i])) throw mismatch('classNames', meta.classNames, names);
    if (meta.clip.fingerprint !== this.clip.info.fingerprint) throw mismatch('the CLIP fingerprint', meta.clip.fingerprint, this.clip.info.fingerprint);
    const o = this.options;
    const pairs: [string, unknown, unknown][] = [
      ['scenario', t.scenario, o.scenario], ['preset', t.preset, o.preset], ['epochs', t.epochs, o.epochs],
      ['batchSize', t.batchSize, o.batchSize], ['lr', t.lr, o.lr], ['weightDecay', t.weightDecay, o.weightDecay],
      ['seed', t.seed, o.seed], ['trainEnhancer', t.trainEnhancer, o.trainEnhancer],
      ['featureCache', t.featureCache, o.featureCache],
      // Checkpoints from before the stream rules were recorded used another sample plan: not resumable.
      ['pairing', t.pairing ?? 'unrecorded (a checkpoint from an older stream rule)', o.pairing],
      ['referenceFor', t.referenceFor ?? null, o.referenceFor],
    ];
    if (expectedTotal !== undefined) pairs.push(['the number of iterations (dataset size)', t.totalIterations, expectedTotal]);
    // Another compute dtype is another run: other rounding, and a float16 loss scale that means nothing elsewhere.
    if (t.dtype !== undefined) pairs.push(['the compute dtype', t.dtype, this.clip.info.dtype]);
    for (const [what, was, now] of pairs) if (was !== now) throw mismatch(what, was, now);
    const runDiff = meta.run && this.runRecord ? runDifference(meta.run, this.runRecord) : null;
    if (runDiff) throw mismatch(...runDiff);
    if (t.iteration > t.totalIterations) throw new IpclipError('ERR_BAD_FILE', `${file}: iteration ${t.iteration} is past the run's ${t.totalIterations}`);
    await this.prompt.setState(content.state);
    const native = this.prompt.native;
    await callNative(() => native.setOptimizerState({ step: t.optimizerStep, tensors: content.optimizer ?? {}, ...(t.lossScale ? { lossScale: t.lossScale } : {}) }));
    this.iteration = t.iteration;
    this.skippedUpdates = t.skippedUpdates;
    this.lastLr = t.lastLr;
    this.history = t.history.map((h) => ({ ...h, terms: { ...h.terms } }));
    this.accumulator = { sums: { ...t.accumulator.sums }, count: t.accumulator.count, skipped: t.accumulator.skipped };
  }

  private resetRun(): void {
    this.iteration = 0;
    this.skippedUpdates = 0;
    this.lastLr = 0;
    this.history = [];
    this.accumulator = emptyAccumulator();
  }

  private accumulate(terms: StepTerms): void {
    if (terms.skipped) { this.accumulator.skipped++; return; }
    for (const k of TERM_KEYS) this.accumulator.sums[k] = (this.accumulator.sums[k] ?? 0) + terms[k];
    this.accumulator.count++;
  }

  private closeEpoch(epoch: number): void {
    const a = this.accumulator;
    const terms: Record<string, number> = {};
    for (const k of TERM_KEYS) terms[k] = a.count > 0 ? (a.sums[k] ?? 0) / a.count : NaN;
    this.history.push({ epoch, iterations: a.count + a.skipped, skipped: a.skipped, terms, lr: this.lastLr });
    this.accumulator = emptyAccumulator();
  }

  /**
   * A loader over `dataset`. Training loaders (`training`) merge a last batch of a single image into the one
   * before it: the enhancement branch's BatchNorm needs at least 2 rows, so such an epoch has floor(n / B)
   * iterations (the last with B + 1 images) instead of ceil, and still sees every sample.
   */
  private loader(dataset: DomainDataset, transform: TransformChoice, seed: number, batchSize: number, shuffle: boolean, training = false): BatchLoader {
    return new BatchLoader(dataset, {
      batchSize, size: this.clip.config.vision.imageSize, seed, shuffle, transform,
      mergeSingleLast: training,
      ...(this.workers !== undefined ? { workers: this.workers } : {}),
    });
  }

  /** Validates the datasets against the scenario and the prompt's classes. */
  private resolveData(data: TrainingData, plan: StreamPlan): { authorized: DomainDataset; unauthorized: DomainDataset; plan: StreamPlan } {
    check(data !== null && typeof data === 'object', 'training data must be { authorized, unauthorized? }');
    const a = data.authorized;
    check(a !== null && typeof a === 'object' && Array.isArray(a.samples), 'training data: authorized must be a DomainDataset');
    if (a.length < 2) throw new IpclipError('ERR_EMPTY_INPUT', `the authorized dataset '${a.domain}' has ${a.length} samples; training needs at least 2`);
    this.checkClasses(a, 'authorized');
    const u = data.unauthorized;
    if (plan.source === 'own') {
      check(u !== undefined && u !== null && typeof u === 'object' && Array.isArray(u.samples),
        `scenario '${plan.scenario}' needs an unauthorized dataset (the target domain)`);
      if (u.length < 2) throw new IpclipError('ERR_EMPTY_INPUT', `the unauthorized dataset '${u.domain}' has ${u.length} samples; training needs at least 2`);
      this.checkClasses(u, 'unauthorized');
      return { authorized: a, unauthorized: u, plan };
    }
    if (u !== undefined && u !== a) {
      const same = u.length === a.length && u.samples.every((s, i) => s.path === a.samples[i]!.path && s.buffer === a.samples[i]!.buffer);
      check(same, `scenario '${plan.scenario}' draws the unauthorized stream from the authorized images (method §5): ` +
        'omit `unauthorized` or pass the authorized dataset');
    }
    return { authorized: a, unauthorized: a, plan };
  }

  private checkClasses(d: DomainDataset, which: string): void {
    const names = this.prompt.classNames;
    const same = d.classNames.length === names.length && d.classNames.every((c, i) => c === names[i]);
    if (!same) {
      throw new IpclipError('ERR_MISMATCH', `the ${which} dataset '${d.domain}' has classes [${d.classNames.join(', ')}] ` +
        `but the prompt was made for [${names.join(', ')}]`);
    }
  }
}

function emptyAccumulator(): EpochAccumulator {
  return { sums: {}, count: 0, skipped: 0 };
}

function pickTerms(t: LossTerms): LossTerms {
  return { loss: t.loss, ceA: t.ceA, ceU: t.ceU, ceSelf: t.ceSelf, ceCross: t.ceCross, mse: t.mse, kl: t.kl, entropy: t.entropy };
}

function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new IpclipError('ERR_ABORTED', `${what} stopped on request`);
}

function* map<T, R>(items: Iterable<T>, f: (item: T) => R): Generator<R> {
  for (const x of items) yield f(x);
}
