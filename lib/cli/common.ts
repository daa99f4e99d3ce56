/**
 * Helpers shared by the `ipclip` commands: where the shipped model lives, loading CLIP and checkpoints from
 * flags, datasets and split sizes, Ctrl-C handling, tables and JSON output.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CLIP_DTYPES, Clip } from '../clip/clip.js';
import { DomainDataset, SPLIT_PRESETS, type DatasetSizes, type OnBadImage } from '../data/dataset.js';
import { IpclipError } from '../core/errors.js';
import { packageRoot } from '../core/fs.js';
import { setThreads } from '../native/load.js';
import type { ProgressEvent } from '../core/progress.js';
import { ProgressBar } from '../tools/progress.js';
import { readCheckpoint } from '../ipclip/checkpoint.js';
import { UsageError, choice, int, str, type FlagSpec, type Io, type Parsed } from './args.js';

/** The package root (the folder of package.json, from lib/ and from dist/ alike). */
export const PACKAGE_ROOT = packageRoot();

/** The shipped small CLIP pretrained on SynthDomains (weights; its vocabulary sits beside them). */
export const DEFAULT_MODEL = join(PACKAGE_ROOT, 'models', 'synth-clip', 'model.safetensors');

/** Flags of every command that loads CLIP. */
export const CLIP_FLAGS: Record<string, FlagSpec> = {
  clip: { type: 'string', value: 'path', help: 'CLIP weights (safetensors, Hugging Face folder or .pt); default: the shipped models/synth-clip' },
  vocab: { type: 'string', value: 'file', help: "tokenizer vocabulary (default: the one beside the weights)" },
  device: { type: 'string', value: 'name', help: "'cpu' (default), 'cuda' or 'cuda:N'" },
  dtype: { type: 'string', value: 'type', help: "the towers' compute dtype: float32 (default), bfloat16, float16 (CUDA), float64, or auto (bf16 on CPUs with bf16 hardware)" },
  threads: { type: 'string', value: 'n', help: 'CPU threads for libtorch (default: the physical cores, or OMP_NUM_THREADS)' },
};

/** `--json`. */
export const JSON_FLAG: Record<string, FlagSpec> = {
  json: { type: 'boolean', help: 'print one JSON document on stdout (progress goes to stderr)' },
};

/** `--dtype`, checked (a usage error names the choices); commands that work before loading CLIP check it first. */
export function clipDtypeFlag(p: Parsed): (typeof CLIP_DTYPES)[number] {
  return choice(p, 'dtype', CLIP_DTYPES, 'float32');
}

/** Loads CLIP from `--clip` (or the shipped model), `--vocab`, `--device`, `--threads`. */
export async function loadClipFromFlags(p: Parsed): Promise<Clip> {
  const threads = str(p, 'threads') === undefined ? undefined : int(p, 'threads', 1, 1, 1024);
  if (threads !== undefined) setThreads(threads);
  const given = str(p, 'clip');
  const path = given ?? DEFAULT_MODEL;
  if (!existsSync(path)) {
    throw new IpclipError('ERR_FILE_NOT_FOUND', given
      ? `CLIP weights not found: ${given}`
      : `the shipped model is missing (${path}); pass --clip <weights> or rebuild it with \`npm run pretrain\``);
  }
  const vocab = str(p, 'vocab');
  if (vocab !== undefined && !existsSync(vocab)) throw new IpclipError('ERR_FILE_NOT_FOUND', `vocabulary not found: ${vocab}`);
  const device = str(p, 'device') ?? 'cpu';
  return Clip.load(path, { device, dtype: clipDtypeFlag(p), ...(vocab ? { vocab } : {}) });
}

/** A checkpoint path: a file, or a training folder holding `last.safetensors` (else `prompt.safetensors`). */
export function resolveCheckpoint(path: string): string {
  if (!existsSync(path)) throw new IpclipError('ERR_FILE_NOT_FOUND', `checkpoint not found: ${path}`);
  if (statSync(path).isDirectory()) {
    for (const name of ['last.safetensors', 'prompt.safetensors']) if (existsSync(join(path, name))) return join(path, name);
    throw new IpclipError('ERR_FILE_NOT_FOUND', `${path} is a folder without last.safetensors or prompt.safetensors (not a run folder)`);
  }
  return path;
}

/** `--split-sizes`: a preset name or `<train>/<test>`; undefined keeps the 80/20 split. */
export function splitSizes(p: Parsed): DatasetSizes | keyof typeof SPLIT_PRESETS | undefined {
  const v = str(p, 'split-sizes');
  if (v === undefined) return undefined;
  if (v in SPLIT_PRESETS) return v as keyof typeof SPLIT_PRESETS;
  const m = /^(\d+)\/(\d+)$/.exec(v);
  if (!m || Number(m[1]) < 1 || Number(m[2]) < 1) {
    throw new UsageError(`--split-sizes must be ${Object.keys(SPLIT_PRESETS).join(', ')} or <train>/<test> (e.g. 400/80); got '${v}'`);
  }
  return { train: Number(m[1]), test: Number(m[2]) };
}

