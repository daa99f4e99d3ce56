/**
 * The names of the IP-CLIP loss terms (method §4), once, in the order they are shown: the total, then the
 * cross-entropies, the feature distance, the KL and the entropy term. The native step returns exactly these
 * ({@link LossTerms}); the trainer, the CLI's progress line and the report iterate this list.
 */
import type { LossTerms } from '../native/types.js';

/**
 * One loss term's name.
 * @category Prompt model
 */
export type LossTermName = keyof LossTerms;

/**
 * Every loss term, total first.
 * @category Prompt model
 */
export const LOSS_TERMS = ['loss', 'ceA', 'ceU', 'ceSelf', 'ceCross', 'mse', 'kl', 'entropy'] as const satisfies readonly LossTermName[];

// Compile-time check that LOSS_TERMS lists every key of LossTerms (adding a term to the binding without adding
// it here fails to compile).
const everyTerm: Exclude<LossTermName, (typeof LOSS_TERMS)[number]> extends never ? true : never = true;
void everyTerm;

/** Readable titles of the terms, for charts and tables. */
export const LOSS_TERM_TITLES: Readonly<Record<LossTermName, string>> = {
  loss: 'total loss', ceA: 'CE on authorized (CE_A)', ceU: 'CE on unauthorized (CE_U)', ceSelf: 'CE_self',
  ceCross: 'CE_cross', mse: 'MSE (feature distance)', kl: 'KL', entropy: 'entropy',
};

/** A copy of `t` holding only the loss terms (drops any other fields a result carries). */
export function lossTermsOf(t: LossTerms): LossTerms {
  return Object.fromEntries(LOSS_TERMS.map((k) => [k, t[k]])) as unknown as LossTerms;
}
