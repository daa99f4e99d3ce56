/**
 * Which test sets a trained prompt is scored on, per scenario (method §5's "evaluated on" column), and the
 * per-set results as the CLI prints them.
 */
import type { DomainDataset } from '../data/dataset.js';
import { AUTHORIZED_SET, type EvalSet, type EvaluationReport } from '../ipclip/evaluator.js';
import type { Scenario } from '../ipclip/scenario.js';
import { domainTest, pct, table, type SplitFlags } from './common.js';

/** Suffix of a watermarked set's name. */
export const WATERMARK_SUFFIX = '+watermark';

/** The sets to evaluate: the authorized one and the unauthorized ones, by display name. */
export interface EvalPlan {
  authorizedName: string;
  authorized: EvalSet;
  unauthorized: Record<string, EvalSet>;
}

/**
 * The test sets of a scenario: target-specified, target-free and reference: the authorized domain's test split
 * and each other domain's; ownership: the authorized test split clean and watermarked; authorization: the
 * watermarked authorized test split against the clean one and every other domain, clean and watermarked.
 */
export async function evaluationPlan(scenario: Scenario | string, root: string, authorized: string, others: string[],
  split: SplitFlags): Promise<EvalPlan> {
  const testOf = (d: string): Promise<DomainDataset> => domainTest(root, d, split);
  const a = await testOf(authorized);
  const marked = (d: DomainDataset): EvalSet => ({ dataset: d, watermark: true });
  if (scenario === 'ownership') {
    return { authorizedName: authorized, authorized: a, unauthorized: { [authorized + WATERMARK_SUFFIX]: marked(a) } };
  }
  if (scenario === 'authorization') {
    const unauthorized: Record<string, EvalSet> = { [authorized]: a };
    for (const d of others) {
      const t = await testOf(d);
      unauthorized[d] = t;
      unauthorized[d + WATERMARK_SUFFIX] = marked(t);
    }
    return { authorizedName: authorized + WATERMARK_SUFFIX, authorized: marked(a), unauthorized };
  }
  const unauthorized: Record<string, EvalSet> = {};
  for (const d of others) unauthorized[d] = await testOf(d);
  return { authorizedName: authorized, authorized: a, unauthorized };
}

/** One row of the results: a set with the protected, reference and zero-shot accuracies. */
export interface SetRow {
  set: string;
  role: 'authorized' | 'unauthorized';
  n: number;
  accuracy: number;
  macroF1: number;
  reference: number | null;
  zeroShot: number | null;
}

/** The report's sets under their display names (the evaluator calls the authorized set `authorized`). */
export function rowsOf(report: EvaluationReport, authorizedName: string): SetRow[] {
  return Object.entries(report.sets).map(([name, r]) => ({
    set: name === AUTHORIZED_SET ? authorizedName : name,
    role: name === AUTHORIZED_SET ? 'authorized' as const : 'unauthorized' as const,
    n: r.n, accuracy: r.accuracy, macroF1: r.macroF1,
    reference: report.reference?.[name]?.accuracy ?? null,
    zeroShot: report.zeroShot?.[name] ?? null,
  }));
}

/** The rows as a text table. */
export function rowsTable(rows: SetRow[]): string {
  const withRef = rows.some((r) => r.reference !== null);
  const withZs = rows.some((r) => r.zeroShot !== null);
  const header = ['set', 'role', 'n', 'accuracy', 'macro-F1', ...(withRef ? ['reference'] : []), ...(withZs ? ['zero-shot'] : [])];
  return table(header, rows.map((r) => [
    r.set, r.role, String(r.n), pct(r.accuracy), pct(r.macroF1),
    ...(withRef ? [pct(r.reference)] : []), ...(withZs ? [pct(r.zeroShot)] : []),
  ]));
}
