/**
 * `ipclip attack`: the attack suite (lib/ipclip/attacks) against a protected prompt file: a table per attack and
 * budget, one sentence each, `attack.json` and `attack.html`.
 */
import { join } from 'node:path';
import { readCheckpoint } from '../ipclip/checkpoint.js';
import { ATTACK_FAMILIES, DEFAULT_BUDGETS, mergeAttackSeeds, runAttacks, type AttackBudgets, type AttackFamily, type AttackReport, type SeedSpread } from '../ipclip/attacks/index.js';
import { PromptModel } from '../ipclip/prompt-model.js';
import { ProgressBar } from '../tools/progress.js';
import { writeAttackReport } from '../tools/report/attack-section.js';
import { UsageError, bool, int, list, positiveNumber, required, str, type Command, type Io, type Parsed } from './args.js';
import {
  BAD_IMAGE_FLAG, CLIP_FLAGS, JSON_FLAG, dataRoot, domainSplits, loadClipFromFlags, onBadImageFlag, pct, printJson, resolveCheckpoint,
  splitSizes, table, withInterrupt,
} from './common.js';

function fractions(p: Parsed, name: string): number[] | undefined {
  const v = list(p, name);
  if (!v) return undefined;
  return v.map((s) => {
    const x = Number(s);
    if (!Number.isFinite(x) || x <= 0 || x > 1) throw new UsageError(`--${name}: '${s}' is not a fraction in (0, 1]`);
    return x;
  });
}

function fractionFlag(p: Parsed, name: string, lo: number, hi: number): number | undefined {
  const v = str(p, name);
  if (v === undefined) return undefined;
  const x = Number(v);
  if (!Number.isFinite(x) || x <= lo || x >= hi) throw new UsageError(`--${name} must be a number in (${lo}, ${hi}), got '${v}'`);
  return x;
}

/** A cell: the value, with ± the sample std over the seeds when the report merges several. */
function cell(mean: number, spread: SeedSpread | undefined): string {
  return spread && spread.values.length > 1 ? `${pct(mean)} ± ${(100 * spread.std).toFixed(1)}` : pct(mean);
}

/** The text table: one row per attack and budget (means ± sample std over the seeds of a merged report). */
export function attackTable(r: AttackReport): string {
  const rows = r.rows.map((x) => {
    const sp = x.spread;
    const rec = x.recovered === null ? '–' : sp?.recovered && sp.seeds.length > 1 ? `${x.recovered.toFixed(2)} ± ${sp.recovered.std.toFixed(2)}` : x.recovered.toFixed(2);
    return [
      x.attack, x.variant,
      x.budget.kind === 'fraction' ? `${+(100 * x.budget.value).toFixed(1)}% (${x.budget.images})` : x.budget.kind === 'k' ? `k=${x.budget.value}` : x.budget.images ? `${x.budget.images} unlabelled` : '–',
      cell(x.before.authorized, sp?.before.authorized), cell(x.after.authorized, sp?.after.authorized),
      cell(x.before.unauthorized, sp?.before.unauthorized), cell(x.after.unauthorized, sp?.after.unauthorized),
      rec, x.fresh ? cell(x.fresh.unauthorized, sp?.fresh?.unauthorized) : '–', String(x.steps), x.seconds.toFixed(1),
    ];
  });
  const { authorized: a, unauthorized: u } = r.domains;
  const seeds = r.seeds && r.seeds.length > 1 ? [`Seeds ${r.seeds.join(', ')}: means ± sample std over the seeds (attack.json keeps every seed's values).`] : [];
  return [
    table(['attack', 'variant', 'budget', `${a} before`, `${a} after`, `${u} before`, `${u} after`, 'recovered', 'fresh prompt', 'steps', 's'], rows),
    '',
    ...r.rows.map((x) => `- ${x.sentence}`),
    '',
    ...seeds,
    `recovered = (after − before) / (${r.recoveryReference} − before); zero-shot: ${a} ${pct(r.zeroShot.authorized)}, ${u} ${pct(r.zeroShot.unauthorized)}.`,
    `Selection (training attacks): ${r.selectionRule}.`,
  ].join('\n');
}

