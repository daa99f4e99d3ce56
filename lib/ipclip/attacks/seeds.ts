/**
 * Several seeds of the attack suite: one protected prompt per seed (its own split, initialisation and data
 * order), each attacked with the same budgets, merged into one {@link AttackReport}. One run of a training attack
 * or of a protected prompt is not a result (the single-seed table swung from 73.5 % to 94.5 % between two target
 * fine-tuning budgets), so the merged report gives per attack and budget the mean and the sample standard
 * deviation over the seeds, and keeps every seed's values.
 *
 * The merged report has exactly the single-seed shape, with means where a seed's report has values, so a reader
 * of one-seed attack.json files reads it unchanged; what it adds is optional: `seeds` and `perSeed` on the report,
 * `spread` on every row.
 */
import { IpclipError, check } from '../../core/errors.js';
import { spread, type Spread } from '../benchmark.js';
import { sentence } from './rows.js';
import type { AttackAccuracy, AttackReport, AttackRow } from './types.js';

/**
 * Mean, sample standard deviation (n − 1; 0 for one value) and the values, in seed order: the benchmark's
 * {@link Spread}.
 * @category Attacks
 */
export type SeedSpread = Spread;

/**
 * One row's spread over the seeds (a row of a merged report).
 * @category Attacks
 */
export interface AttackRowSpread {
  seeds: number[];
  before: { authorized: SeedSpread; unauthorized: SeedSpread };
  after: { authorized: SeedSpread; unauthorized: SeedSpread };
  reference: SeedSpread;
  /** Over the seeds where it is defined (the values list has null where it is not); null when it never is. */
  recovered: (Omit<SeedSpread, 'values'> & { values: (number | null)[] }) | null;
  fresh?: { unauthorized: SeedSpread };
  advantage?: SeedSpread;
  zeroShotAfter?: SeedSpread;
}

/** Mean and sample std of `values` (the benchmark's `spread`). */
export const seedSpread: (values: number[]) => SeedSpread = spread;

const accSpread = (xs: AttackAccuracy[]) => ({ authorized: seedSpread(xs.map((x) => x.authorized)), unauthorized: seedSpread(xs.map((x) => x.unauthorized)) });
const meanAcc = (s: { authorized: SeedSpread; unauthorized: SeedSpread }): AttackAccuracy => ({ authorized: s.authorized.mean, unauthorized: s.unauthorized.mean });

/** The key a row is matched by across seeds. */
export function rowKey(r: AttackRow): string {
  return `${r.attack}/${r.variant}/${r.budget.kind}/${r.budget.value}`;
}

/**
 * Merges the reports of one suite run per seed (the same attacks and budgets, the same domains and CLIP) into one:
 * every number is the mean over the seeds (recovered: over the seeds where it is defined), every row carries its
 * {@link AttackRowSpread}, the report its `seeds` and each seed's own report (`perSeed`). One report is returned
 * as it is.
 * @throws IpclipError `ERR_INVALID_ARGUMENT` (no reports, a repeated seed), `ERR_MISMATCH` (reports of other
 * domains, CLIPs, classes, budgets or attack rows).
 * @category Attacks
 */
export function mergeAttackSeeds(reports: AttackReport[]): AttackReport {
  check(Array.isArray(reports) && reports.length > 0, 'mergeAttackSeeds: expected a non-empty list of reports');
  if (reports.length === 1) return reports[0]!;
  const first = reports[0]!;
  const seeds = reports.map((r) => r.seed);
  check(new Set(seeds).size === seeds.length, `mergeAttackSeeds: seeds must not repeat, got ${seeds.join(', ')}`);
  for (const r of reports) {
    const same = (what: string, a: unknown, b: unknown) => {
      if (JSON.stringify(a) !== JSON.stringify(b)) {
        throw new IpclipError('ERR_MISMATCH', `mergeAttackSeeds: seed ${r.seed} has other ${what} than seed ${first.seed}: ${JSON.stringify(b)} vs ${JSON.stringify(a)}`);
      }
    };
    same('domains', first.domains, r.domains);
    same('classes', first.classNames, r.classNames);
    same('CLIP', first.clip.fingerprint, r.clip.fingerprint);
    same('budgets', first.budgets, r.budgets);
    same('attack rows', first.rows.map(rowKey), r.rows.map(rowKey));
  }
  const rows = first.rows.map((row0, i) => {
    const rs = reports.map((r) => r.rows[i]!);
    const rec = rs.map((r) => r.recovered);
    const defined = rec.filter((x): x is number => x !== null);
    const spread: AttackRowSpread = {
      seeds,
      before: accSpread(rs.map((r) => r.before)),
      after: accSpread(rs.map((r) => r.after)),
      reference: seedSpread(rs.map((r) => r.reference)),
      recovered: defined.length > 0 ? { ...seedSpread(defined), values: rec } : null,
      ...(rs.every((r) => r.fresh) ? { fresh: { unauthorized: seedSpread(rs.map((r) => r.fresh!.unauthorized)) } } : {}),
      ...(rs.every((r) => r.advantage !== undefined) ? { advantage: seedSpread(rs.map((r) => r.advantage!)) } : {}),
      ...(rs.every((r) => r.zeroShotAfter !== undefined) ? { zeroShotAfter: seedSpread(rs.map((r) => r.zeroShotAfter!)) } : {}),
    };
    const merged: Omit<AttackRow, 'sentence'> = {
      attack: row0.attack, variant: row0.variant,
      budget: { ...row0.budget, images: Math.round(rs.reduce((s, r) => s + r.budget.images, 0) / rs.length) },
      before: meanAcc(spread.before), after: meanAcc(spread.after), reference: spread.reference.mean,
      recovered: spread.recovered ? spread.recovered.mean : null,
      steps: row0.steps, seconds: rs.reduce((s, r) => s + r.seconds, 0) / rs.length, selection: row0.selection,
      ...(spread.fresh ? { fresh: { authorized: rs.reduce((s, r) => s + r.fresh!.authorized, 0) / rs.length, unauthorized: spread.fresh.unauthorized.mean } } : {}),
      ...(spread.advantage ? { advantage: spread.advantage.mean } : {}),
      ...(spread.zeroShotAfter ? { zeroShotAfter: spread.zeroShotAfter.mean } : {}),
      spread,
    };
    return { ...merged, sentence: `Mean of ${seeds.length} seeds: ${sentence(merged, first.domains)}` };
  });
  const protectedSpread = accSpread(reports.map((r) => r.protected));
  const zeroShotSpread = accSpread(reports.map((r) => r.zeroShot));
  const counts = Object.fromEntries(Object.keys(first.counts).map((k) => [k,
    Math.round(reports.reduce((s, r) => s + r.counts[k as keyof AttackReport['counts']], 0) / reports.length)])) as AttackReport['counts'];
  return {
    ...first, date: reports[reports.length - 1]!.date, seconds: reports.reduce((s, r) => s + r.seconds, 0),
    counts, protected: meanAcc(protectedSpread), zeroShot: meanAcc(zeroShotSpread), rows,
    seeds, spread: { protected: protectedSpread, zeroShot: zeroShotSpread }, perSeed: reports,
  };
}
