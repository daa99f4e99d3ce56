// Several seeds of the attack suite: mergeAttackSeeds against means and sample standard deviations computed by
// hand, the single-seed shape kept (old readers of attack.json read a merged one), recovered's null seeds, the
// refusals of reports that do not belong together, the text table, and `ipclip attack --seeds`' usage errors.
import { describe, expect, it } from 'vitest';
import { attackCommand, attackTable } from '../lib/cli/attack.js';
import { UsageError, parseCommand } from '../lib/cli/args.js';
import { mergeAttackSeeds, type AttackReport, type AttackRow } from '../lib/ipclip/attacks/index.js';
import { renderAttackSection } from '../lib/tools/report/attack-section.js';

function row(after: number, before: number, recovered: number | null, extra: Partial<AttackRow> = {}): AttackRow {
  return {
    attack: 'style', variant: 'adain', budget: { kind: 'k', value: 8, images: 8, labelled: false },
    before: { authorized: 0.9, unauthorized: before }, after: { authorized: 0.9, unauthorized: after },
    reference: 0.95, recovered, steps: 0, seconds: 2, selection: null, zeroShotAfter: 0.6, sentence: 'one seed', ...extra,
  };
}

function report(seed: number, rows: AttackRow[], protectedU: number): AttackReport {
  return {
    format: 'ipclip-attack/1', date: `2026-12-02T0${seed}:00:00.000Z`, seconds: 10, seed, classNames: ['a', 'b'], chance: 0.5,
    clip: { fingerprint: 'f', dtype: 'float32', device: 'cpu' }, domains: { authorized: 'photo', unauthorized: 'sketch' },
    counts: { authorizedTrain: 30, authorizedTest: 20, unauthorizedPool: 24, unauthorizedValidation: 6, unauthorizedTest: 20 },
    budgets: { sourceFraction: 0.1, targetFractions: [0.1], styleK: [8], steps: 60, evalEvery: 10, batchSize: 8, lr: 0.001, weightDecay: 5e-4, validationFraction: 0.2, fourierBeta: 0.1 },
    selectionRule: 'rule', recoveryReference: 'ref', protected: { authorized: 0.9, unauthorized: protectedU }, zeroShot: { authorized: 0.88, unauthorized: 0.95 }, rows,
  };
}

describe('mergeAttackSeeds', () => {
  const reports = [
    report(0, [row(0.1, 0.04, 0.2)], 0.04),
    report(1, [row(0.2, 0.06, 0.4)], 0.06),
    report(2, [row(0.6, 0.08, null)], 0.08),
  ];

  it('gives means, sample stds and per-seed values in the single-seed shape', () => {
    const m = mergeAttackSeeds(reports);
    expect(m.seeds).toEqual([0, 1, 2]);
    expect(m.seed).toBe(0);
    expect(m.perSeed).toHaveLength(3);
    const r = m.rows[0]!;
    // after: 0.1, 0.2, 0.6 → mean 0.3, deviations −0.2, −0.1, 0.3 → sample variance 0.14 / 2 = 0.07.
    expect(r.after.unauthorized).toBeCloseTo(0.3, 12);
    expect(r.spread!.after.unauthorized.std).toBeCloseTo(Math.sqrt(0.07), 12);
    expect(r.spread!.after.unauthorized.values).toEqual([0.1, 0.2, 0.6]);
    expect(r.before.unauthorized).toBeCloseTo(0.06, 12);
    expect(r.spread!.before.unauthorized.std).toBeCloseTo(0.02, 12);
    // recovered: defined on seeds 0 and 1 only → mean 0.3, std √((0.1² + 0.1²) / 1) = √0.02; the null is kept.
    expect(r.recovered).toBeCloseTo(0.3, 12);
    expect(r.spread!.recovered!.std).toBeCloseTo(Math.sqrt(0.02), 12);
    expect(r.spread!.recovered!.values).toEqual([0.2, 0.4, null]);
    expect(r.zeroShotAfter).toBeCloseTo(0.6, 12);
    expect(m.protected.unauthorized).toBeCloseTo(0.06, 12);
    expect(m.seconds).toBe(30);
    expect(r.sentence).toMatch(/^Mean of 3 seeds: /);
    // The fields a single-seed reader uses are all there and numbers.
    for (const k of ['format', 'seed', 'rows', 'protected', 'zeroShot', 'budgets', 'counts'] as const) expect(m[k]).toBeDefined();
    expect(typeof r.before.authorized).toBe('number');
  });

  it('returns one report unchanged, and refuses reports that do not belong together', () => {
    expect(mergeAttackSeeds([reports[0]!])).toBe(reports[0]);
    expect(() => mergeAttackSeeds([])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(() => mergeAttackSeeds([reports[0]!, reports[0]!])).toThrow(/repeat/);
    const other = { ...reports[1]!, domains: { authorized: 'photo', unauthorized: 'clipart' } };
    expect(() => mergeAttackSeeds([reports[0]!, other])).toThrow(expect.objectContaining({ code: 'ERR_MISMATCH' }));
    const otherRows = report(1, [row(0.2, 0.06, 0.4, { variant: 'fourier' })], 0.06);
    expect(() => mergeAttackSeeds([reports[0]!, otherRows])).toThrow(/attack rows/);
  });

  it('shows mean ± std in the table and the HTML section', () => {
    const m = mergeAttackSeeds(reports);
    const text = attackTable(m);
    expect(text).toContain('30.0% ± 26.5');
    expect(text).toContain('0.30 ± 0.14');
    expect(text).toContain('Seeds 0, 1, 2');
    expect(renderAttackSection(m)).toContain('30.0 ± 26.5');
    expect(attackTable(reports[0]!)).not.toContain('±');
  });
});

describe('ipclip attack --seeds', () => {
  const io = { stdout: process.stdout, stderr: process.stderr };
  const run = (argv: string[]) => attackCommand.run(parseCommand(attackCommand, argv), io as never);

  it('needs {seed} in --prompt for several seeds, and refuses --seed with it and repeated seeds', async () => {
    await expect(run(['--prompt', 'package.json', '--data', '.', '--seeds', '0,1'])).rejects.toThrow(/\{seed\}/);
    await expect(run(['--prompt', 'p{seed}', '--data', '.', '--seeds', '0,1', '--seed', '3'])).rejects.toThrow(UsageError);
    await expect(run(['--prompt', 'p{seed}', '--data', '.', '--seeds', '1,1'])).rejects.toThrow(/repeat/);
    await expect(run(['--prompt', 'p{seed}', '--data', '.', '--seeds', '0,x'])).rejects.toThrow(/not a non-negative integer/);
  });
});
