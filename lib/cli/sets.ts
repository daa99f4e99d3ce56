/**
 * The test sets a trained prompt is scored on, loaded from the domain folders as its scenario's descriptor says
 * (lib/ipclip/scenario.ts, `evaluation`), and the per-set results as the CLI prints them.
 */
import type { DomainDataset } from '../data/dataset.js';
import { AUTHORIZED_SET, type EvalSet, type EvaluationReport } from '../ipclip/evaluator.js';
import { evaluationSets, type EvaluationSpec } from '../ipclip/scenario.js';
import { domainTest, pct, table, type SplitFlags } from './common.js';

export { WATERMARK_SUFFIX } from '../ipclip/scenario.js';

/** The sets to evaluate: the authorized one and the unauthorized ones, by display name. */
export interface EvalPlan {
  authorizedName: string;
  authorized: EvalSet;
  unauthorized: Record<string, EvalSet>;
}

/**
 * The test sets of `spec` (a resolved scenario's `evaluation`) for the authorized domain and the other domains
 * `others`: each domain's test split is read once and used clean or watermarked as the rules say.
 */
export async function evaluationPlan(spec: EvaluationSpec, root: string, authorized: string, others: string[],
  split: SplitFlags): Promise<EvalPlan> {
  const sets = evaluationSets(spec, authorized, others);
  const tests = new Map<string, Promise<DomainDataset>>();
  const testOf = (d: string): Promise<DomainDataset> => {
    if (!tests.has(d)) tests.set(d, domainTest(root, d, split));
    return tests.get(d)!;
  };
  const load = async (s: { domain: string; watermark: boolean }): Promise<EvalSet> => {
    const dataset = await testOf(s.domain);
    return s.watermark ? { dataset, watermark: true } : dataset;
  };
  const authorizedSet = await load(sets.authorized);
  const unauthorized: Record<string, EvalSet> = {};
  for (const s of sets.unauthorized) unauthorized[s.name] = await load(s);
  return { authorizedName: sets.authorized.name, authorized: authorizedSet, unauthorized };
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
