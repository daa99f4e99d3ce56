/**
 * Source-free adaptation: the attacker has the protected prompt and unlabelled unauthorized images only.
 * - Information maximisation (as SHOT adapts a source model): minimise the mean per-image prediction entropy
 *   and maximise the entropy of the batch's mean prediction, so predictions become confident and spread over
 *   the classes: loss = H(z) + Σ_c p̄_c log p̄_c, the native step's `entropyA` and `diversityA` terms.
 * - Distillation from zero-shot CLIP: KL(q ‖ p) towards zero-shot CLIP's class probabilities q on each image
 *   (the native step's `distillA` term with the image's q as `distillTargets`).
 * CE gets weight 0 (`ceA: 0`): the labels the step is given are placeholders, never read into the loss.
 */
import { Rng } from '../../core/rng.js';
import { copyPrompt, promptAccuracy, trainAttack } from './common.js';
import { ownershipOf, row } from './rows.js';
import { SELECTION_RULE, type AttackContext, type AttackRow } from './types.js';

/** Both source-free variants on the unauthorized pool (labels withheld from the loss). */
export async function sourceFree(ctx: AttackContext): Promise<AttackRow[]> {
  const b = ctx.budgets;
  const pool = ctx.sets.unauthorizedPool;
  // The labels are replaced by zeros, so nothing of them can reach the step.
  const unlabelled = { images: pool.images, labels: new Int32Array(pool.labels.length) };
  const rows: AttackRow[] = [];
  const variants = [
    { variant: 'information-maximisation', weights: { ceA: 0, entropyA: 1, diversityA: 1 } },
    { variant: 'distill-zero-shot', weights: { ceA: 0, distillA: 1 } },
  ] as const;
  for (const v of variants) {
    const copy = await copyPrompt(ctx.prompt);
    try {
      const softTargets = v.variant === 'distill-zero-shot' ? await ctx.zeroShot.probabilities(pool) : undefined;
      const out = await trainAttack(copy, { set: unlabelled, ...(softTargets ? { softTargets } : {}) }, ctx.sets.unauthorizedValidation, {
        steps: b.steps, evalEvery: b.evalEvery, batchSize: b.batchSize, lr: b.lr, weightDecay: b.weightDecay,
        seed: new Rng(ctx.seed).fork(`source-free/${v.variant}`).nextU32(), weights: v.weights,
        ...(ctx.signal ? { signal: ctx.signal } : {}),
        onStep: (s) => ctx.progress(v.variant, s, b.steps),
      });
      const after = { authorized: await promptAccuracy(copy, ctx.sets.authorizedTest), unauthorized: await promptAccuracy(copy, ctx.sets.unauthorizedTest) };
      rows.push(row(ctx, {
        attack: 'source-free', variant: v.variant, budget: { kind: 'none', value: 0, images: pool.labels.length, labelled: false },
        after, steps: out.steps, seconds: out.seconds, selection: SELECTION_RULE, selectedStep: out.selectedStep,
        ...(await ownershipOf(ctx, copy)),
      }));
    } finally {
      copy.dispose();
    }
  }
  return rows;
}
