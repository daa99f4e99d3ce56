/**
 * The protection scenarios (method §5) and the unprotected reference (method §7), each as one descriptor: which
 * images and which transform each training stream gets, whether the run builds feature banks, whether the
 * unauthorized stream is a dataset of its own, the loss weights per preset (the table the native step is given),
 * the test sets the trained prompt is scored on, and the labels the CLI and the demo show.
 *
 * {@link SCENARIO_DESCRIPTORS} is the only list of scenarios (the {@link Scenario} type names its keys, and the
 * compiler holds the two together): the trainer, the evaluator's set plan, the CLI (`train`, `eval`) and the demo
 * read it and never branch on a scenario's name. A new scenario is one new entry here (and its name in the type)
 * plus the code that is genuinely new to it (a new transform, say).
 */
import { check } from '../core/errors.js';
import type { TransformChoice } from '../data/loader.js';
import type { Rng } from '../core/rng.js';
import type { LossTerms, LossWeights } from '../native/types.js';
import type { Preset } from './schedule.js';
import { authorizationMixture, type TransformSpec } from '../image/transforms.js';

/**
 * Where the unauthorized stream's images come from:
 * - `own`: a dataset of its own with its own labels (target-specified), cycled while A's epochs run;
 * - `authorized`: the authorized images themselves under another transform (ownership, target-free,
 *   authorization, reference); U then carries A's labels. How U's samples line up with A's is the run's
 *   pairing (lib/ipclip/trainer/streams.ts: `paired` or `independent`).
 * @category Training
 */
export type UnauthorizedSource = 'own' | 'authorized';

/**
 * The two training streams of a scenario: each stream's transform, and where U's images come from.
 * @category Training
 */
export interface StreamSpec {
  readonly authorized: TransformChoice;
  readonly unauthorized: TransformChoice;
  readonly source: UnauthorizedSource;
}

// The loss weights are declared once, with the binding's types they are sent as (lib/native/types.ts).
export type { LossWeights } from '../native/types.js';

/** The names of the {@link LossWeights}, in the order of method §4. */
export const LOSS_WEIGHT_NAMES: readonly (keyof LossWeights)[] = ['ceU', 'ceSelf', 'ceCross', 'mse', 'entropy', 'kl'];

/**
 * A scenario's loss (method §4): whether its step has an unauthorized batch at all (false: CE_A alone, the other
 * terms reported as 0), and its weights per preset.
 * @category Training
 */
export interface ScenarioLoss {
  readonly unauthorized: boolean;
  readonly weights: Readonly<Record<Preset, Readonly<LossWeights>>>;
}

/**
 * One test set of a scenario: the authorized domain's test split or every other domain's, clean or watermarked.
 * @category Training
 */
export interface EvaluationSetRule {
  readonly domain: 'authorized' | 'others';
  readonly watermark: boolean;
}

/**
 * The test sets a scenario's prompt is scored on (method §5's "evaluated on").
 * @category Training
 */
export interface EvaluationSpec {
  /** The authorized set: the authorized domain's test split, watermarked (the key) or clean. */
  readonly authorized: { readonly watermark: boolean };
  /**
   * The unauthorized sets in report order: first the rules on the authorized domain, then, for each other
   * domain in turn, the rules on `others`.
   */
  readonly unauthorized: readonly EvaluationSetRule[];
}

/**
 * `target-specified`, `ownership`, `target-free`, `authorization`: the protection scenarios of method §5.
 * `reference`: the unprotected model of method §7 (CE_A only). The keys of {@link SCENARIO_DESCRIPTORS} (the
 * compiler holds the two to the same names).
 * @category Training
 */
export type Scenario = 'target-specified' | 'ownership' | 'target-free' | 'authorization' | 'reference';

/**
 * The protection scenarios: every {@link Scenario} whose descriptor is not a reference's.
 * @category Training
 */
export type ProtectionScenario = Exclude<Scenario, 'reference'>;

/**
 * Everything that makes a scenario what it is.
 * @category Training
 */
export interface ScenarioDescriptor {
  /** One line on what the scenario trains for (CLI help). */
  readonly summary: string;
  /** The name of a run in the demo's progress and report; `{authorized}` and `{unauthorized}` name the domains. */
  readonly label: string;
  /** The training streams; null for a reference, which takes those of the scenario it is the reference of. */
  readonly streams: StreamSpec | null;
  /** Whether a run builds the two feature banks (method §3) before training. */
  readonly buildsBanks: boolean;
  readonly loss: ScenarioLoss;
  /** The test sets; null for a reference, which is scored on those of the scenario it is the reference of. */
  readonly evaluation: EvaluationSpec | null;
  /**
   * Whether the prompt's clean vs watermarked accuracy on the authorized test split is ownership evidence (the
   * one-sided binomial test of method §5).
   */
  readonly ownershipEvidence: boolean;
  /** The loss terms a compact progress line shows. */
  readonly progressTerms: readonly (keyof LossTerms)[];
  /**
   * Set for an unprotected reference (method §7, "trained the same way with CE_A only"): it is the reference of a
   * protection scenario (`referenceFor`, default `default`), whose authorized stream it trains on (U: the same
   * images, unused by its loss) and whose sets it is scored on. Null for a protection scenario.
   */
  readonly referenceOf: { readonly default: string } | null;
}

