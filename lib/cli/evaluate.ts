/**
 * `ipclip eval` and `ipclip verify-ownership`: score a trained prompt on test splits.
 */
import { readCheckpoint } from '../checkpoint.js';
import { DomainDataset } from '../data.js';
import { Evaluator } from '../evaluator.js';
import { IPPrompt } from '../prompt.js';
import { UsageError, bool, int, list, positiveNumber, required, str, type Command, type Io, type Parsed } from './args.js';
import {
  CLIP_FLAGS, JSON_FLAG, dataRoot, domainSplits, loadClipFromFlags, pct, printJson, resolveCheckpoint, splitSizes,
} from './common.js';
import { evaluationPlan, rowsOf, rowsTable } from './sets.js';

const SPLIT_FLAGS = {
  seed: { type: 'string', value: 'n', help: "split seed (default: the checkpoint's training seed)" },
  'split-sizes': { type: 'string', value: 'spec', help: 'the --split-sizes used for training (default 80%/20%)' },
} as const;

/** The split seed: `--seed`, else the checkpoint's training seed, else its prompt seed. */
async function splitSeed(p: Parsed, file: string): Promise<number> {
  if (str(p, 'seed') !== undefined) return int(p, 'seed', 0, 0, 0xffffffff);
  const meta = (await readCheckpoint(file)).meta;
  return meta?.training?.seed ?? meta?.seed ?? 0;
}

/** `ipclip eval`. */
export const evalCommand: Command = {
  name: 'eval',
  summary: 'Accuracy and macro-F1 of a trained prompt per test set; with --reference, the protection metrics.',
  usage: 'eval --checkpoint FILE --data DIR --authorized DOMAIN [--unauthorized A,B] [--reference FILE] [flags]',
  flags: {
    checkpoint: { type: 'string', value: 'file', help: 'the protected prompt (a checkpoint, or a run folder)' },
    reference: { type: 'string', value: 'file', help: 'the unprotected reference prompt (scenario reference) for the metrics' },
    data: { type: 'string', value: 'dir', help: 'dataset root: <dir>/<domain>/<class>/<image>' },
    authorized: { type: 'string', value: 'domain', help: 'the authorized domain' },
    unauthorized: { type: 'string', value: 'list', help: 'unauthorized domains, comma-separated (default: all others)' },
    'no-zero-shot': { type: 'boolean', help: 'skip zero-shot CLIP' },
    ...SPLIT_FLAGS,
    ...CLIP_FLAGS,
    ...JSON_FLAG,
  },
  details: `The sets follow the checkpoint's scenario: ownership compares the authorized test split clean and
watermarked; authorization scores the watermarked authorized split against every domain clean and watermarked;
the others score each domain's test split. Metrics (spec §7): retention = protected / reference accuracy on the
authorized set; suppression = how far each unauthorized accuracy fell from the reference's towards chance;
protection = their harmonic mean.`,
  async run(p: Parsed, io: Io): Promise<number> {
    const json = bool(p, 'json');
    const file = resolveCheckpoint(required(p, 'checkpoint', 'the trained prompt'));
    const refFile = str(p, 'reference') === undefined ? undefined : resolveCheckpoint(str(p, 'reference')!);
    const root = dataRoot(p);
    const authorized = required(p, 'authorized', 'the authorized domain, a folder under --data');
    const sizes = splitSizes(p);
    const seed = await splitSeed(p, file);
    const scenario = (await readCheckpoint(file)).meta?.training?.scenario ?? 'target-specified';
    const others = list(p, 'unauthorized') ?? (await DomainDataset.listDomains(root)).filter((d) => d !== authorized);
    if (others.includes(authorized)) throw new UsageError('--unauthorized must not include the authorized domain');
    if (scenario !== 'ownership' && others.length === 0) throw new UsageError('no unauthorized domain to evaluate: pass --unauthorized');
    const plan = await evaluationPlan(scenario, root, authorized, others, { seed, sizes });
    const clip = await loadClipFromFlags(p);
    const prompts: IPPrompt[] = [];
    try {
      const prompt = await IPPrompt.load(clip, file);
      prompts.push(prompt);
      const reference = refFile ? await IPPrompt.load(clip, refFile, { classNames: [...prompt.classNames] }) : undefined;
      if (reference) prompts.push(reference);
      const report = await new Evaluator(clip, { zeroShot: !bool(p, 'no-zero-shot') }).evaluate(prompt, {
        authorized: plan.authorized, unauthorized: plan.unauthorized, ...(reference ? { reference } : {}),
      });
      const rows = rowsOf(report, plan.authorizedName);
      if (json) {
        printJson(io, { checkpoint: file, reference: refFile ?? null, scenario, seed, chance: report.chance, sets: rows, metrics: report.metrics });
        return 0;
      }
      io.stdout.write(`${file} (${scenario}), chance ${pct(report.chance)}\n${rowsTable(rows)}\n`);
      const m = report.metrics;
      if (m) {
        io.stdout.write(`\nretention ${m.retention.toFixed(3)}  suppression ${m.suppression.toFixed(3)}  protection ${m.protection.toFixed(3)}` +
          `  (drop on authorized ${pct(m.dropA)}, mean drop on unauthorized ${pct(m.dropU)})\n`);
      }
      return 0;
    } finally {
      for (const x of prompts) x.dispose();
      clip.dispose();
    }
  },
};

