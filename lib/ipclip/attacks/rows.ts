/**
 * A result row from an attack's measurements: the recovered fraction against the declared reference, the
 * ownership evidence of an attacked prompt, and the one plain sentence the CLI and the report show.
 */
import { accuracy, ownershipEvidence, type OwnershipEvidence } from '../metrics.js';
import type { PromptModel } from '../prompt-model.js';
import { promptPredictions, type ImageSet } from './common.js';
import type { AttackContext, AttackRow } from './types.js';

/** recovered = (after − before) / (reference − before); null when reference − before < 0.01. */
export function recoveredFraction(before: number, after: number, reference: number): number | null {
  const span = reference - before;
  return span >= 0.01 ? (after - before) / span : null;
}

/** The evidence of `prompt` on a clean and a watermarked copy of one test split (method §5). */
export async function ownershipOfSets(prompt: PromptModel, clean: ImageSet, marked: ImageSet, alpha = 0.01): Promise<OwnershipEvidence> {
  const tally = async (s: ImageSet) => {
    const acc = accuracy(await promptPredictions(prompt, s), s.labels);
    return { correct: Math.round(acc * s.labels.length), n: s.labels.length };
  };
  return ownershipEvidence(await tally(clean), await tally(marked), prompt.numClasses, { alpha });
}

/** `{ ownership }` of an attacked prompt when the suite measures it, else `{}`. */
export async function ownershipOf(ctx: AttackContext, prompt: PromptModel): Promise<Pick<AttackRow, 'ownership'>> {
  if (!ctx.ownershipBefore || !ctx.sets.authorizedTestWatermarked) return {};
  return { ownership: { before: ctx.ownershipBefore, after: await ownershipOfSets(prompt, ctx.sets.authorizedTest, ctx.sets.authorizedTestWatermarked) } };
}

const pct = (x: number) => `${(100 * x).toFixed(1)} %`;

/** One plain sentence on a row. */
export function sentence(r: Omit<AttackRow, 'sentence'>, domains: { authorized: string; unauthorized: string }): string {
  const u = domains.unauthorized;
  const a = domains.authorized;
  const budget = r.budget.kind === 'fraction'
    ? `${+(100 * r.budget.value).toFixed(1)} % labelled ${r.attack === 'source-finetune' ? a : u} images (${r.budget.images})`
    : r.budget.kind === 'k' ? `k = ${r.budget.value} ${a} images` : `${r.budget.images} unlabelled ${u} images`;
  const move = `${u} goes from ${pct(r.before.unauthorized)} to ${pct(r.after.unauthorized)}`;
  const rec = r.recovered === null ? '' : `, ${r.recovered.toFixed(2)} of the way back to zero-shot CLIP's ${pct(r.reference)}`;
  const auth = r.budget.kind === 'k' ? '' : `; ${a} ${pct(r.before.authorized)} → ${pct(r.after.authorized)}`;
  const cost = r.steps > 0 ? ` (${r.steps} steps, ${r.seconds.toFixed(0)} s)` : '';
  switch (r.attack) {
    case 'zero-shot':
      return `Zero-shot CLIP gets ${pct(r.after.unauthorized)} on ${u} for free; the protected prompt sits ` +
        `${(100 * (r.after.unauthorized - r.before.unauthorized)).toFixed(1)} points below it.`;
    case 'target-finetune':
      return `Fine-tuning on ${budget}: ${move}${rec}${auth}${cost}; a fresh prompt trained from scratch on the same images reaches ` +
        `${pct(r.fresh!.unauthorized)}, so starting from the protected prompt is worth ${(100 * r.advantage!).toFixed(1)} points to the attacker.`;
    case 'style':
      return `${r.variant} towards ${budget} (black box, no training): ${move}${rec}; zero-shot CLIP on the disguised images: ${pct(r.zeroShotAfter ?? NaN)}.`;
    default: {
      const what = r.attack === 'source-finetune'
        ? `Source fine-tuning (${r.variant === 'reinit-domain' ? 'domain projector re-initialised' : 'all prompt parameters'}) on ${budget}`
        : `Source-free ${r.variant === 'information-maximisation' ? 'information maximisation' : 'distillation from zero-shot CLIP'} on ${budget}`;
      const own = r.ownership ? `; ownership evidence ${r.ownership.after.supported ? 'still supported' : 'no longer supported'} ` +
        `(watermarked ${pct(r.ownership.after.watermarkedAccuracy)}, p = ${r.ownership.after.pValueWatermarkedAboveChance.toExponential(1)})` : '';
      return `${what}: ${move}${rec}${auth}${cost}${own}.`;
    }
  }
}

/** A finished row: before and reference from the context, recovered, sentence. */
export function row(ctx: AttackContext, r: Omit<AttackRow, 'sentence' | 'before' | 'reference' | 'recovered'>): AttackRow {
  const full: Omit<AttackRow, 'sentence'> = {
    ...r, before: ctx.before, reference: ctx.zeroShotAccuracy.unauthorized,
    recovered: recoveredFraction(ctx.before.unauthorized, r.after.unauthorized, ctx.zeroShotAccuracy.unauthorized),
  };
  return { ...full, sentence: sentence(full, ctx.domains) };
}
