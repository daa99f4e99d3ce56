/**
 * Which samples each training step feeds to the two streams: the epoch layout of the authorized stream and how
 * the unauthorized stream is drawn beside it (method §5–6). A pure function of the step index, so an interrupted
 * run resumes at any step with exactly the samples (and, through the loaders' seeds, the augmentations) an
 * uninterrupted run gets there.
 */
import { IpclipError, check } from '../../core/errors.js';
import { sameNames } from '../../core/is.js';
import type { DomainDataset } from '../../data/dataset.js';
import { BatchLoader, cycledDraws, type Draw, type TransformChoice } from '../../data/loader.js';
import type { Preset } from '../schedule.js';
import type { StreamPlan, UnauthorizedSource } from '../scenario.js';

/**
 * How U's samples sit beside A's when U is drawn from the authorized images (ownership, target-free,
 * authorization, reference):
 * - `paired`: U's sample b of a step is A's sample b of that step under U's transform, so MSE and KL compare the
 *   same image under the two transforms (the `paper` preset's default);
 * - `independent`: U runs through the authorized images in a shuffle of its own, as the authors' release draws it
 *   (the `official` preset's default), so U's sample b is usually another image than A's sample b.
 * A scenario with a dataset of its own for U (target-specified) is always `independent`.
 * @category Training
 */
export type Pairing = 'paired' | 'independent';

/** Every accepted {@link Pairing}. */
export const PAIRINGS: readonly Pairing[] = ['paired', 'independent'];

/**
 * The pairing a run uses: `requested` if given, else `paired` for the paper preset and `independent` for the
 * official one; always `independent` when U has a dataset of its own.
 * @throws IpclipError `ERR_INVALID_ARGUMENT` for an unknown pairing, or `paired` with a U dataset of its own.
 */
export function resolvePairing(source: UnauthorizedSource, preset: Preset, requested?: Pairing): Pairing {
  check(requested === undefined || PAIRINGS.includes(requested), `pairing must be one of ${PAIRINGS.join(', ')}, got ${String(requested)}`);
  if (source === 'own') {
    check(requested !== 'paired', "pairing 'paired' needs a scenario whose unauthorized stream is drawn from the authorized images");
    return 'independent';
  }
  return requested ?? (preset === 'official' ? 'independent' : 'paired');
}

/** The samples of one training step. `a` and `u` always have the same length. */
export interface StepDraws {
  /** A's epoch (0-based) and batch within it. */
  epoch: number;
  batch: number;
  a: Draw[];
  u: Draw[];
}

/**
 * The step-by-step sample plan of a run.
 *
 * - An epoch is one pass over A: A's loader order of that epoch cut into its batches (the loader's batch
 *   layout: batches of B, a shorter last one; with `mergeSingleLast`, a last batch of a single image joins the
 *   one before it). Every A sample is in every epoch exactly once.
 * - `independent` U: the endless concatenation of U's loader orders (pass 0, pass 1, …); each step takes the
 *   next |A batch| samples of it, wrapping into U's next pass mid-batch. U's pass boundaries are not A's.
 * - `paired` U: the same dataset indices as A's batch, drawn as pass `epoch` of U's loader (U's own seed, so its
 *   random crops differ from A's).
 */
export class StreamSchedule {
  /** Steps per epoch. */
  readonly perEpoch: number;
  private readonly aPerEpoch: number;

  constructor(private readonly a: BatchLoader, private readonly u: BatchLoader, readonly pairing: Pairing) {
    check(PAIRINGS.includes(pairing), `pairing must be one of ${PAIRINGS.join(', ')}, got ${String(pairing)}`);
    check(pairing === 'independent' || u.dataset.length === a.dataset.length, 'paired streams need the same images');
    this.perEpoch = a.batchesPerEpoch();
    const [, end] = a.batchRange(this.perEpoch - 1);
    this.aPerEpoch = end; // samples per epoch: the whole split unless the loader drops its last batch
  }

  /** The samples of global step `step` (0-based; epoch `floor(step / perEpoch)`). */
  at(step: number): StepDraws {
    check(Number.isSafeInteger(step) && step >= 0, `step must be a non-negative integer, got ${step}`);
    const epoch = Math.floor(step / this.perEpoch), batch = step % this.perEpoch;
    const a = this.a.drawsOf(epoch, batch);
    if (this.pairing === 'paired') return { epoch, batch, a, u: a.map((d) => ({ epoch, index: d.index })) };
    const [start] = this.a.batchRange(batch);
    return { epoch, batch, a, u: cycledDraws(this.u, epoch * this.aPerEpoch + start, a.length) };
  }

