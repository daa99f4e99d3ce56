/**
 * `ipclip demo`: the README's main job (see lib/tools/demo.ts). Exit code 0 when both targets pass, 1 when one fails.
 */
import { existsSync } from 'node:fs';
import { runDemo } from '../tools/demo.js';
import { IpclipError } from '../core/errors.js';
import { bool, int, positiveNumber, str, type Command, type Io, type Parsed } from './args.js';
import { DEFAULT_MODEL, printJson, withInterrupt } from './common.js';

/** `ipclip demo` (lib/tools/demo.ts). */
export const demoCommand: Command = {
  name: 'demo',
  summary: 'Protect photo against sketch on SynthDomains with the shipped CLIP; print the table, write out/report.html.',
  usage: 'demo [--out DIR] [--data DIR] [--epochs N] [--per-class N] [flags]',
  flags: {
    out: { type: 'string', value: 'dir', help: 'where report.html and demo.json go (default out)' },
    data: { type: 'string', value: 'dir', help: 'SynthDomains cache (default .cache/synth)' },
    clip: { type: 'string', value: 'path', help: 'CLIP weights (default: the shipped models/synth-clip)' },
    vocab: { type: 'string', value: 'file', help: 'tokenizer vocabulary (default: beside the weights)' },
    device: { type: 'string', value: 'name', help: "'cpu' (default), 'cuda' or 'cuda:N'" },
    threads: { type: 'string', value: 'n', help: 'CPU threads for libtorch (default: the physical cores, or OMP_NUM_THREADS)' },
    'per-class': { type: 'string', value: 'n', help: 'images per domain and class (default 50)' },
    epochs: { type: 'string', value: 'n', help: 'epochs per training run (default 20; the paper uses 50)' },
    'batch-size': { type: 'string', value: 'n', help: 'images per stream per step (default 8)' },
    lr: { type: 'string', value: 'x', help: 'peak learning rate (default 0.001; the paper uses 0.01)' },
    'no-feature-cache': { type: 'boolean', help: 'train on augmented images (random crop + flip) instead of cached test-transform features' },
    seed: { type: 'string', value: 'n', help: 'seed of everything (default 0)' },
    json: { type: 'boolean', help: 'print demo.json on stdout instead of the table' },
  },
  details: `Steps: render SynthDomains (cached), train the unprotected reference (CE on photo only) and IP-CLIP
target-specified (photo authorized, sketch unauthorized), evaluate zero-shot CLIP, the reference and the
protected prompt on the test split of all four domains, then check the targets: photo accuracy ≥ 0.95 × max(reference,
zero-shot) and
sketch accuracy ≤ chance + 10 points. Clipart and product are never seen by the protection; the demo says what
happens on them. Exit code 0 when both targets pass, 1 when one fails, 130 when stopped with Ctrl-C.`,
  async run(p: Parsed, io: Io): Promise<number> {
    const clip = str(p, 'clip') ?? DEFAULT_MODEL;
    if (!existsSync(clip)) {
      throw new IpclipError('ERR_FILE_NOT_FOUND', str(p, 'clip') ? `CLIP weights not found: ${clip}`
        : `the shipped model is missing (${clip}); pass --clip <weights> or rebuild it with \`npm run pretrain\``);
    }
    const json = bool(p, 'json');
    const opts = {
      clip,
      ...(str(p, 'vocab') ? { vocab: str(p, 'vocab')! } : {}),
      ...(str(p, 'device') ? { device: str(p, 'device')! } : {}),
      ...(str(p, 'threads') ? { threads: int(p, 'threads', 1, 1, 1024) } : {}),
      ...(str(p, 'out') ? { out: str(p, 'out')! } : {}),
      ...(str(p, 'data') ? { data: str(p, 'data')! } : {}),
      ...(str(p, 'per-class') ? { perClass: int(p, 'per-class', 1, 2, 10_000) } : {}),
      ...(str(p, 'epochs') ? { epochs: int(p, 'epochs', 1, 1, 1000) } : {}),
      ...(str(p, 'batch-size') ? { batchSize: int(p, 'batch-size', 8, 2, 4096) } : {}),
      ...(str(p, 'lr') ? { lr: positiveNumber(p, 'lr', 0.01) } : {}),
      ...(str(p, 'seed') ? { seed: int(p, 'seed', 0, 0, 0xffffffff) } : {}),
      ...(bool(p, 'no-feature-cache') ? { featureCache: false } : {}),
    };
    const result = await withInterrupt(io, (signal) => runDemo({
      ...opts, signal, stderr: io.stderr, stdout: json ? { write: () => true } : io.stdout,
    }));
    if (json) printJson(io, result);
    return result.targets.retention.pass && result.targets.sketch.pass ? 0 : 1;
  },
};