/** The data root given by `--data`, checked to be a folder. */
export function dataRoot(p: Parsed): string {
  const root = str(p, 'data');
  if (root === undefined) throw new UsageError('--data is required (a folder of domain folders: <data>/<domain>/<class>/*.png)');
  if (!existsSync(root)) throw new IpclipError('ERR_FILE_NOT_FOUND', `data folder not found: ${root}`);
  if (!statSync(root).isDirectory()) throw new IpclipError('ERR_INVALID_ARGUMENT', `--data must be a folder, got the file ${root}`);
  return root;
}

/** How the CLI cuts a domain: the seed, sizes or a train fraction, and what to do with unreadable images. */
export interface SplitFlags {
  seed: number;
  sizes?: DatasetSizes | keyof typeof SPLIT_PRESETS;
  trainFraction?: number;
  onBadImage?: OnBadImage;
}

/** `--on-bad-image error|skip`, or `fallback`. */
export function onBadImageFlag(p: Parsed, fallback: OnBadImage = 'error'): OnBadImage {
  return choice(p, 'on-bad-image', ['error', 'skip'] as const, fallback);
}

/** The flag of every command that reads dataset folders. */
export const BAD_IMAGE_FLAG: Record<string, FlagSpec> = {
  'on-bad-image': { type: 'string', value: 'mode', help: "unreadable images (checked before any model work): 'error' (default: list them all and stop) or 'skip'" },
};

/** Both splits of `domain` under `root`, with a message naming the domains there when it is missing. */
export async function domainSplits(root: string, domain: string, opts: SplitFlags):
  Promise<{ train: DomainDataset; test: DomainDataset }> {
  if (!existsSync(join(root, domain))) {
    const there = await DomainDataset.listDomains(root).catch(() => []);
    throw new IpclipError('ERR_FILE_NOT_FOUND', `domain '${domain}' not found in ${root}` +
      (there.length > 0 ? ` (domains there: ${there.join(', ')})` : ' (it has no domain folders)'));
  }
  return DomainDataset.splits(root, {
    domain, seed: opts.seed, onBadImage: opts.onBadImage ?? 'error',
    ...(opts.sizes !== undefined ? { sizes: opts.sizes } : {}), ...(opts.trainFraction !== undefined ? { trainFraction: opts.trainFraction } : {}),
  });
}

/** Only the test split of `domain` (the same cut as {@link domainSplits}; only its images are header-checked). */
export async function domainTest(root: string, domain: string, opts: SplitFlags): Promise<DomainDataset> {
  if (!existsSync(join(root, domain))) return (await domainSplits(root, domain, opts)).test; // its message names the domains
  return DomainDataset.fromFolder(root, {
    domain, split: 'test', seed: opts.seed, onBadImage: opts.onBadImage ?? 'error',
    ...(opts.sizes !== undefined ? { sizes: opts.sizes } : {}), ...(opts.trainFraction !== undefined ? { trainFraction: opts.trainFraction } : {}),
  });
}

/**
 * Runs `work` with an AbortSignal that Ctrl-C (SIGINT) or SIGTERM fires. The first signal asks the work to stop
 * cleanly (the trainer finishes its step and writes its checkpoint); a second one exits at once with 130.
 */
export async function withInterrupt<T>(io: Io, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      io.stderr.write(`\nipclip: ${sig} again, exiting without waiting\n`);
      process.exit(130);
    }
    io.stderr.write(`\nipclip: ${sig}: stopping after the current step (press Ctrl-C again to exit at once)\n`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await work(controller.signal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** A fraction as a percentage with one decimal: `0.953` → `'95.3%'`. */
export function pct(x: number | null | undefined): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '–' : `${(100 * x).toFixed(1)}%`;
}

/** A text table with a header row and a rule, columns padded. */
export function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, c) => Math.max(...all.map((r) => (r[c] ?? '').length)));
  // Numbers (and the '–' of a missing one) align right, text aligns left.
  const numeric = header.map((_, c) => rows.length > 0 && rows.every((r) => /^(–|[-+]?[\d.]+(e[-+]?\d+)?%?)$/.test(r[c] ?? '')));
  const fmt = (r: string[]) => r.map((cell, c) => (numeric[c] ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ').trimEnd();
  return [fmt(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)].join('\n');
}

/** Writes `value` as indented JSON (non-finite numbers become null). */
export function printJson(io: Io, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
}

/**
 * The progress of a long library call as the CLI shows it: the bar `train` has on a terminal, plain lines (at
 * most one every 5 s, and the last) otherwise, nothing with `--json`. `onProgress` goes to the call; `done` ends
 * the bar.
 */
export function progressOf(io: Io, label: string, json: boolean): { onProgress: (e: ProgressEvent) => void; done: () => void } {
  let bar: ProgressBar | undefined;
  return {
    onProgress: ({ done, total }) => {
      if (json) return;
      bar ??= new ProgressBar(total, { stream: io.stderr, label });
      bar.update(done);
    },
    done: () => bar?.done(),
  };
}

/**
 * Reads and checks a prompt checkpoint before any model is loaded: a CLIP model, a file of another format or
 * malformed metadata fails here with the message naming the problem (see {@link readCheckpoint}).
 */
export async function refuseNonPrompt(file: string): Promise<void> {
  await readCheckpoint(file);
}
