/**
 * The style-disguise attack family (black box): for each transform and each k, k authorized training images
 * (seeded draw) define the target style; every unauthorized test image is disguised towards it and the protected
 * prompt's accuracy on the disguised images is the attack's result. Zero-shot CLIP is scored on the same
 * disguised images, to show how much content the transform kept.
 */
import { IpclipError } from '../../core/errors.js';
import { Rng } from '../../core/rng.js';
import { permutation, pick, promptAccuracy } from './common.js';
import { row } from './rows.js';
import { STYLE_METHODS, disguise, styleTarget } from './style.js';
import type { AttackContext, AttackRow } from './types.js';

/** Every style transform at every k. */
export async function styleDisguise(ctx: AttackContext): Promise<AttackRow[]> {
  const rows: AttackRow[] = [];
  const auth = ctx.sets.authorizedTrain;
  const order = permutation(auth.labels.length, new Rng(ctx.seed).fork('style-pick'));
  for (const k of ctx.budgets.styleK) {
    const chosen = pick(auth, order.slice(0, Math.min(k, order.length)));
    for (const method of STYLE_METHODS) {
      if (ctx.signal?.aborted) throw new IpclipError('ERR_ABORTED', 'the attack suite was stopped');
      ctx.progress(`${method} k=${k}`);
      const t0 = performance.now();
      const target = styleTarget(method, chosen.images, { beta: ctx.budgets.fourierBeta });
      const disguised = { images: disguise(ctx.sets.unauthorizedTest.images, target), labels: ctx.sets.unauthorizedTest.labels };
      const unauthorized = await promptAccuracy(ctx.prompt, disguised);
      const seconds = (performance.now() - t0) / 1000;
      const zeroShotAfter = await ctx.zeroShot.accuracy(disguised);
      rows.push(row(ctx, {
        attack: 'style', variant: method, budget: { kind: 'k', value: k, images: chosen.labels.length, labelled: false },
        after: { authorized: ctx.before.authorized, unauthorized }, steps: 0, seconds, selection: null, zeroShotAfter,
      }));
    }
  }
  return rows;
}
