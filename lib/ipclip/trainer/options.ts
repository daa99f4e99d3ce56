/**
 * The options of {@link IPTrainer}: what a caller may set, the defaults, and their validation, resolved once into
 * the frozen settings a run records in its checkpoints.
 */
import { check } from '../../core/errors.js';
import { assertNonEmptyString, assertNonNegativeInteger, assertOneOf, assertPositiveInteger, assertPositiveNumber, is, show } from '../../core/is.js';
import { resolveScenario, type ProtectionScenario, type ResolvedScenario, type Scenario } from '../scenario.js';
import { PRESETS, type Preset } from '../schedule.js';
import type { DataParallel, DistributedOptions } from './distributed.js';
import type { TrainProgress } from './run-state.js';
import { resolveValidation, type EarlyStoppingOptions, type EpochEndAction, type EpochEndInfo, type ValidationData, type ValidationSettings } from './validation.js';
import { resolvePairing, type Pairing } from './streams.js';
import { resolveDisguise, type DisguiseOptions, type ResolvedDisguise } from './disguise.js';

/**
 * Options of {@link IPTrainer}.
 * @category Training
 */
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
  /**
   * Called after each epoch (after its validation, before its checkpoint) with the epoch's record and the best
   * validation epoch so far; answering `'stop'` ends {@link IPTrainer.fit} there (calling `fit` again goes on).
   */
  onEpochEnd?: (info: EpochEndInfo) => EpochEndAction | Promise<EpochEndAction>;
  /**
   * Held-out data scored at every epoch's end (see {@link ValidationData}); the scores join the run's history.
   * Never pass the test split: {@link DomainDataset.holdOut} cuts a validation set off the training split.
   */
  validation?: ValidationData;
  /** Stop once the validation score stops improving (see {@link EarlyStoppingOptions}). Needs `validation`. */
  earlyStopping?: EarlyStoppingOptions;
  /**
   * At the end of {@link IPTrainer.fit}, put the parameters of the best validation epoch back into the prompt
   * (with `checkpointDir` they are also kept as `best.safetensors` there, so a resumed run still has them). The
   * checkpoint keeps the last epoch's state. Needs `validation`; default false.
   */
  restoreBest?: boolean;
  /**
   * Continue a run that a checkpoint in `checkpointDir` holds with fewer `epochs` (finished or not) up to this
   * run's `epochs`, instead of refusing it as another run: its parameters, banks, optimiser state and history are
   * kept, and from the checkpoint's iteration on the learning rate follows the schedule of an `epochs`-epoch run
   * (so the result is close to, but not the same as, a run started with that many epochs). Default false.
   */
  extend?: boolean;
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
   * The disguised-unauthorized defence (beyond the paper; `paper` preset and target-specified only; default off):
   * every unauthorized training image also enters the unauthorized stream disguised as the authorized domain by
   * the attack suite's black-box style transforms (AdaIN, Fourier amplitude swap, histogram matching towards k
   * authorized training images, each copy with its own transform, k and strength; see {@link DisguiseOptions}).
   * The copies are ordinary U samples: every unauthorized loss term and the unauthorized bank see them, and the
   * U stream cycles over `(1 + copies) · |U|` samples. Measured in docs/attacks.md ("Defences"). `true` takes
   * the defaults.
   */
  disguisedUnauthorized?: boolean | DisguiseOptions;
  /**
   * Bound the unauthorized cross-entropy per sample, at chance (beyond the paper; `paper` preset only; default
   * false): the term is `mean_b min(CE_b, ln C)` instead of the release's `min(mean_b CE_b, 5)`. With the batch
   * mean bounded, a batch whose other unauthorized samples are already far past 5 passes no gradient, so the few
   * still classified correctly are never pushed away: on a CLIP that recognises the unauthorized domain well, its
   * images collapse onto two or three classes and keep 20–25 % accuracy. Bounded per sample, each one keeps its
   * gradient until its true class is no likelier than chance (1/C), and no further, which costs the authorized
   * domain less than a per-sample bound of 5. Measured in docs/method.md ("Beyond the paper").
   */
  clampPerSample?: boolean;
  /**
   * Scenario `reference` only: the protection scenario this reference is for (default `target-specified`). Its
   * authorized stream is that scenario's (watermarked images for `authorization`, clean ones otherwise), so the
   * metrics compare the protected prompt with a reference trained on the same kind of images.
   */
  referenceFor?: ProtectionScenario;
  /**
   * Data-parallel training over several processes (lib/ipclip/trainer/distributed.ts): this process's rank of
   * the job, or `'env'` for torchrun's variables. `batchSize` is then per rank: the run is the single-process run
   * with batches of `worldSize · batchSize`. A joined {@link DataParallel} is used as it is and left open (to
   * evaluate over the same ranks afterwards). Default: one process.
   */
  distributed?: DistributedOptions | 'env' | DataParallel;
}

/**
 * The settings of a run, defaults filled in (what its checkpoints record and a resume compares).
 * @category Training
 */
