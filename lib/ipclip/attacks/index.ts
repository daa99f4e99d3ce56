/**
 * {@link runAttacks}: does the barrier survive an attacker? The suite runs each attack family against a protected
 * prompt, its CLIP and a dataset (an authorized and an unauthorized domain, each with train and test splits), on
 * working copies of the prompt, and reports per attack and budget the accuracies before and after on both test
 * splits, the recovered fraction against zero-shot CLIP ({@link RECOVERY_REFERENCE}), the cost, and the declared
 * attacker-optimistic selection rule ({@link SELECTION_RULE}). docs/attacks.md describes every attack.
 */
import { IpclipError, check } from '../../core/errors.js';
import { Rng } from '../../core/rng.js';
import { sameNames } from '../../core/is.js';
import { loadImageSet, permutation, pick, promptAccuracy, ZeroShot } from './common.js';
import { sourceFinetune, targetFinetune } from './finetune.js';
import { ownershipOfSets, row } from './rows.js';
import { sourceFree } from './source-free.js';
import { styleDisguise } from './style-attack.js';
import {
  ATTACK_FAMILIES, DEFAULT_BUDGETS, RECOVERY_REFERENCE, SELECTION_RULE,
  type AttackBudgets, type AttackContext, type AttackFamily, type AttackReport, type AttackRow, type RunAttacksOptions,
} from './types.js';

export * from './types.js';
export { recoveredFraction, sentence } from './rows.js';
export { mergeAttackSeeds, rowKey, seedSpread, type AttackRowSpread, type SeedSpread } from './seeds.js';
export {
  adain, amplitude, bandHalfWidth, channelStats, dft2, disguise, fourierSwap, histogramMatch, inLowBand, levelHistogram,
  styleTarget, STYLE_METHODS, type StyleMethod, type StyleTarget, type Spectrum,
} from './style.js';
export type { ImageSet } from './common.js';

/**
 * Budgets with defaults filled in, checked.
 * @throws IpclipError `ERR_INVALID_ARGUMENT` naming the budget.
 * @category Attacks
 */
export function resolveBudgets(b: Partial<AttackBudgets> = {}): AttackBudgets {
  check(b !== null && typeof b === 'object', 'runAttacks: budgets must be an object');
  const out: AttackBudgets = { ...DEFAULT_BUDGETS, ...b, targetFractions: [...(b.targetFractions ?? DEFAULT_BUDGETS.targetFractions)], styleK: [...(b.styleK ?? DEFAULT_BUDGETS.styleK)] };
  const frac = (x: unknown, name: string) => check(typeof x === 'number' && x > 0 && x <= 1, `budget ${name} must be a fraction in (0, 1], got ${String(x)}`);
  const posInt = (x: unknown, name: string) => check(Number.isInteger(x) && (x as number) >= 1, `budget ${name} must be a positive integer, got ${String(x)}`);
  frac(out.sourceFraction, 'sourceFraction');
  check(Array.isArray(out.targetFractions) && out.targetFractions.length > 0, 'budget targetFractions must be a non-empty list');
  out.targetFractions.forEach((f) => frac(f, 'targetFractions'));
  check(Array.isArray(out.styleK) && out.styleK.length > 0, 'budget styleK must be a non-empty list');
  out.styleK.forEach((k) => posInt(k, 'styleK'));
  posInt(out.steps, 'steps');
  posInt(out.evalEvery, 'evalEvery');
  posInt(out.batchSize, 'batchSize');
  check(out.batchSize >= 2, `budget batchSize must be at least 2, got ${out.batchSize}`);
  check(Number.isFinite(out.lr) && out.lr > 0, `budget lr must be positive, got ${out.lr}`);
  check(Number.isFinite(out.weightDecay) && out.weightDecay >= 0, `budget weightDecay must be ≥ 0, got ${out.weightDecay}`);
  check(out.validationFraction > 0 && out.validationFraction < 1, `budget validationFraction must be in (0, 1), got ${out.validationFraction}`);
  check(out.fourierBeta > 0 && out.fourierBeta < 0.5, `budget fourierBeta must be in (0, 0.5), got ${out.fourierBeta}`);
  return out;
}

/**
 * Runs the attack suite against a protected prompt. The prompt is never changed: training attacks work on copies.
 *
 * ```ts
 * const report = await runAttacks({ prompt, data: { authorized: photo, unauthorized: sketch }, attacks: ['style', 'target-finetune'] });
 * for (const r of report.rows) console.log(r.sentence);
 * ```
 * @throws IpclipError `ERR_INVALID_ARGUMENT` (bad options or budgets), `ERR_MISMATCH` (datasets with other class
 * names than the prompt's, another CLIP), `ERR_EMPTY_INPUT`, `ERR_ABORTED`, loader and native errors.
 * @category Attacks
 */
