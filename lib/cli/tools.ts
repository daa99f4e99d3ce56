/**
 * `ipclip synth` (render SynthDomains), `ipclip pretrain` (reproduce the shipped CLIP) and `ipclip build`
 * (the native addon; normally run by the launcher before this module loads).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ProgressBar } from '../tools/progress.js';
import { SYNTH_CLASSES, SYNTH_DOMAINS, generateSynthDomains, renderContactSheet } from '../tools/synth/synth.js';
import { bool, int, positiveNumber, required, str, unitFraction, type Command, type Io, type Parsed } from './args.js';
import { JSON_FLAG, PACKAGE_ROOT, printJson, withInterrupt } from './common.js';

/** `ipclip synth`. */
export const synthCommand: Command = {
  name: 'synth',
  summary: 'Render SynthDomains: 10 shape classes in 4 styles (photo, clipart, sketch, product).',
  usage: 'synth --out DIR --per-class N [--seed N] [--size PX] [--contact-sheet FILE]',
  flags: {
    out: { type: 'string', value: 'dir', help: 'output folder (<dir>/<domain>/<class>/*.png + synth.json)' },
    'per-class': { type: 'string', value: 'n', help: 'images per domain and class' },
    seed: { type: 'string', value: 'n', help: 'seed (default 0): the same seed gives the same images' },
    size: { type: 'string', value: 'px', help: 'image side in pixels, 16–1024 (default 64)' },
    'contact-sheet': { type: 'string', value: 'file', help: 'also write a PNG overview (one row per domain)' },
    ...JSON_FLAG,
  },
  details: `Classes: ${SYNTH_CLASSES.join(', ')}. Domains: ${SYNTH_DOMAINS.join(', ')}.
A complete dataset with the same parameters already in --out is reused, not rendered again.`,
  async run(p: Parsed, io: Io): Promise<number> {
    const out = required(p, 'out', 'the output folder');
    const perClass = int(p, 'per-class', NaN, 1, 100_000);
    if (Number.isNaN(perClass)) required(p, 'per-class', 'images per domain and class');
    const seed = int(p, 'seed', 0, 0, 0xffffffff);
    const size = int(p, 'size', 64, 16, 1024);
    const bar = new ProgressBar(perClass * SYNTH_CLASSES.length * SYNTH_DOMAINS.length, { stream: io.stderr, label: 'synth' });
    const result = await withInterrupt(io, (signal) => generateSynthDomains({
      out, perClass, seed, size, signal, onProgress: (done) => bar.update(done),
    }));
    bar.done();
    const sheet = str(p, 'contact-sheet');
    if (sheet) await renderContactSheet(result.root, sheet);
    if (bool(p, 'json')) {
      printJson(io, { ...result, perClass, seed, size, contactSheet: sheet ?? null });
    } else {
      io.stdout.write(`${result.reused ? 'reused' : 'rendered'} ${result.count} images in ${result.root} ` +
        `(${result.domains.length} domains × ${result.classes.length} classes × ${perClass})${sheet ? `; contact sheet ${sheet}` : ''}\n`);
    }
    return 0;
  },
};

/** Runs a Node script of the package with this Node, inheriting the terminal; resolves to its exit code. */
function runScript(script: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(PACKAGE_ROOT, 'scripts', script), ...args], { stdio: 'inherit' });
    // The child gets Ctrl-C from the terminal itself; this process only waits for it.
    const ignore = () => undefined;
    process.on('SIGINT', ignore);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      process.off('SIGINT', ignore);
      resolve(code ?? (signal === 'SIGINT' ? 130 : 1));
    });
  });
}

const PRETRAIN_PASS = ['out', 'data', 'epochs', 'batch-size', 'lr', 'seed', 'threads', 'train-per-class', 'test-per-class', 'merges',
  'render-size', 'image-size', 'patch-size', 'vision-layers', 'fade', 'fillers'] as const;

/** `ipclip pretrain` (runs scripts/pretrain.mjs; the defaults in the help are the script's). */
export const pretrainCommand: Command = {
  name: 'pretrain',
  summary: 'Pretrain the small CLIP on SynthDomains (reproduces models/synth-clip; about 30 min on 2 cores).',
  usage: 'pretrain [--out DIR] [--epochs N] [flags]',
  flags: {
    out: { type: 'string', value: 'dir', help: 'model folder (default models/synth-clip)' },
    data: { type: 'string', value: 'dir', help: 'where SynthDomains is rendered (default .cache/synth-pretrain)' },
    epochs: { type: 'string', value: 'n', help: 'passes over the captions (default 18)' },
    'batch-size': { type: 'string', value: 'n', help: 'image–caption pairs per step (default 128)' },
    lr: { type: 'string', value: 'x', help: 'peak learning rate (default 1e-3)' },
    seed: { type: 'string', value: 'n', help: 'seed (default 0)' },
    threads: { type: 'string', value: 'n', help: 'CPU threads (default min(2, cores))' },
    'train-per-class': { type: 'string', value: 'n', help: 'training images per domain and class (default 400)' },
    'test-per-class': { type: 'string', value: 'n', help: 'held-out images per domain and class (default 50)' },
    merges: { type: 'string', value: 'n', help: 'BPE merges learnt from the captions (default 300)' },
    'render-size': { type: 'string', value: 'px', help: 'resolution SynthDomains is drawn at (default 64)' },
    'image-size': { type: 'string', value: 'px', help: 'input resolution of the model (default 32)' },
    'patch-size': { type: 'string', value: 'px', help: 'vision patch size, a divisor of --image-size (default 8)' },
    'vision-layers': { type: 'string', value: 'n', help: 'vision transformer layers (default 4)' },
    fade: { type: 'string', value: 'x', help: 'share of training images also given as a copy faded towards white, grey or black, 0–1 (default 0)' },
    fillers: { type: 'string', value: 'n', help: 'caption variants per image with a random filler-word prefix (default 0: none)' },
    quiet: { type: 'boolean', help: 'no progress lines' },
  },
  details: `Runs scripts/pretrain.mjs, which drives ClipPretrainer (lib/pretrain/pretrainer.ts): renders SynthDomains, learns
the vocabulary, trains both towers contrastively, evaluates zero-shot per domain and writes model.safetensors,
config.json, vocab.txt.gz, eval.json and the model card README.md into --out.`,
  async run(p: Parsed): Promise<number> {
    const script = join(PACKAGE_ROOT, 'scripts', 'pretrain.mjs');
    if (!existsSync(script)) throw new Error(`missing ${script}`);
    const args: string[] = [];
    for (const name of PRETRAIN_PASS) {
      const v = str(p, name);
      if (v === undefined) continue;
      // Validated here too, so bad values are usage errors (exit 2) before anything starts.
      if (name === 'lr') positiveNumber(p, name, 1);
      else if (name === 'fade') unitFraction(p, name, 0);
      else if (name !== 'out' && name !== 'data') int(p, name, 0, 1);
      args.push(`--${name}`, v);
    }
    if (bool(p, 'quiet')) args.push('--quiet');
    return runScript('pretrain.mjs', args);
  },
};

/** `ipclip build` (runs scripts/build-addon.mjs; the launcher normally handles it first). */
export const buildCommand: Command = {
  name: 'build',
  summary: 'Build the native addon (needs cmake, a C++17 compiler and libtorch).',
  usage: 'build [--debug]',
  flags: { debug: { type: 'boolean', help: 'a debug build' } },
  async run(p: Parsed): Promise<number> {
    return runScript('build-addon.mjs', bool(p, 'debug') ? ['--debug'] : []);
  },
};
