/**
 * Scoring a run on held-out data at every epoch's end, and what follows from the scores: the best epoch, early
 * stopping and the epoch-end callback. The scores are part of the run's history (and of its checkpoints), so a
 * resumed run knows its best epoch and whether its patience ran out without scoring anything again.
 */
import { check } from '../../core/errors.js';
import { assertPositiveInteger, is, show } from '../../core/is.js';
import type { DomainDataset } from '../../data/dataset.js';
import type { EpochRecord, EpochValidation } from '../checkpoint.js';
import { Evaluator, type EvalSet } from '../evaluator.js';
import type { PromptModel } from '../prompt-model.js';
import type { ResolvedScenario } from '../scenario.js';

/**
 * Held-out images a run is scored on at each epoch's end (never the test split: the test split is for the final
 * figures, and choosing an epoch on it would make them optimistic). {@link DomainDataset.holdOut} cuts such a set off a
 * training split.
 * @category Training
 */
export interface ValidationData {
  /**
   * Held-out images of the authorized domain. A plain dataset is scored as the scenario's authorized test set is
   * (watermarked for `authorization`, clean otherwise); `{ dataset, watermark }` says it explicitly.
   */
  authorized: EvalSet;
  /**
   * Held-out images the prompt must fail on (an unauthorized domain), scored as given. Optional: without it the
   * score is the authorized accuracy alone.
   */
  unauthorized?: EvalSet;
}

/**
 * Stop when the validation score has not improved by more than `minDelta` for `patience` epochs in a row.
 * @category Training
 */
export interface EarlyStoppingOptions {
  /** Epochs without improvement before stopping (a positive integer). */
  patience: number;
  /** The least rise of the score that counts as an improvement (default 0). */
  minDelta?: number;
}

/**
 * What {@link TrainerOptions.onEpochEnd} receives after each epoch (its checkpoint is written after the callback).
 * @category Training
 */
export interface EpochEndInfo {
  /** The epoch that ended (0-based) and the run's epoch count. */
  epoch: number;
  epochs: number;
  /** Its record: mean loss terms, iterations, skipped updates, learning rate, validation scores. */
  record: EpochRecord;
  /** The best validation epoch so far (this one included); null without validation data. */
  best: { epoch: number; score: number } | null;
}

/**
 * What the epoch-end callback may answer: `'stop'` ends the fit after this epoch (fit again to go on).
 * @category Training
 */
export type EpochEndAction = void | 'stop';

/** The validation settings of a run, checked. */
export interface ValidationSettings {
  data: ValidationData | undefined;
  earlyStopping: Required<EarlyStoppingOptions> | undefined;
  restoreBest: boolean;
}

function isDataset(d: unknown): d is DomainDataset {
  return typeof d === 'object' && d !== null && Array.isArray((d as DomainDataset).samples);
}

function isEvalSetLike(x: unknown): boolean {
  return isDataset(x) || (typeof x === 'object' && x !== null && isDataset((x as { dataset?: unknown }).dataset));
}

/** Checks the validation options (`validation`, `earlyStopping`, `restoreBest`) of {@link TrainerOptions}. */
export function resolveValidation(opts: { validation?: ValidationData; earlyStopping?: EarlyStoppingOptions; restoreBest?: boolean }): ValidationSettings {
  const v = opts.validation;
  if (v !== undefined) {
    check(v !== null && typeof v === 'object' && isEvalSetLike(v.authorized),
      `validation must be { authorized: DomainDataset, unauthorized?: DomainDataset }, got ${show(v)}`);
    check(v.unauthorized === undefined || isEvalSetLike(v.unauthorized), `validation.unauthorized must be a DomainDataset, got ${show(v.unauthorized)}`);
  }
  let earlyStopping: Required<EarlyStoppingOptions> | undefined;
  if (opts.earlyStopping !== undefined) {
    const e = opts.earlyStopping;
    check(e !== null && typeof e === 'object', `earlyStopping must be { patience, minDelta? }, got ${show(e)}`);
    assertPositiveInteger(e.patience, 'earlyStopping.patience');
    const minDelta = e.minDelta ?? 0;
    check(is.finiteNumber(minDelta) && minDelta >= 0, `earlyStopping.minDelta must be a non-negative number, got ${show(minDelta)}`);
    check(v !== undefined, 'earlyStopping needs validation data (the `validation` option)');
    earlyStopping = { patience: e.patience, minDelta };
  }
  if (opts.restoreBest !== undefined) check(typeof opts.restoreBest === 'boolean', `restoreBest must be a boolean, got ${show(opts.restoreBest)}`);
  check(opts.restoreBest !== true || v !== undefined, 'restoreBest needs validation data (the `validation` option)');
  return { data: v, earlyStopping, restoreBest: opts.restoreBest === true };
}

