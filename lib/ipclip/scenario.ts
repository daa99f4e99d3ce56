/**
 * The four protection scenarios (method §5) and the unprotected reference: which images and which transform
 * each training stream gets, and how the streams are turned into bank-construction passes.
 */
import { check } from '../core/errors.js';
import type { TransformChoice } from '../data/loader.js';
import type { Rng } from '../core/rng.js';
import type { Preset } from './schedule.js';
import { authorizationMixture, type TransformSpec } from '../image/transforms.js';

/**
 * `target-specified`, `ownership`, `target-free`, `authorization`: the protection scenarios of method §5.
 * `reference`: the unprotected model of method §7 (CE_A only; the other terms are computed with weight 0).
 */
export type Scenario = 'target-specified' | 'ownership' | 'target-free' | 'authorization' | 'reference';

/** Every accepted scenario name. */
export const SCENARIOS: readonly Scenario[] = ['target-specified', 'ownership', 'target-free', 'authorization', 'reference'];

/** The four protection scenarios (every {@link Scenario} but `reference`). */
export type ProtectionScenario = Exclude<Scenario, 'reference'>;

/** Every {@link ProtectionScenario} name. */
export const PROTECTION_SCENARIOS: readonly ProtectionScenario[] = ['target-specified', 'ownership', 'target-free', 'authorization'];

/**
 * Where the unauthorized stream's images come from:
 * - `own`: a dataset of its own with its own labels (target-specified), cycled while A's epochs run;
 * - `authorized`: the authorized images themselves under another transform (ownership, target-free,
 *   authorization, reference); U then carries A's labels. How U's samples line up with A's is the run's
 *   pairing (lib/ipclip/trainer/streams.ts: `paired` or `independent`).
 */
export type UnauthorizedSource = 'own' | 'authorized';

/** How the two streams of a scenario are drawn. */
export interface StreamPlan {
  scenario: Scenario;
  authorized: TransformChoice;
  unauthorized: TransformChoice;
  source: UnauthorizedSource;
  /** `reference` only: the protection scenario whose authorized stream this reference trains on. */
  referenceFor?: ProtectionScenario;
}

const TRAIN: TransformSpec = { augment: 'train' };

/**
 * The training streams of `scenario` (method §5):
 * - target-specified: A = source with the train augmentation; U = the target domain, train augmentation, its labels;
 * - ownership: A = clean images, U = the same images watermarked (both with the train augmentation);
 * - target-free: A = train augmentation, U = strong augmentation (RandAugment + Cutout) of the same images;
 * - authorization: A = watermarked images (train augmentation), U = the per-sample mixture of the same images
 *   (40% watermark + strong, 20% clean + train, 40% clean + strong);
 * - reference: see {@link referenceStreams}; `referenceFor` (default target-specified) says for which scenario.
 * @throws IpclipError `ERR_INVALID_ARGUMENT` for an unknown scenario, or `referenceFor` with a scenario other
 * than `reference`.
 */
export function trainingStreams(scenario: Scenario, referenceFor?: ProtectionScenario): StreamPlan {
  checkScenario(scenario);
  check(referenceFor === undefined || scenario === 'reference', `referenceFor applies to the reference scenario only, not to '${scenario}'`);
  switch (scenario) {
    case 'target-specified':
      return { scenario, authorized: TRAIN, unauthorized: TRAIN, source: 'own' };
    case 'ownership':
      return { scenario, authorized: TRAIN, unauthorized: { watermark: true, augment: 'train' }, source: 'authorized' };
    case 'target-free':
      return { scenario, authorized: TRAIN, unauthorized: { augment: 'strong' }, source: 'authorized' };
    case 'authorization':
      return { scenario, authorized: { watermark: true, augment: 'train' }, unauthorized: 'authorization-mixture', source: 'authorized' };
    case 'reference':
      return referenceStreams(referenceFor ?? 'target-specified');
  }
}

/**
 * The unprotected reference of protection scenario `of` (method §7: "trained the same way with CE_A only"): its
 * A stream is exactly `of`'s authorized stream (the watermarked images for authorization, clean images for the
 * others), so the reference is scored on the kind of images it was trained on. U is the same images, unused by
 * the loss (weight 0) but needed by the step.
 */
export function referenceStreams(of: ProtectionScenario): StreamPlan {
  check(isProtectionScenario(of), `referenceFor must be one of ${PROTECTION_SCENARIOS.join(', ')}, got ${String(of)}`);
  const authorized = trainingStreams(of).authorized;
  return { scenario: 'reference', authorized, unauthorized: authorized, source: 'authorized', referenceFor: of };
}

/**
 * The streams the feature banks are built from (method §3, §8).
 * - `official`: the training streams exactly, with their training augmentation (as the release does).
 * - `paper`: the same images and the same domain-defining transforms (the watermark, the strong augmentation,
 *   the authorization mixture's draw), but the random crop + flip of `train` replaced by the test transform,
 *   so the banks hold each stream's images as they would be evaluated.
 */
