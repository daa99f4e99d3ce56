/**
 * The attack suite's shapes: budgets, one result row per attack variant and budget, the whole report, and the
 * context every attack family receives.
 */
import type { Clip } from '../../clip/clip.js';
import type { DomainDataset } from '../../data/dataset.js';
import type { OwnershipEvidence } from '../metrics.js';
import type { PromptModel } from '../prompt-model.js';
import type { ImageSet, ZeroShot } from './common.js';
import type { AttackRowSpread, SeedSpread } from './seeds.js';

/**
 * The attack families (`--attacks`):
 * - `source-finetune`: CE on a fraction of labelled authorized data (all prompt parameters; or the domain
 *   projector re-initialised first);
 * - `target-finetune`: CE on fractions of labelled unauthorized data, beside a fresh prompt trained from scratch
 *   on the same images;
 * - `source-free`: unlabelled unauthorized images only: information maximisation (entropy + batch diversity),
 *   and distillation from zero-shot CLIP's class probabilities;
 * - `style`: black box, no training: unauthorized images moved towards k authorized images' style (AdaIN,
 *   Fourier amplitude swap, histogram matching);
 * - `zero-shot`: the floor every attacker has for free, public CLIP with a plain template.
 * @category Attacks
 */
export type AttackFamily = 'source-finetune' | 'target-finetune' | 'source-free' | 'style' | 'zero-shot';

/** Every family, in report order. @category Attacks */
export const ATTACK_FAMILIES: readonly AttackFamily[] = ['zero-shot', 'source-finetune', 'target-finetune', 'source-free', 'style'];

/**
 * The attacker's budgets (every one a CLI flag of `ipclip attack`).
 * @category Attacks
 */
export interface AttackBudgets {
  /** Share of the authorized training split, labelled, for source fine-tuning (default 0.1). */
  sourceFraction: number;
  /** Shares of the unauthorized training pool, labelled, for target fine-tuning (default 0.01, 0.05, 0.1). */
  targetFractions: number[];
  /** Authorized images the style transforms aim at (default [8]). */
  styleK: number[];
  /** Optimiser steps of every training attack (default 100). */
  steps: number;
  /** Validation every this many steps: the candidates of the selection rule (default 10). */
  evalEvery: number;
  batchSize: number;
  /** Adam's learning rate, constant (default 0.001: the demo's peak rate). */
  lr: number;
  weightDecay: number;
  /**
   * Share of the unauthorized training split kept apart, labelled, as the attacker's validation split (default
   * 0.2). The attack pools (labelled fractions, unlabelled images) are drawn from the rest.
   */
  validationFraction: number;
  /** Fourier swap: the low band's half-width as a fraction of the image side (default 0.1). */
  fourierBeta: number;
}

/** @category Attacks */
export const DEFAULT_BUDGETS: Readonly<AttackBudgets> = Object.freeze({
  sourceFraction: 0.1, targetFractions: [0.01, 0.05, 0.1], styleK: [8], steps: 100, evalEvery: 10, batchSize: 8,
  lr: 0.001, weightDecay: 5e-4, validationFraction: 0.2, fourierBeta: 0.1,
});

/**
 * The selection rule every training attack declares: the attacker keeps the checkpoint with the best accuracy on
 * the labelled validation split of the unauthorized data (evaluated every `evalEvery` steps, the untouched prompt
 * excluded). This is optimistic for the attacker: a real one rarely has such labels.
 * @category Attacks
 */
export const SELECTION_RULE = 'best validation accuracy on a labelled validation split of the unauthorized training data (every evalEvery steps; step 0 excluded): attacker-optimistic';

/**
 * What `recovered` is measured against: zero-shot CLIP's accuracy on the unauthorized test split, the floor any
 * attacker holds without the protected prompt. recovered = (after − before) / (zero-shot − before); null when
 * the protected prompt is not at least 1 point below zero-shot (nothing to recover).
 * @category Attacks
 */
export const RECOVERY_REFERENCE = 'zero-shot CLIP on the unauthorized test split';

/** Accuracies on the two test splits. @category Attacks */
export interface AttackAccuracy {
  authorized: number;
  unauthorized: number;
}

/**
 * One attack variant at one budget.
 * @category Attacks
 */