export interface ResolvedTrainerOptions {
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
  /** The disguised-unauthorized defence's settings; null when off. */
  disguisedUnauthorized: ResolvedDisguise | null;
  /** CE_U bounded per sample ({@link TrainerOptions.clampPerSample}). */
  clampPerSample: boolean;
  /** The protection scenario a reference run is for; null for the protection scenarios. */
  referenceFor: ProtectionScenario | null;
}

/** The options that shape how a run is driven, not what it computes (never recorded). */
export interface TrainerHooks {
  checkpointDir?: string;
  onProgress?: TrainerOptions['onProgress'];
  onEpochEnd?: TrainerOptions['onEpochEnd'];
  validation: ValidationSettings;
  extend: boolean;
  signal?: AbortSignal;
  workers?: number;
}

/**
 * Validates `opts` and fills in the defaults (`seed` defaults to `defaultSeed`, the prompt's).
 * @throws IpclipError `ERR_INVALID_ARGUMENT` naming the first bad option.
 */
export function resolveTrainerOptions(opts: TrainerOptions, defaultSeed: number):
  { options: Readonly<ResolvedTrainerOptions>; scenario: ResolvedScenario; hooks: TrainerHooks } {
  check(opts !== null && typeof opts === 'object', 'IPTrainer: options are required');
  const preset = opts.preset ?? 'paper';
  assertOneOf(preset, 'preset', PRESETS);
  const epochs = opts.epochs ?? 50;
  const batchSize = opts.batchSize ?? 8;
  const bankBatchSize = opts.bankBatchSize ?? 32;
  const checkpointEvery = opts.checkpointEvery ?? 0;
  assertPositiveInteger(epochs, 'epochs');
  check(is.integer(batchSize) && batchSize >= 2, `batchSize must be an integer ≥ 2 (the enhancement branch normalises over the batch), got ${show(batchSize)}`);
  assertPositiveInteger(bankBatchSize, 'bankBatchSize');
  assertNonNegativeInteger(checkpointEvery, 'checkpointEvery');
  const lr = opts.lr ?? 0.01;
  assertPositiveNumber(lr, 'lr');
  const weightDecay = opts.weightDecay ?? 5e-4;
  check(is.finiteNumber(weightDecay) && weightDecay >= 0, `weightDecay must be a non-negative number, got ${show(weightDecay)}`);
  const seed = opts.seed ?? defaultSeed;
  check(Number.isSafeInteger(seed) && seed >= 0, `seed must be a non-negative integer, got ${show(seed)}`);
  if (opts.checkpointDir !== undefined) assertNonEmptyString(opts.checkpointDir, 'checkpointDir');
  check(opts.onProgress === undefined || typeof opts.onProgress === 'function', `onProgress must be a function, got ${show(opts.onProgress)}`);
  check(opts.onEpochEnd === undefined || typeof opts.onEpochEnd === 'function', `onEpochEnd must be a function, got ${show(opts.onEpochEnd)}`);
  if (opts.extend !== undefined) assertOneOf(opts.extend, 'extend', [true, false]);
  const validation = resolveValidation(opts);
  if (opts.featureCache !== undefined) assertOneOf(opts.featureCache, 'featureCache', [true, false]);
  const scenario = resolveScenario(opts.scenario, opts.referenceFor);
  const pairing = resolvePairing(scenario.streams.source, preset, opts.pairing);
  const disguisedUnauthorized = resolveDisguise(opts.disguisedUnauthorized);
  if (disguisedUnauthorized) {
    check(preset === 'paper', "disguisedUnauthorized is an option of the 'paper' preset (the 'official' preset keeps the release's numerics)");
    check(scenario.streams.source === 'own',
      `disguisedUnauthorized needs a scenario whose unauthorized stream is a dataset of its own (target-specified), not '${opts.scenario}'`);
  }
  if (opts.clampPerSample !== undefined) assertOneOf(opts.clampPerSample, 'clampPerSample', [true, false]);
  const clampPerSample = opts.clampPerSample === true;
  check(!clampPerSample || preset === 'paper', "clampPerSample is an option of the 'paper' preset (the 'official' preset keeps the release's numerics)");
  const options: ResolvedTrainerOptions = {
    scenario: opts.scenario, preset, epochs, batchSize, lr, weightDecay, seed,
    trainEnhancer: opts.trainEnhancer === true, checkpointEvery, bankBatchSize, featureCache: opts.featureCache === true,
    pairing, disguisedUnauthorized, clampPerSample, referenceFor: scenario.referenceFor,
  };
  const hooks: TrainerHooks = {
    validation, extend: opts.extend === true,
    ...(opts.checkpointDir !== undefined ? { checkpointDir: opts.checkpointDir } : {}),
    ...(opts.onProgress !== undefined ? { onProgress: opts.onProgress } : {}),
    ...(opts.onEpochEnd !== undefined ? { onEpochEnd: opts.onEpochEnd } : {}),
    ...(opts.signal !== undefined ? { signal: opts.signal } : {}),
    ...(opts.workers !== undefined ? { workers: opts.workers } : {}),
  };
  return { options: Object.freeze(options), scenario, hooks };
}