export function bankStreams(scenario: Scenario, preset: Preset): StreamPlan {
  const plan = trainingStreams(scenario);
  check(preset === 'paper' || preset === 'official', `preset must be 'paper' or 'official', got ${String(preset)}`);
  if (preset === 'official') return plan;
  return { ...plan, authorized: withoutRandomCrop(plan.authorized), unauthorized: withoutRandomCrop(plan.unauthorized) };
}

/** `choice` with every `train` augmentation replaced by `test` (watermark and strong kept). */
export function withoutRandomCrop(choice: TransformChoice): TransformChoice {
  const fix = (s: TransformSpec): TransformSpec => (s.augment === 'train' ? { ...s, augment: 'test' } : s);
  if (choice === 'authorization-mixture') return (rng: Rng) => fix(authorizationMixture(rng));
  if (typeof choice === 'function') return (rng: Rng, index: number) => fix(choice(rng, index));
  return fix(choice);
}

/**
 * The weight of each loss term beside CE_A (weight 1) in the total of method §4:
 * `CE_A + ceU·min(CE_U,5) + ceSelf·min(CE_self,5) + ceCross·min(CE_cross,5) + mse·min(MSE,5) + entropy·H + kl·KL`.
 */
export interface LossWeights {
  ceU: number;
  ceSelf: number;
  ceCross: number;
  mse: number;
  entropy: number;
  kl: number;
}

/** The target-specified family (target-specified, ownership): method §4's first row; `official` flips CE_self. */
const SPECIFIED_PAPER: LossWeights = { ceU: -1, ceSelf: 1, ceCross: -1, mse: -0.1, entropy: 0.01, kl: -1 };
/** The target-free family (target-free, authorization): method §4's second row, the same under both presets. */
const FREE: LossWeights = { ceU: -1, ceSelf: 1, ceCross: -1, mse: -5, entropy: 1, kl: -5 };
/** The reference trains on CE_A alone: every other weight 0 (and its step reads no unauthorized batch). */
const NONE: LossWeights = { ceU: 0, ceSelf: 0, ceCross: 0, mse: 0, entropy: 0, kl: 0 };

/**
 * Each scenario's loss, as data (method §4): whether its step has an unauthorized batch at all (`reference`: no,
 * CE_A alone) and its weights per preset. The one table the native step is given.
 */
export const SCENARIO_LOSS: Readonly<Record<Scenario, { readonly unauthorized: boolean; readonly weights: Readonly<Record<Preset, Readonly<LossWeights>>> }>> = {
  'target-specified': { unauthorized: true, weights: { paper: SPECIFIED_PAPER, official: { ...SPECIFIED_PAPER, ceSelf: -1 } } },
  ownership: { unauthorized: true, weights: { paper: SPECIFIED_PAPER, official: { ...SPECIFIED_PAPER, ceSelf: -1 } } },
  'target-free': { unauthorized: true, weights: { paper: FREE, official: FREE } },
  authorization: { unauthorized: true, weights: { paper: FREE, official: FREE } },
  reference: { unauthorized: false, weights: { paper: NONE, official: NONE } },
};

/**
 * The loss part of the native step's options for `scenario` under `preset` (which also selects the entropy's
 * numerics): `{ preset, unauthorized, lossWeights }`.
 */
export function stepLoss(scenario: Scenario, preset: Preset): { preset: Preset; unauthorized: boolean; lossWeights: LossWeights } {
  checkScenario(scenario);
  check(preset === 'paper' || preset === 'official', `preset must be 'paper' or 'official', got ${String(preset)}`);
  const loss = SCENARIO_LOSS[scenario];
  return { preset, unauthorized: loss.unauthorized, lossWeights: { ...loss.weights[preset] } };
}

/** True for an accepted {@link Scenario} name. */
export function isScenario(value: unknown): value is Scenario {
  return typeof value === 'string' && (SCENARIOS as readonly string[]).includes(value);
}

/**
 * Whether a reference trained for `referenceFor` is the right baseline for a prompt trained in `scenario`: its
 * authorized stream has the same transform (the watermark or not), so both are scored on images of the kind
 * they were trained on.
 */
export function referenceFits(scenario: ProtectionScenario, referenceFor: ProtectionScenario): boolean {
  const key = (c: TransformChoice) => (typeof c === 'object' ? `${c.watermark === true}/${c.augment}` : String(c));
  return key(trainingStreams(scenario).authorized) === key(trainingStreams(referenceFor).authorized);
}

/** What kind of images the authorized stream of `scenario` holds. */
export function authorizedImages(scenario: ProtectionScenario): 'watermarked' | 'clean' {
  const a = trainingStreams(scenario).authorized;
  return typeof a === 'object' && a.watermark === true ? 'watermarked' : 'clean';
}

/** True for a {@link ProtectionScenario} name. */
export function isProtectionScenario(value: unknown): value is ProtectionScenario {
  return typeof value === 'string' && (PROTECTION_SCENARIOS as readonly string[]).includes(value);
}

/** @throws IpclipError `ERR_INVALID_ARGUMENT` unless `value` is a {@link Scenario}. */
export function checkScenario(value: unknown): asserts value is Scenario {
  check(isScenario(value), `scenario must be one of ${SCENARIOS.join(', ')}, got ${String(value)}`);
}
