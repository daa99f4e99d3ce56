/**
 * White-box fine-tuning attacks: the attacker holds the protected prompt file and some labelled data.
 * - Source fine-tuning: CE on a fraction of the authorized training split (the licensee's own data), either on
 *   every prompt parameter as trained, or after re-initialising the domain projector (`domain_tokens.*`, the
 *   part that reads the image's style).
 * - Target fine-tuning: CE on a fraction of labelled unauthorized images, and beside it a fresh prompt trained
 *   from scratch on the same images with the same loop: the barrier is worth only what the attack gains over it.
 * Each step is the prompt's native step with CE on one batch (the unprotected reference's step, method §7).
 */
import { Rng } from '../../core/rng.js';
import type { Tensor } from '../../core/tensor.js';
import { PromptModel } from '../prompt-model.js';
import { copyPrompt, permutation, pick, promptAccuracy, stratifiedPick, trainAttack, type ImageSet } from './common.js';
import { ownershipOf, row } from './rows.js';
import { SELECTION_RULE, type AttackContext, type AttackRow } from './types.js';

async function train(ctx: AttackContext, prompt: PromptModel, data: ImageSet, variant: string, seedKey: string) {
  const b = ctx.budgets;
  return trainAttack(prompt, { set: data }, ctx.sets.unauthorizedValidation, {
    steps: b.steps, evalEvery: b.evalEvery, batchSize: b.batchSize, lr: b.lr, weightDecay: b.weightDecay,
    seed: new Rng(ctx.seed).fork(seedKey).nextU32(),
    ...(ctx.signal ? { signal: ctx.signal } : {}),
    onStep: (s) => ctx.progress(variant, s, b.steps),
  });
}

async function scores(ctx: AttackContext, prompt: PromptModel) {
  return { authorized: await promptAccuracy(prompt, ctx.sets.authorizedTest), unauthorized: await promptAccuracy(prompt, ctx.sets.unauthorizedTest) };
}

/** Source fine-tuning, both variants. */
export async function sourceFinetune(ctx: AttackContext): Promise<AttackRow[]> {
  const f = ctx.budgets.sourceFraction;
  const set = ctx.sets.authorizedTrain;
  const idx = stratifiedPick(set.labels, permutation(set.labels.length, new Rng(ctx.seed).fork('source-pick')), f, 2);
  const data = pick(set, idx);
  const rows: AttackRow[] = [];
  for (const variant of ['all-params', 'reinit-domain'] as const) {
    const copy = await copyPrompt(ctx.prompt);
    try {
      if (variant === 'reinit-domain') {
        const fresh = await PromptModel.create(ctx.clip, ctx.prompt.classNames, { seed: ctx.seed + 1 });
        try {
          const state = await fresh.state();
          await copy.setState({ ...(await copy.state()), ...Object.fromEntries(Object.entries(state).filter(([k]) => k.startsWith('domain_tokens.'))) } as Record<string, Tensor>);
        } finally {
          fresh.dispose();
        }
      }
      const out = await train(ctx, copy, data, variant, `source/${variant}`);
      const after = await scores(ctx, copy);
      rows.push(row(ctx, {
        attack: 'source-finetune', variant, budget: { kind: 'fraction', value: f, images: idx.length, labelled: true },
        after, steps: out.steps, seconds: out.seconds, selection: SELECTION_RULE, selectedStep: out.selectedStep,
        ...(await ownershipOf(ctx, copy)),
      }));
    } finally {
      copy.dispose();
    }
  }
  return rows;
}

/** Target fine-tuning at every labelled fraction, with the fresh prompt beside it. */
export async function targetFinetune(ctx: AttackContext): Promise<AttackRow[]> {
  const pool = ctx.sets.unauthorizedPool;
  const order = permutation(pool.labels.length, new Rng(ctx.seed).fork('target-pick'));
  const rows: AttackRow[] = [];
  for (const f of ctx.budgets.targetFractions) {
    const idx = stratifiedPick(pool.labels, order, f, 2);
    const data = pick(pool, idx);
    const copy = await copyPrompt(ctx.prompt);
    let fresh: PromptModel | null = null;
    try {
      const out = await train(ctx, copy, data, `fine-tune ${f}`, `target/${f}`);
      const after = await scores(ctx, copy);
      const ownership = await ownershipOf(ctx, copy);
      copy.dispose();
      fresh = await PromptModel.create(ctx.clip, ctx.prompt.classNames, { seed: ctx.seed });
      const freshOut = await train(ctx, fresh, data, `fresh ${f}`, `target/${f}`);
      const freshScores = await scores(ctx, fresh);
      rows.push(row(ctx, {
        attack: 'target-finetune', variant: 'fine-tune', budget: { kind: 'fraction', value: f, images: idx.length, labelled: true },
        after, steps: out.steps, seconds: out.seconds + freshOut.seconds, selection: SELECTION_RULE, selectedStep: out.selectedStep,
        fresh: freshScores, advantage: after.unauthorized - freshScores.unauthorized, ...ownership,
      }));
    } finally {
      copy.dispose();
      fresh?.dispose();
    }
  }
  return rows;
}