  /** Steps `from, from + 1, …, to − 1`. */
  *steps(from: number, to: number): Generator<StepDraws> {
    for (let s = from; s < to; s++) yield this.at(s);
  }
}

/**
 * The training data: the authorized stream, and the unauthorized one where the scenario has its own.
 * @category Training
 */
export interface TrainingData {
  authorized: DomainDataset;
  /**
   * A scenario whose U is a dataset of its own (target-specified): the target domain (required). The others draw
   * U from the authorized images (method §5); there it may be omitted or be the authorized dataset itself.
   */
  unauthorized?: DomainDataset;
}

/** The datasets of a run's two streams; `unauthorized` is the authorized dataset when U is drawn from it. */
export interface StreamData {
  authorized: DomainDataset;
  unauthorized: DomainDataset;
}

/**
 * The datasets of `plan`'s two streams, checked against it and against the prompt's `classNames`.
 * @throws IpclipError `ERR_INVALID_ARGUMENT` (not datasets; a U dataset missing where the scenario needs its own,
 * or another one given where U is drawn from the authorized images), `ERR_EMPTY_INPUT` (fewer than 2 samples),
 * `ERR_MISMATCH` (other class names).
 */
export function resolveTrainingData(data: TrainingData, plan: StreamPlan, classNames: readonly string[]): StreamData {
  check(data !== null && typeof data === 'object', 'training data must be { authorized, unauthorized? }');
  const a = data.authorized;
  check(a !== null && typeof a === 'object' && Array.isArray(a.samples), 'training data: authorized must be a DomainDataset');
  if (a.length < 2) throw new IpclipError('ERR_EMPTY_INPUT', `the authorized dataset '${a.domain}' has ${a.length} samples; training needs at least 2`);
  checkClasses(a, 'authorized', classNames);
  const u = data.unauthorized;
  if (plan.source === 'own') {
    check(u !== undefined && u !== null && typeof u === 'object' && Array.isArray(u.samples),
      `scenario '${plan.scenario}' needs an unauthorized dataset (the target domain)`);
    if (u.length < 2) throw new IpclipError('ERR_EMPTY_INPUT', `the unauthorized dataset '${u.domain}' has ${u.length} samples; training needs at least 2`);
    checkClasses(u, 'unauthorized', classNames);
    return { authorized: a, unauthorized: u };
  }
  if (u !== undefined && u !== a) {
    const same = u.length === a.length && u.samples.every((s, i) => s.path === a.samples[i]!.path && s.buffer === a.samples[i]!.buffer);
    check(same, `scenario '${plan.scenario}' draws the unauthorized stream from the authorized images (method §5): ` +
      'omit `unauthorized` or pass the authorized dataset');
  }
  return { authorized: a, unauthorized: a };
}

function checkClasses(d: DomainDataset, which: string, names: readonly string[]): void {
  if (!sameNames(d.classNames, names)) {
    throw new IpclipError('ERR_MISMATCH', `the ${which} dataset '${d.domain}' has classes [${d.classNames.join(', ')}] ` +
      `but the prompt was made for [${names.join(', ')}]`);
  }
}

/** How a run's loaders are made: image side and worker threads. */
export interface LoaderSettings {
  size: number;
  workers?: number;
}

/**
 * A loader over `dataset`. Training loaders (`training`) merge a last batch of a single image into the one
 * before it: the enhancement branch's BatchNorm needs at least 2 rows, so such an epoch has floor(n / B)
 * iterations (the last with B + 1 images) instead of ceil, and still sees every sample.
 */
export function streamLoader(settings: LoaderSettings, dataset: DomainDataset, transform: TransformChoice, seed: number,
  batchSize: number, shuffle: boolean, training = false): BatchLoader {
  return new BatchLoader(dataset, {
    batchSize, size: settings.size, seed, shuffle, transform,
    mergeSingleLast: training,
    ...(settings.workers !== undefined ? { workers: settings.workers } : {}),
  });
}