const TRAIN: TransformSpec = { augment: 'train' };
const WATERMARK_TRAIN: TransformSpec = { watermark: true, augment: 'train' };
// The compact progress line (≤ 80 columns with the counts, ETA, epoch and lr): the authorized fit and the push on U.
// The total is left to --verbose: with the negative terms it is often below zero and says little on its own.
const PROGRESS: readonly (keyof LossTerms)[] = ['ceA', 'ceU'];
/** The target-specified family (target-specified, ownership): method §4's first row; `official` flips CE_self. */
const SPECIFIED_PAPER: LossWeights = { ceU: -1, ceSelf: 1, ceCross: -1, mse: -0.1, entropy: 0.01, kl: -1 };
const SPECIFIED: ScenarioLoss = { unauthorized: true, weights: { paper: SPECIFIED_PAPER, official: { ...SPECIFIED_PAPER, ceSelf: -1 } } };
/** The target-free family (target-free, authorization): method §4's second row, the same under both presets. */
const FREE_WEIGHTS: LossWeights = { ceU: -1, ceSelf: 1, ceCross: -1, mse: -5, entropy: 1, kl: -5 };
const FREE: ScenarioLoss = { unauthorized: true, weights: { paper: FREE_WEIGHTS, official: FREE_WEIGHTS } };
const NONE: LossWeights = { ceU: 0, ceSelf: 0, ceCross: 0, mse: 0, entropy: 0, kl: 0 };
const CLEAN_AGAINST_OTHERS: EvaluationSpec = { authorized: { watermark: false }, unauthorized: [{ domain: 'others', watermark: false }] };

/**
 * The scenarios, one descriptor each (method §5, §7):
 * - target-specified: A = source with the train augmentation; U = the target domain, train augmentation, its labels;
 * - ownership: A = clean images, U = the same images watermarked (both with the train augmentation);
 * - target-free: A = train augmentation, U = strong augmentation (RandAugment + Cutout) of the same images;
 * - authorization: A = watermarked images (train augmentation), U = the per-sample mixture of the same images
 *   (40% watermark + strong, 20% clean + train, 40% clean + strong);
 * - reference: CE_A only, on the authorized stream of the protection scenario it is the reference of.
 */
const TABLE: Record<Scenario, ScenarioDescriptor> = {
  'target-specified': {
    summary: 'protect against one target domain: U is a dataset of its own (--unauthorized)',
    label: 'IP-CLIP {authorized} vs {unauthorized}',
    streams: { authorized: TRAIN, unauthorized: TRAIN, source: 'own' },
    buildsBanks: true,
    loss: SPECIFIED,
    evaluation: CLEAN_AGAINST_OTHERS,
    ownershipEvidence: false,
    progressTerms: PROGRESS,
    referenceOf: null,
  },
  ownership: {
    summary: 'the authorized images work clean and fail watermarked (U: the same images, watermarked)',
    label: 'IP-CLIP ownership of {authorized}',
    streams: { authorized: TRAIN, unauthorized: WATERMARK_TRAIN, source: 'authorized' },
    buildsBanks: true,
    loss: SPECIFIED,
    evaluation: { authorized: { watermark: false }, unauthorized: [{ domain: 'authorized', watermark: true }] },
    ownershipEvidence: true,
    progressTerms: PROGRESS,
    referenceOf: null,
  },
  'target-free': {
    summary: 'protect against every other domain (U: the same images under the strong augmentation)',
    label: 'IP-CLIP {authorized} only',
    streams: { authorized: TRAIN, unauthorized: { augment: 'strong' }, source: 'authorized' },
    buildsBanks: true,
    loss: FREE,
    evaluation: CLEAN_AGAINST_OTHERS,
    ownershipEvidence: false,
    progressTerms: PROGRESS,
    referenceOf: null,
  },
  authorization: {
    summary: 'only watermarked authorized images work (A: watermarked; U: the authorization mixture of the same images)',
    label: 'IP-CLIP authorization of {authorized}',
    streams: { authorized: WATERMARK_TRAIN, unauthorized: 'authorization-mixture', source: 'authorized' },
    buildsBanks: true,
    loss: FREE,
    evaluation: {
      authorized: { watermark: true },
      unauthorized: [{ domain: 'authorized', watermark: false }, { domain: 'others', watermark: false }, { domain: 'others', watermark: true }],
    },
    ownershipEvidence: false,
    progressTerms: PROGRESS,
    referenceOf: null,
  },
  reference: {
    summary: 'the unprotected baseline the metrics compare with: CE on the authorized stream of --reference-for only',
    label: 'reference (CE_A only)',
    streams: null,
    buildsBanks: false,
    loss: { unauthorized: false, weights: { paper: NONE, official: NONE } },
    evaluation: null,
    ownershipEvidence: false,
    progressTerms: ['ceA'],
    referenceOf: { default: 'target-specified' },
  },
};

