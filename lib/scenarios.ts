/**
 * The four protection scenarios (spec §5) and the unprotected reference: which images and which transform
 * each training stream gets, and how the streams are turned into bank-construction passes.
 */
import { check } from './errors.js';
import type { TransformChoice } from './loader.js';
import type { Rng } from './rng.js';
import type { Preset } from './schedule.js';
import { authorizationMixture, type TransformSpec } from './transforms.js';

/**
 * `target-specified`, `ownership`, `target-free`, `authorization`: the protection scenarios of spec §5.
 * `reference`: the unprotected model of spec §7 (CE_A only; the other terms are computed with weight 0).
 */
export type Scenario = 'target-specified' | 'ownership' | 'target-free' | 'authorization' | 'reference';

/** Every accepted scenario name. */
export const SCENARIOS: readonly Scenario[] = ['target-specified', 'ownership', 'target-free', 'authorization', 'reference'];

/**
 * Where the unauthorized stream's images come from:
 * - `own`: a dataset of its own with its own labels (target-specified), cycled while A's epoch runs;
 * - `paired`: the authorized images themselves, in the same order, so U's sample b is A's sample b under
 *   another transform (ownership, target-free, authorization, reference); U then carries A's labels.
 */
export type UnauthorizedSource = 'own' | 'paired';

/** How the two streams of a scenario are drawn. */
export interface StreamPlan {
  scenario: Scenario;
  authorized: TransformChoice;
  unauthorized: TransformChoice;
  source: UnauthorizedSource;
}

const TRAIN: TransformSpec = { augment: 'train' };

/**
 * The training streams of `scenario` (spec §5):
 * - target-specified: A = source with the train augmentation; U = the target domain, train augmentation, its labels;
 * - ownership: A = clean images, U = the same images watermarked (both with the train augmentation);
 * - target-free: A = train augmentation, U = strong augmentation (RandAugment + Cutout) of the same images;
 * - authorization: A = watermarked images (train augmentation), U = the per-sample mixture of the same images
 *   (40% watermark + strong, 20% clean + train, 40% clean + strong);
 * - reference: A = train augmentation; U = the same images, unused by the loss (weight 0) but needed by the step.
 */
export function trainingStreams(scenario: Scenario): StreamPlan {
  checkScenario(scenario);
  switch (scenario) {
    case 'target-specified':
      return { scenario, authorized: TRAIN, unauthorized: TRAIN, source: 'own' };
    case 'ownership':
      return { scenario, authorized: TRAIN, unauthorized: { watermark: true, augment: 'train' }, source: 'paired' };
    case 'target-free':
      return { scenario, authorized: TRAIN, unauthorized: { augment: 'strong' }, source: 'paired' };
    case 'authorization':
      return { scenario, authorized: { watermark: true, augment: 'train' }, unauthorized: 'authorization-mixture', source: 'paired' };
    case 'reference':
      return { scenario, authorized: TRAIN, unauthorized: TRAIN, source: 'paired' };
  }
}

/**
 * The streams the feature banks are built from (spec §3, §8).
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

/** True for an accepted {@link Scenario} name. */
export function isScenario(value: unknown): value is Scenario {
  return typeof value === 'string' && (SCENARIOS as readonly string[]).includes(value);
}

/** @throws IpclipError `ERR_INVALID_ARGUMENT` unless `value` is a {@link Scenario}. */
export function checkScenario(value: unknown): asserts value is Scenario {
  check(isScenario(value), `scenario must be one of ${SCENARIOS.join(', ')}, got ${String(value)}`);
}