export interface AttackRow {
  attack: AttackFamily;
  /** e.g. `all-params`, `reinit-domain`, `fine-tune`, `information-maximisation`, `distill-zero-shot`, `adain`. */
  variant: string;
  /** The budget: a labelled fraction, k style images, or none; `images`: how many the attacker used. */
  budget: { kind: 'fraction' | 'k' | 'none'; value: number; images: number; labelled: boolean };
  /** The protected prompt, untouched. */
  before: AttackAccuracy;
  /** After the attack (style: the prompt on disguised unauthorized images; authorized images untouched). */
  after: AttackAccuracy;
  /** Zero-shot CLIP on the unauthorized test split ({@link RECOVERY_REFERENCE}). */
  reference: number;
  /** (after − before) / (reference − before) on the unauthorized split; null when there is nothing to recover. */
  recovered: number | null;
  /** Optimiser steps run (0 for black-box attacks) and wall-clock seconds. */
  steps: number;
  seconds: number;
  /** The selection rule (training attacks) or null. */
  selection: string | null;
  /** The step of the selected checkpoint. */
  selectedStep?: number;
  /** Target fine-tuning: a fresh prompt trained from scratch on the same data with the same loop. */
  fresh?: AttackAccuracy;
  /** Target fine-tuning: after.unauthorized − fresh.unauthorized, what the protected prompt gives the attacker. */
  advantage?: number;
  /** Style: zero-shot CLIP on the disguised unauthorized images (how much content the transform kept). */
  zeroShotAfter?: number;
  /** With `ownership`: the watermark evidence of the attacked prompt (authorized test, clean vs watermarked). */
  ownership?: { before: OwnershipEvidence; after: OwnershipEvidence };
  /** One plain sentence saying what happened. */
  sentence: string;
  /**
   * A report merged over several seeds ({@link mergeAttackSeeds}): the row's mean ± sample std and per-seed
   * values; the row's own numbers are then the means. Absent in a single-seed report.
   */
  spread?: AttackRowSpread;
}

/**
 * What {@link runAttacks} returns (and `ipclip attack` writes as attack.json).
 * @category Attacks
 */
export interface AttackReport {
  format: 'ipclip-attack/1';
  date: string;
  seconds: number;
  seed: number;
  classNames: string[];
  chance: number;
  clip: { fingerprint: string; dtype: string; device: string };
  domains: { authorized: string; unauthorized: string };
  /** Images of each split the suite used. */
  counts: { authorizedTrain: number; authorizedTest: number; unauthorizedPool: number; unauthorizedValidation: number; unauthorizedTest: number };
  budgets: AttackBudgets;
  selectionRule: string;
  recoveryReference: string;
  /** The protected prompt and zero-shot CLIP on both test splits. */
  protected: AttackAccuracy;
  zeroShot: AttackAccuracy;
  rows: AttackRow[];
  /**
   * A report merged over several seeds ({@link mergeAttackSeeds}; `seed` is then the first): the seeds, in order,
   * the spread of the protected prompt and of zero-shot CLIP, and every seed's own report. `protected`,
   * `zeroShot`, `counts` and the rows then hold means over the seeds. Absent in a single-seed report.
   */
  seeds?: number[];
  spread?: { protected: { authorized: SeedSpread; unauthorized: SeedSpread }; zeroShot: { authorized: SeedSpread; unauthorized: SeedSpread } };
  perSeed?: AttackReport[];
}

/**
 * Progress of {@link runAttacks}.
 * @category Attacks
 */
export interface AttackProgress {
  attack: AttackFamily;
  variant: string;
  /** Rows finished so far. */
  done: number;
  /** Training step within the current attack, and its total (absent for black-box attacks). */
  step?: number;
  steps?: number;
}

/** Two splits of a domain. @category Attacks */
export interface SplitPair {
  train: DomainDataset;
  test: DomainDataset;
}

/**
 * Options of {@link runAttacks}.
 * @category Attacks
 */
export interface RunAttacksOptions {
  /** The protected prompt (never changed: attacks train copies). */
  prompt: PromptModel;
  /** Its CLIP (defaults to `prompt.clip`; must be the same model). */
  clip?: Clip;
  data: { authorized: SplitPair; unauthorized: SplitPair };
  /** Default: every family. */
  attacks?: AttackFamily[];
  budgets?: Partial<AttackBudgets>;
  /** Seeds the splits, the draws and the training order (default 0). */
  seed?: number;
  /** Also measure the ownership watermark evidence before and after each training attack (default false). */
  ownership?: boolean;
  /** Zero-shot template (default 'a photo of a {}.'). */
  template?: string;
  /** Loader worker threads (default: the loader's). */
  workers?: number;
  onProgress?: (p: AttackProgress) => void;
  /** Stops the suite after the current step with `ERR_ABORTED`. */
  signal?: AbortSignal;
}

/** What every family gets. @internal */
export interface AttackContext {
  prompt: PromptModel;
  clip: Clip;
  budgets: AttackBudgets;
  seed: number;
  sets: {
    authorizedTrain: ImageSet; authorizedTest: ImageSet; authorizedTestWatermarked: ImageSet | null;
    unauthorizedPool: ImageSet; unauthorizedValidation: ImageSet; unauthorizedTest: ImageSet;
  };
  domains: { authorized: string; unauthorized: string };
  zeroShot: ZeroShot;
  before: AttackAccuracy;
  zeroShotAccuracy: AttackAccuracy;
  ownershipBefore: OwnershipEvidence | null;
  progress: (variant: string, step?: number, steps?: number) => void;
  signal?: AbortSignal;
}