function deepFreeze<T>(x: T): T {
  if (x !== null && typeof x === 'object' && !Object.isFrozen(x)) {
    Object.freeze(x);
    for (const v of Object.values(x as object)) deepFreeze(v);
  }
  return x;
}

/**
 * Every scenario's descriptor, by name (frozen).
 * @category Training
 */
export const SCENARIO_DESCRIPTORS: Readonly<Record<Scenario, ScenarioDescriptor>> = deepFreeze(TABLE);

/**
 * Every accepted scenario name, in the table's order.
 * @category Training
 */
export const SCENARIOS: readonly Scenario[] = Object.freeze(Object.keys(TABLE) as Scenario[]);

/**
 * Every {@link ProtectionScenario} name.
 * @category Training
 */
export const PROTECTION_SCENARIOS: readonly ProtectionScenario[] =
  Object.freeze(SCENARIOS.filter((s) => TABLE[s].referenceOf === null) as ProtectionScenario[]);

/** The unprotected reference's scenario (the one descriptor with `referenceOf`). */
export const REFERENCE_SCENARIO: Scenario = SCENARIOS.find((s) => SCENARIO_DESCRIPTORS[s].referenceOf !== null)!;

/** The scenario `ipclip train` runs without `--scenario`. */
export const DEFAULT_SCENARIO: Scenario = 'target-specified';

/** Suffix of a watermarked test set's name. */
export const WATERMARK_SUFFIX = '+watermark';

/** True for an accepted {@link Scenario} name. */
export function isScenario(value: unknown): value is Scenario {
  return typeof value === 'string' && Object.hasOwn(TABLE, value);
}

/** True for a {@link ProtectionScenario} name. */
export function isProtectionScenario(value: unknown): value is ProtectionScenario {
  return typeof value === 'string' && (PROTECTION_SCENARIOS as readonly string[]).includes(value);
}

/** @throws IpclipError `ERR_INVALID_ARGUMENT` unless `value` is a {@link Scenario}. */
export function checkScenario(value: unknown): asserts value is Scenario {
  check(isScenario(value), `scenario must be one of ${SCENARIOS.join(', ')}, got ${String(value)}`);
}

/** The descriptor of `scenario`. @throws IpclipError `ERR_INVALID_ARGUMENT` for an unknown name. */
export function scenarioDescriptor(scenario: Scenario): ScenarioDescriptor {
  checkScenario(scenario);
  return SCENARIO_DESCRIPTORS[scenario];
}

/**
 * How the two streams of a run are drawn.
 * @category Training
 */
export interface StreamPlan extends StreamSpec {
  scenario: Scenario;
  /** A reference only: the protection scenario whose authorized stream this reference trains on. */
  referenceFor?: ProtectionScenario;
}

/**
 * A scenario as one run uses it: its descriptor, and for a reference the scenario it is the reference of.
 * @category Training
 */
export interface ResolvedScenario {
  scenario: Scenario;
  descriptor: ScenarioDescriptor;
  /** The protection scenario a reference is for; null for a protection scenario. */
  referenceFor: ProtectionScenario | null;
  /** The training streams. */
  streams: StreamPlan;
  /** The test sets (a reference's: those of its `referenceFor`). */
  evaluation: EvaluationSpec;
}

/**
 * `scenario` resolved for a run: a reference takes the authorized stream and the test sets of `referenceFor`
 * (default its descriptor's), with U the same images under the same transform (unused by its loss).
 * @throws IpclipError `ERR_INVALID_ARGUMENT` for an unknown scenario, a `referenceFor` that is not a protection
 * scenario, or `referenceFor` with a scenario that is not a reference.
 */
export function resolveScenario(scenario: Scenario, referenceFor?: ProtectionScenario | null): ResolvedScenario {
  const descriptor = scenarioDescriptor(scenario);
  const given = referenceFor ?? undefined;
  if (descriptor.referenceOf === null) {
    check(given === undefined, `referenceFor applies to the reference scenario only, not to '${scenario}'`);
    return { scenario, descriptor, referenceFor: null, streams: { scenario, ...descriptor.streams! }, evaluation: descriptor.evaluation! };
  }
  const of = given ?? descriptor.referenceOf.default;
  check(isProtectionScenario(of), `referenceFor must be one of ${PROTECTION_SCENARIOS.join(', ')}, got ${String(of)}`);
  const basis = SCENARIO_DESCRIPTORS[of];
  const authorized = basis.streams!.authorized;
  return {
    scenario, descriptor, referenceFor: of,
    streams: { scenario, authorized, unauthorized: authorized, source: 'authorized', referenceFor: of },
    evaluation: basis.evaluation!,
  };
}