/** `ipclip attack`. */
export const attackCommand: Command = {
  name: 'attack',
  summary: 'Attacks a protected prompt (fine-tuning, source-free adaptation, style disguise, zero-shot): how much accuracy comes back.',
  usage: 'attack --prompt FILE --data ROOT --authorized D --unauthorized D [--attacks a,b] [--seeds 0,1,2] [flags]',
  flags: {
    prompt: { type: 'string', value: 'file', help: 'the protected prompt (a prompt or training checkpoint, or a run folder)' },
    data: { type: 'string', value: 'dir', help: 'dataset root, one folder per domain' },
    authorized: { type: 'string', value: 'domain', help: 'the authorized domain (default: the prompt\'s run record)' },
    unauthorized: { type: 'string', value: 'domain', help: 'the unauthorized domain attacked (default: the prompt\'s run record)' },
    attacks: { type: 'string', value: 'list', help: `attack families (default all: ${ATTACK_FAMILIES.join(',')})` },
    seed: { type: 'string', value: 'n', help: "split seed and the attacks' draws (default: the prompt's run record, else 0)" },
    seeds: { type: 'string', value: 'list', help: 'several seeds, one protected prompt each ({seed} in --prompt): mean ± std per attack and budget' },
    'split-sizes': { type: 'string', value: 'spec', help: "how each domain is split (default: the prompt's run record, else 80%/20%)" },
    'train-fraction': { type: 'string', value: 'x', help: "share of each domain in the training split (default: the run record's, else 80%)" },
    'source-fraction': { type: 'string', value: 'x', help: `source fine-tuning: labelled share of the authorized training split (default ${DEFAULT_BUDGETS.sourceFraction})` },
    'target-fractions': { type: 'string', value: 'list', help: `target fine-tuning: labelled shares of the unauthorized pool (default ${DEFAULT_BUDGETS.targetFractions.join(',')})` },
    'style-k': { type: 'string', value: 'list', help: `style disguise: authorized images aimed at (default ${DEFAULT_BUDGETS.styleK.join(',')})` },
    steps: { type: 'string', value: 'n', help: `optimiser steps per training attack (default ${DEFAULT_BUDGETS.steps})` },
    'eval-every': { type: 'string', value: 'n', help: `validation every n steps, the selection candidates (default ${DEFAULT_BUDGETS.evalEvery})` },
    'batch-size': { type: 'string', value: 'n', help: `images per step (default ${DEFAULT_BUDGETS.batchSize})` },
    lr: { type: 'string', value: 'x', help: `the attacker's learning rate, constant (default ${DEFAULT_BUDGETS.lr})` },
    'validation-fraction': { type: 'string', value: 'x', help: `share of the unauthorized training split kept as the attacker's labelled validation split (default ${DEFAULT_BUDGETS.validationFraction})` },
    'fourier-beta': { type: 'string', value: 'x', help: `Fourier swap: low band half-width / image side (default ${DEFAULT_BUDGETS.fourierBeta})` },
    ownership: { type: 'boolean', help: 'also measure the watermark ownership evidence after each training attack' },
    out: { type: 'string', value: 'dir', help: 'where attack.json and attack.html go (default out/attack)' },
    ...BAD_IMAGE_FLAG,
    ...CLIP_FLAGS,
    ...JSON_FLAG,
  },
  details: `Every attack works on a copy of the prompt. The unauthorized training split is cut into the attacker's labelled
validation split (--validation-fraction) and a pool from which the labelled fractions and the unlabelled images
come; scores are on the test splits. Training attacks keep the checkpoint with the best validation accuracy
(attacker-optimistic, declared in the output). recovered = (after − before) / (zero-shot − before) on the
unauthorized test split. With --seeds, each seed's prompt ({seed} in --prompt replaced) is attacked on that
seed's split with the seed's draws; attack.json then holds the means (the single-seed shape), each row's
spread (mean, sample std, per-seed values) and every seed's own report. Exit code 0 when the suite ran (whatever it found), 1 on an error.`,
  async run(p: Parsed, io: Io): Promise<number> {
    const json = bool(p, 'json');
    const promptSpec = required(p, 'prompt', 'the protected prompt file');
    const root = dataRoot(p);
    const attacks = list(p, 'attacks')?.map((a) => {
      if (!ATTACK_FAMILIES.includes(a as AttackFamily)) throw new UsageError(`--attacks: unknown attack '${a}' (${ATTACK_FAMILIES.join(', ')})`);
      return a as AttackFamily;
    });
    const budgets: Partial<AttackBudgets> = {
      ...(fractionFlag(p, 'source-fraction', 0, 1.000001) !== undefined ? { sourceFraction: fractionFlag(p, 'source-fraction', 0, 1.000001)! } : {}),
      ...(fractions(p, 'target-fractions') ? { targetFractions: fractions(p, 'target-fractions')! } : {}),
      ...(list(p, 'style-k') ? {
        styleK: list(p, 'style-k')!.map((s) => {
          if (!/^\d+$/.test(s) || Number(s) < 1) throw new UsageError(`--style-k: '${s}' is not a positive integer`);
          return Number(s);
        }),
      } : {}),
      ...(str(p, 'steps') ? { steps: int(p, 'steps', DEFAULT_BUDGETS.steps, 1, 1_000_000) } : {}),
      ...(str(p, 'eval-every') ? { evalEvery: int(p, 'eval-every', DEFAULT_BUDGETS.evalEvery, 1, 1_000_000) } : {}),
      ...(str(p, 'batch-size') ? { batchSize: int(p, 'batch-size', DEFAULT_BUDGETS.batchSize, 2, 4096) } : {}),
      ...(str(p, 'lr') ? { lr: positiveNumber(p, 'lr', DEFAULT_BUDGETS.lr) } : {}),
      ...(fractionFlag(p, 'validation-fraction', 0, 1) !== undefined ? { validationFraction: fractionFlag(p, 'validation-fraction', 0, 1)! } : {}),
      ...(fractionFlag(p, 'fourier-beta', 0, 0.5) !== undefined ? { fourierBeta: fractionFlag(p, 'fourier-beta', 0, 0.5)! } : {}),
    };
    const seedList = list(p, 'seeds')?.map((x) => {
      if (!/^\d+$/.test(x)) throw new UsageError(`--seeds: '${x}' is not a non-negative integer`);
      return Number(x);
    });
    if (seedList && str(p, 'seed') !== undefined) throw new UsageError('--seed and --seeds exclude each other');
    if (seedList && new Set(seedList).size !== seedList.length) throw new UsageError('--seeds must not repeat');
    if (seedList && seedList.length > 1 && !promptSpec.includes('{seed}')) {
      throw new UsageError("--seeds with several seeds needs one prompt per seed: put {seed} in --prompt (e.g. 'run/prompt-seed{seed}.safetensors')");
    }
    /** The prompt file, domains and split of one seed (undefined: --seed or the run record's). */
    const setup = async (given: number | undefined) => {
      const file = resolveCheckpoint(promptSpec.replaceAll('{seed}', String(given ?? '')));
      const meta = (await readCheckpoint(file)).meta;
      const run = meta?.run;
      const authorized = str(p, 'authorized') ?? run?.authorized;
      const unauthorized = str(p, 'unauthorized') ?? run?.unauthorized ?? undefined;
      if (!authorized) throw new UsageError('--authorized is required (the prompt has no run record naming it)');
      if (!unauthorized) throw new UsageError('--unauthorized is required (the prompt has no run record naming it)');
      if (authorized === unauthorized) throw new UsageError('--unauthorized must differ from --authorized');
      const seed = given ?? (str(p, 'seed') !== undefined ? int(p, 'seed', 0, 0, 0xffffffff) : run?.split?.seed ?? meta?.seed ?? 0);
      const sizes = splitSizes(p) ?? (run?.split ? run.split.preset ?? run.split.sizes ?? undefined : undefined);
      const trainFraction = fractionFlag(p, 'train-fraction', 0, 1) ?? (sizes === undefined && run?.split?.trainFraction != null ? run.split.trainFraction : undefined);
      const split = { seed, onBadImage: onBadImageFlag(p, run?.split?.onBadImage ?? 'error'), ...(sizes !== undefined ? { sizes } : {}), ...(trainFraction !== undefined ? { trainFraction } : {}) };
      return { file, authorized, unauthorized, seed, split };
    };
    const setups: Awaited<ReturnType<typeof setup>>[] = [];
    for (const s of seedList ?? [undefined]) setups.push(await setup(s));
    const outDir = str(p, 'out') ?? join('out', 'attack');

    return withInterrupt(io, async (signal) => {
      const clip = await loadClipFromFlags(p);
      try {
        const reports: AttackReport[] = [];
        for (const { file, authorized, unauthorized, seed, split } of setups) {
          if (setups.length > 1) io.stderr.write(`seed ${seed}: ${file}\n`);
          const a = await domainSplits(root, authorized, split);
          const u = await domainSplits(root, unauthorized, split);
          const prompt = await PromptModel.load(clip, file);
          try {
            let bar: ProgressBar | undefined;
            let label = '';
            reports.push(await runAttacks({
              prompt, data: { authorized: a, unauthorized: u }, ...(attacks ? { attacks } : {}), budgets, seed, ownership: bool(p, 'ownership'), signal,
              onProgress: (e) => {
                const l = `${e.attack}: ${e.variant}`;
                if (l !== label) {
                  bar?.done();
                  bar = undefined;
                  label = l;
                  if (e.steps === undefined) io.stderr.write(`${l}\n`);
                }
                if (e.steps !== undefined) {
                  bar ??= new ProgressBar(e.steps, { stream: io.stderr, label: l });
                  bar.update(e.step ?? 0);
                }
              },
            }));
            bar?.done();
          } finally {
            prompt.dispose();
          }
        }
        const report = mergeAttackSeeds(reports);
        const files = await writeAttackReport(outDir, report);
        if (json) printJson(io, report);
        else io.stdout.write(`${attackTable(report)}\nwrote ${files.json} and ${files.html}\n`);
        return 0;
      } finally {
        clip.dispose();
      }
    });
  },
};