/** `ipclip verify-ownership`. */
export const verifyOwnershipCommand: Command = {
  name: 'verify-ownership',
  summary: 'Ownership evidence: accuracy on clean vs watermarked test images, with a one-sided binomial test.',
  usage: 'verify-ownership --checkpoint FILE --data DIR --authorized DOMAIN [--alpha 0.01] [flags]',
  flags: {
    checkpoint: { type: 'string', value: 'file', help: 'the prompt trained with --scenario ownership' },
    data: { type: 'string', value: 'dir', help: 'dataset root: <dir>/<domain>/<class>/<image>' },
    authorized: { type: 'string', value: 'domain', help: 'the domain the owner trained on' },
    alpha: { type: 'string', value: 'p', help: 'significance level (default 0.01)' },
    ...SPLIT_FLAGS,
    ...CLIP_FLAGS,
    ...JSON_FLAG,
  },
  details: `Ownership is supported when the clean accuracy is significantly above chance (p < alpha) and the
watermarked accuracy is not. The exit code is 0 whenever the test ran (read the verdict), 1 on failure.`,
  async run(p: Parsed, io: Io): Promise<number> {
    const file = resolveCheckpoint(required(p, 'checkpoint', 'the trained prompt'));
    const root = dataRoot(p);
    const authorized = required(p, 'authorized', 'the domain the owner trained on');
    const alpha = positiveNumber(p, 'alpha', 0.01);
    if (alpha >= 1) throw new UsageError(`--alpha must be below 1, got ${alpha}`);
    const seed = await splitSeed(p, file);
    const { test } = await domainSplits(root, authorized, { seed, sizes: splitSizes(p) });
    const clip = await loadClipFromFlags(p);
    try {
      using prompt = await IPPrompt.load(clip, file);
      const r = await new Evaluator(clip, { zeroShot: false }).evaluateOwnership(prompt, test, { alpha });
      if (bool(p, 'json')) {
        printJson(io, { checkpoint: file, n: r.clean.n, clean: r.clean, watermarked: r.watermarked, ...r.evidence });
        return 0;
      }
      const e = r.evidence;
      io.stdout.write([
        `clean        ${pct(e.cleanAccuracy)} of ${r.clean.n}  (p above chance ${e.pValueCleanAboveChance.toExponential(2)})`,
        `watermarked  ${pct(e.watermarkedAccuracy)} of ${r.watermarked.n}  (p above chance ${e.pValueWatermarkedAboveChance.toExponential(2)})`,
        `chance       ${pct(e.chance)}, alpha ${alpha}`,
        `verdict: ${e.supported ? 'OWNERSHIP SUPPORTED' : 'NOT SUPPORTED'} (${e.verdict})`,
        '',
      ].join('\n'));
      return 0;
    } finally {
      clip.dispose();
    }
  },
};