/**
 * The score an epoch is chosen by, higher is better: for a protection scenario the authorized accuracy minus how
 * far the unauthorized one stays above chance (it must keep the first and bring the second down to chance; lower
 * than chance protects no better, and on a small validation set it is one or two images), for a reference, or
 * without unauthorized data, the authorized accuracy.
 */
export function validationScore(authorized: number, unauthorized: number | null, isReference: boolean, chance: number): number {
  return unauthorized === null || isReference ? authorized : authorized - Math.max(0, unauthorized - chance);
}

/** Scores `prompt` on the validation data, as the scenario's test sets are scored. */
export async function validate(prompt: PromptModel, data: ValidationData, scenario: ResolvedScenario, workers?: number): Promise<EpochValidation> {
  const evaluator = new Evaluator(prompt.clip, { zeroShot: false, ...(workers !== undefined ? { workers } : {}) });
  const a = isDataset(data.authorized) ? { dataset: data.authorized, watermark: scenario.evaluation.authorized.watermark } : data.authorized;
  const authorized = (await evaluator.evaluateSet(prompt, a)).accuracy;
  const unauthorized = data.unauthorized === undefined ? null : (await evaluator.evaluateSet(prompt, data.unauthorized)).accuracy;
  return { authorized, unauthorized, score: validationScore(authorized, unauthorized, scenario.descriptor.referenceOf !== null, 1 / prompt.numClasses) };
}

/**
 * "Training made it worse": a warning when the authorized validation accuracy of the prompt the run ends with
 * (the best epoch's under `restoreBest`, else the last one's) is more than 5 points below zero-shot CLIP's on the
 * same images (scored as {@link validate} scores them). Empty without validation data or scores.
 */
export async function trainingWarnings(prompt: PromptModel, data: ValidationData | undefined, history: readonly EpochRecord[],
  scenario: ResolvedScenario, endEpoch: number | null, workers?: number): Promise<string[]> {
  const scored = history.filter((r) => r.validation);
  if (!data || scored.length === 0) return [];
  const final = (endEpoch === null ? scored[scored.length - 1] : history.find((r) => r.epoch === endEpoch))?.validation;
  if (!final) return [];
  const evaluator = new Evaluator(prompt.clip, { zeroShot: false, ...(workers !== undefined ? { workers } : {}) });
  const a = isDataset(data.authorized) ? { dataset: data.authorized, watermark: scenario.evaluation.authorized.watermark } : data.authorized;
  const zeroShot = (await evaluator.zeroShot(a, prompt.classNames)).accuracy;
  if (final.authorized >= zeroShot - 0.05) return [];
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  return [`training made the authorized accuracy worse than zero-shot CLIP on the validation images (${pct(final.authorized)} vs ` +
    `${pct(zeroShot)}): try a lower lr, fewer epochs, or restoreBest`];
}

/** The best scored epoch of `history` (the earliest of equal scores); null when none was scored. */
export function bestEpoch(history: readonly EpochRecord[]): { epoch: number; score: number } | null {
  let best: { epoch: number; score: number } | null = null;
  for (const r of history) if (r.validation && (best === null || r.validation.score > best.score)) best = { epoch: r.epoch, score: r.validation.score };
  return best;
}

/**
 * Whether the patience ran out by the last epoch of `history` (Keras's rule): a score counts as an improvement
 * when it beats the best improvement so far by more than `minDelta`; the run stops once `patience` scored epochs
 * in a row were no improvement.
 */
export function earlyStopDue(history: readonly EpochRecord[], rule: Required<EarlyStoppingOptions>): boolean {
  let best = -Infinity;
  let wait = 0;
  for (const r of history) {
    if (!r.validation) continue;
    if (r.validation.score > best + rule.minDelta) { best = r.validation.score; wait = 0; } else wait++;
  }
  return wait >= rule.patience;
}
