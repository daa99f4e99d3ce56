/**
 * Learning-rate schedules of the two presets (method §6 and §8). The schedule lives in TypeScript: the native
 * step takes the rate of each iteration as an argument, so a resumed run only needs the iteration number.
 */
import { check } from '../core/errors.js';
import { assertOneOf, assertPositiveInteger, assertPositiveNumber } from '../core/is.js';
import { cosineAnneal, linearWarmup } from '../core/schedule.js';

/**
 * `paper`: the method as the paper describes it; `official`: the authors' release, numerically.
 * @category Training
 */
export type Preset = 'paper' | 'official';

/**
 * Both presets.
 * @category Training
 */
export const PRESETS: readonly Preset[] = ['paper', 'official'];

/** The rate both presets start from at iteration 0. */
export const WARMUP_START_LR = 1e-5;

/** Period parameter of the release's cosine (`T_max` = 50 iterations, i.e. a 100-iteration cycle). */
export const OFFICIAL_COSINE_T = 50;

/**
 * What a schedule needs to know about the run.
 * @category Training
 */
export interface ScheduleOptions {
  preset: Preset;
  /** The base (peak) learning rate, e.g. 0.01. */
  lr: number;
  /** Optimiser steps per epoch (ceil(|A| / batch size)). */
  itersPerEpoch: number;
  /** Number of epochs of the run. */
  epochs: number;
}

/**
 * The learning rate of optimiser step `iteration` (0-based).
 *
 * - `paper`: linear warm-up from 1e-5 to `lr` over the first epoch (step t < E gets 1e-5 + (lr − 1e-5)·t/E),
 *   then cosine from `lr` to 0 over the remaining steps: lr·½(1 + cos(π(t − E)/(N − E))), N = total steps.
 * - `official`: the release's scheduler, stepped every iteration: lr(0) = 1e-5, then
 *   lr(t) = (lr/2)·(1 + cos(π(t − 1)/50)), which is 0.005·(1 + cos(π(t − 1)/50)) for lr = 0.01: a
 *   100-iteration cycle that never decays overall.
 * @throws IpclipError `ERR_INVALID_ARGUMENT` for a bad iteration or options.
 * @category Training
 */
export function learningRate(iteration: number, opts: ScheduleOptions): number {
  checkSchedule(opts);
  check(Number.isInteger(iteration) && iteration >= 0, `iteration must be a non-negative integer, got ${iteration}`);
  if (opts.preset === 'official') {
    if (iteration === 0) return WARMUP_START_LR;
    return cosineAnneal(iteration - 1, OFFICIAL_COSINE_T, opts.lr);
  }
  const warm = opts.itersPerEpoch;
  const total = opts.itersPerEpoch * opts.epochs;
  if (iteration < warm) return linearWarmup(iteration, warm, WARMUP_START_LR, opts.lr);
  const span = total - warm;
  if (span <= 0) return opts.lr; // a one-epoch run is all warm-up; past it (never stepped) stay at the peak
  const t = Math.min(iteration - warm, span);
  return cosineAnneal(t, span, opts.lr);
}

function checkSchedule(opts: ScheduleOptions): void {
  check(opts !== null && typeof opts === 'object', 'schedule options are required');
  assertOneOf(opts.preset, 'preset', PRESETS);
  assertPositiveNumber(opts.lr, 'lr');
  assertPositiveInteger(opts.itersPerEpoch, 'itersPerEpoch');
  assertPositiveInteger(opts.epochs, 'epochs');
}