/**
 * The training streams of `scenario` (see {@link SCENARIO_DESCRIPTORS}); for a reference, those of
 * `referenceFor` (see {@link resolveScenario}).
 * @throws IpclipError as {@link resolveScenario}.
 */
export function trainingStreams(scenario: Scenario, referenceFor?: ProtectionScenario): StreamPlan {
  return resolveScenario(scenario, referenceFor).streams;
}

/**
 * The streams of the unprotected reference of protection scenario `of` (method §7: "trained the same way with
 * CE_A only"): its A stream is exactly `of`'s authorized stream, so the reference is scored on the kind of
 * images it was trained on. U is the same images, unused by the loss but needed by the step.
 */
export function referenceStreams(of: ProtectionScenario): StreamPlan {
  check(isProtectionScenario(of), `referenceFor must be one of ${PROTECTION_SCENARIOS.join(', ')}, got ${String(of)}`);
  return trainingStreams(REFERENCE_SCENARIO, of);
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

/** The loss of `scenario` (see {@link ScenarioLoss}), by name. */
export const SCENARIO_LOSS: Readonly<Record<Scenario, ScenarioLoss>> =
  Object.freeze(Object.fromEntries(SCENARIOS.map((s) => [s, SCENARIO_DESCRIPTORS[s].loss])) as Record<Scenario, ScenarioLoss>);

/**
 * The loss part of the native step's options for `scenario` under `preset` (which also selects the entropy's
 * numerics): `{ preset, unauthorized, lossWeights }`.
 */
export function stepLoss(scenario: Scenario, preset: Preset): { preset: Preset; unauthorized: boolean; lossWeights: LossWeights } {
  const loss = scenarioDescriptor(scenario).loss;
  check(preset === 'paper' || preset === 'official', `preset must be 'paper' or 'official', got ${String(preset)}`);
  return { preset, unauthorized: loss.unauthorized, lossWeights: { ...loss.weights[preset] } };
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

/** One test set by name: which domain's test split, watermarked or not. */
export interface EvaluationSet {
  /** The set's name in reports: the domain, with {@link WATERMARK_SUFFIX} when watermarked. */
  name: string;
  domain: string;
  watermark: boolean;
}

/** Whether the sets of `spec` include the other domains' test splits (else the authorized domain's only). */
export function needsOtherDomains(spec: EvaluationSpec): boolean {
  return spec.unauthorized.some((r) => r.domain === 'others');
}

/**
 * The test sets of `spec` for the authorized domain `authorized` and the other domains `others`, by name: the
 * authorized set, and the unauthorized sets in report order (see {@link EvaluationSpec.unauthorized}).
 */
export function evaluationSets(spec: EvaluationSpec, authorized: string, others: readonly string[]):
  { authorized: EvaluationSet; unauthorized: EvaluationSet[] } {
  const set = (domain: string, watermark: boolean): EvaluationSet => ({ name: watermark ? domain + WATERMARK_SUFFIX : domain, domain, watermark });
  const unauthorized = spec.unauthorized.filter((r) => r.domain === 'authorized').map((r) => set(authorized, r.watermark));
  for (const d of others) for (const r of spec.unauthorized) if (r.domain === 'others') unauthorized.push(set(d, r.watermark));
  return { authorized: set(authorized, spec.authorized.watermark), unauthorized };
}

/** `spec` in words, e.g. "the authorized test split watermarked, against it clean and every other domain clean and watermarked". */
export function describeEvaluation(spec: EvaluationSpec): string {
  const kind = (w: boolean) => (w ? 'watermarked' : 'clean');
  const own = spec.unauthorized.filter((r) => r.domain === 'authorized').map((r) => `it ${kind(r.watermark)}`);
  const others = spec.unauthorized.filter((r) => r.domain === 'others').map((r) => kind(r.watermark));
  const against = [...own, ...(others.length > 0 ? [`every other domain ${others.join(' and ')}`] : [])];
  return `the authorized test split ${kind(spec.authorized.watermark)}, against ${against.join(' and ')}`;
}

/** A descriptor's {@link ScenarioDescriptor.label} with the domain names filled in. */
export function scenarioLabel(scenario: Scenario, domains: { authorized: string; unauthorized?: string }): string {
  return scenarioDescriptor(scenario).label
    .replaceAll('{authorized}', domains.authorized).replaceAll('{unauthorized}', domains.unauthorized ?? 'the other domains');
}