export async function runAttacks(opts: RunAttacksOptions): Promise<AttackReport> {
  check(opts !== null && typeof opts === 'object', 'runAttacks: expected an options object');
  const { prompt } = opts;
  check(prompt !== null && typeof prompt === 'object' && typeof prompt.state === 'function', 'runAttacks: prompt must be a PromptModel');
  const clip = opts.clip ?? prompt.clip;
  if (clip !== prompt.clip) throw new IpclipError('ERR_MISMATCH', 'runAttacks: clip must be the CLIP the prompt runs on');
  const d = opts.data;
  check(d !== null && typeof d === 'object' && d.authorized && d.unauthorized, 'runAttacks: data must be { authorized: { train, test }, unauthorized: { train, test } }');
  for (const [name, pair] of [['authorized', d.authorized], ['unauthorized', d.unauthorized]] as const) {
    for (const split of ['train', 'test'] as const) {
      const ds = pair[split];
      check(ds !== null && typeof ds === 'object' && Array.isArray(ds.samples), `runAttacks: data.${name}.${split} must be a DomainDataset`);
      if (!sameNames(ds.classNames, prompt.classNames)) {
        throw new IpclipError('ERR_MISMATCH', `runAttacks: data.${name}.${split} has classes [${ds.classNames.join(', ')}], the prompt [${prompt.classNames.join(', ')}]`);
      }
    }
  }
  const attacks = opts.attacks ?? [...ATTACK_FAMILIES];
  check(Array.isArray(attacks) && attacks.length > 0, 'runAttacks: attacks must be a non-empty list');
  for (const a of attacks) check(ATTACK_FAMILIES.includes(a), `runAttacks: unknown attack '${String(a)}' (${ATTACK_FAMILIES.join(', ')})`);
  const budgets = resolveBudgets(opts.budgets);
  const seed = opts.seed ?? 0;
  check(Number.isSafeInteger(seed) && seed >= 0, `runAttacks: seed must be a non-negative integer, got ${String(seed)}`);
  const started = performance.now();
  const size = clip.config.vision.imageSize;
  const load = { ...(opts.workers !== undefined ? { workers: opts.workers } : {}) };
  const authorizedTrain = await loadImageSet(d.authorized.train, size, load);
  const authorizedTest = await loadImageSet(d.authorized.test, size, load);
  const unauthorizedTrain = await loadImageSet(d.unauthorized.train, size, load);
  const unauthorizedTest = await loadImageSet(d.unauthorized.test, size, load);
  const authorizedTestWatermarked = opts.ownership ? await loadImageSet(d.authorized.test, size, { ...load, watermark: true }) : null;
  // The attacker's validation split: a seeded share of the unauthorized training split; the pools take the rest.
  const order = permutation(unauthorizedTrain.labels.length, new Rng(seed).fork('validation'));
  const nVal = Math.max(1, Math.round(budgets.validationFraction * order.length));
  check(order.length - nVal >= 2, `runAttacks: the unauthorized training split (${order.length} images) is too small for a validation split and a pool`);
  const unauthorizedValidation = pick(unauthorizedTrain, order.slice(0, nVal));
  const unauthorizedPool = pick(unauthorizedTrain, order.slice(nVal));

  const zeroShot = await ZeroShot.create(clip, prompt.classNames, opts.template);
  const before = { authorized: await promptAccuracy(prompt, authorizedTest), unauthorized: await promptAccuracy(prompt, unauthorizedTest) };
  const zeroShotAccuracy = { authorized: await zeroShot.accuracy(authorizedTest), unauthorized: await zeroShot.accuracy(unauthorizedTest) };
  const rows: AttackRow[] = [];
  const ctx: AttackContext = {
    prompt, clip, budgets, seed,
    sets: { authorizedTrain, authorizedTest, authorizedTestWatermarked, unauthorizedPool, unauthorizedValidation, unauthorizedTest },
    domains: { authorized: d.authorized.test.domain, unauthorized: d.unauthorized.test.domain },
    zeroShot, before, zeroShotAccuracy,
    ownershipBefore: authorizedTestWatermarked ? await ownershipOfSets(prompt, authorizedTest, authorizedTestWatermarked) : null,
    progress: () => {},
    ...(opts.signal ? { signal: opts.signal } : {}),
  };
  const families: Record<AttackFamily, (c: AttackContext) => Promise<AttackRow[]>> = {
    'zero-shot': async (c) => [row(c, {
      attack: 'zero-shot', variant: 'plain-template', budget: { kind: 'none', value: 0, images: 0, labelled: false },
      after: c.zeroShotAccuracy, steps: 0, seconds: 0, selection: null,
    })],
    'source-finetune': sourceFinetune,
    'target-finetune': targetFinetune,
    'source-free': sourceFree,
    style: styleDisguise,
  };
  for (const family of ATTACK_FAMILIES.filter((f) => attacks.includes(f))) {
    if (opts.signal?.aborted) throw new IpclipError('ERR_ABORTED', 'the attack suite was stopped');
    ctx.progress = (variant, step, steps) => opts.onProgress?.({ attack: family, variant, done: rows.length, ...(step !== undefined ? { step, steps } : {}) });
    ctx.progress(family);
    rows.push(...(await families[family](ctx)));
  }
  return {
    format: 'ipclip-attack/1', date: new Date().toISOString(), seconds: (performance.now() - started) / 1000, seed,
    classNames: [...prompt.classNames], chance: 1 / prompt.numClasses,
    clip: { fingerprint: clip.info.fingerprint, dtype: clip.info.dtype, device: clip.info.device },
    domains: ctx.domains,
    counts: {
      authorizedTrain: authorizedTrain.labels.length, authorizedTest: authorizedTest.labels.length,
      unauthorizedPool: unauthorizedPool.labels.length, unauthorizedValidation: unauthorizedValidation.labels.length,
      unauthorizedTest: unauthorizedTest.labels.length,
    },
    budgets, selectionRule: SELECTION_RULE, recoveryReference: RECOVERY_REFERENCE,
    protected: before, zeroShot: zeroShotAccuracy, rows,
  };
}
