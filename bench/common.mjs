// Shared helpers of the benchmark (plain Node ESM, no build step): the raw addon, model shapes, inputs,
// class tokens, timing, child processes and the bench's own tools (python3-torch, onnxruntime-node). Every part of the bench runs in its own child process so that
// its peak resident memory (process.resourceUsage().maxRSS) is its own.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const benchDir = dirname(fileURLToPath(import.meta.url));
export const root = resolve(benchDir, '..');
export const workDir = join(benchDir, '.work');

/** The raw native addon ($IPCLIP_ADDON or build/Release/ipclip.node), loaded without the TypeScript layer. */
export function loadAddon() {
  const path = process.env.IPCLIP_ADDON ? resolve(process.env.IPCLIP_ADDON) : join(root, 'build', 'Release', 'ipclip.node');
  if (!existsSync(path)) throw new Error(`the native addon is not built (${path}); run \`node scripts/build-addon.mjs\``);
  return createRequire(import.meta.url)(path);
}

/** OpenAI CLIP shapes. `quick-*` are narrower and shallower stand-ins that keep `--quick` near a minute. */
export const ARCHS = {
  'ViT-B/16': { embedDim: 512, vision: { width: 768, layers: 12, heads: 12, patchSize: 16, imageSize: 224 },
    text: { width: 512, layers: 12, heads: 8, contextLength: 77, vocabSize: 49408 } },
  'ViT-B/32': { embedDim: 512, vision: { width: 768, layers: 12, heads: 12, patchSize: 32, imageSize: 224 },
    text: { width: 512, layers: 12, heads: 8, contextLength: 77, vocabSize: 49408 } },
  // The training comparison in --quick: half-width towers of 3 layers each (nCtx = 10) at B/32's patching, so a
  // naive step takes seconds, not minutes, while the text tower still dominates the step as at full size.
  'quick-train': { embedDim: 256, vision: { width: 256, layers: 3, heads: 4, patchSize: 32, imageSize: 224 },
    text: { width: 256, layers: 3, heads: 4, contextLength: 77, vocabSize: 49408 } },
};

/** Command-line flags shared by the orchestrator and its children. */
export function parseArgs(argv) {
  const out = { quick: false, device: 'cpu', threads: 0, skipOrt: false, resizeOnly: false, dataParallelOnly: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const eq = a.indexOf('=');
      if (eq >= 0) return a.slice(eq + 1);
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--quick') out.quick = true;
    else if (a === '--skip-ort') out.skipOrt = true;
    else if (a === '--resize-only') out.resizeOnly = true;
    else if (a === '--data-parallel-only') out.dataParallelOnly = true;
    else if (a.startsWith('--device')) out.device = value();
    else if (a.startsWith('--threads')) out.threads = Number(value());
    else if (a === '--help' || a === '-h') out.help = true;
    else throw new Error(`unknown flag ${a} (try --help)`);
  }
  if (!/^(cpu|cuda(:\d+)?)$/.test(out.device)) throw new Error(`--device must be cpu or cuda[:N] (got ${out.device})`);
  if (!Number.isInteger(out.threads) || out.threads < 0 || out.threads > 1024) throw new Error('--threads must be an integer in [0,1024]');
  return out;
}

/** Mixed precision on CUDA: float16 towers (the prompt and losses stay fp32 natively). */
export function dtypeFor(device) {
  return device.startsWith('cuda') ? 'float16' : 'float32';
}

/** A small seeded generator (mulberry32) for bench inputs: same inputs in every run and every child. */
export function makeRng(seed) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (n) => Math.floor(next() * n) };
}

/** N normalised-looking images [N,3,S,S]: uniform in [-1.8, 2.1], roughly CLIP's normalised pixel range. */
export function randomImages(seed, n, size) {
  const rng = makeRng(seed);
  const data = new Float32Array(n * 3 * size * size);
  for (let i = 0; i < data.length; i++) data[i] = -1.8 + 3.9 * rng.next();
  return { data, shape: [n, 3, size, size] };
}

export function randomLabels(seed, n, classes) {
  const rng = makeRng(seed);
  return Int32Array.from({ length: n }, () => rng.int(classes));
}

// The 65 Office-Home classes, so token lengths (and so the fast path's suffix length) are the real ones.
const OFFICE_HOME = ('alarm clock,backpack,batteries,bed,bike,bottle,bucket,calculator,calendar,candles,chair,' +
  'clipboards,computer,couch,curtains,desk lamp,drill,eraser,exit sign,fan,file cabinet,flipflops,flowers,folder,' +
  'fork,glasses,hammer,helmet,kettle,keyboard,knives,lamp shade,laptop,marker,monitor,mop,mouse,mug,notebook,oven,' +
  'pan,paper clip,pen,pencil,postit notes,printer,push pin,radio,refrigerator,ruler,scissors,screwdriver,shelf,' +
  'sink,sneakers,soda,speaker,spoon,tv,table,telephone,toothbrush,toys,trash can,webcam').split(',');

const SOT = 49406, EOT = 49407, X = 343 /* "x</w>" */, DOT = 269 /* "." */;

/**
 * Token ids [C,ctx] of "X X … X {name}." (nCtx X's). With the package's tokenizer (`ipclip`, compiled in dist/) and the shared
 * vocabulary present the names are really tokenised; otherwise plausible ids are fabricated (1–4 name tokens
 * per class), which is all the timing needs. Returns { ids, source }.
 */
export async function classTokens(C, ctx, nCtx, vocabSize = 49408) {
  const names = Array.from({ length: C }, (_, i) => OFFICE_HOME[i % OFFICE_HOME.length]);
  const vocab = resolve(root, '..', 'shared', 'vocab', 'bpe_simple_vocab_16e6.txt.gz');
  const compiled = join(root, 'dist', 'index.js'); // what the package's self-reference `ipclip` resolves to
  let encodeName = null;
  let source = 'fabricated';
  if (vocabSize >= 49408 && existsSync(vocab) && existsSync(compiled)) {
    try {
      const { ClipTokenizer } = await import('ipclip');
      const tok = ClipTokenizer.fromBuffer(readFileSync(vocab));
      encodeName = (name) => tok.encode(name);
      source = 'tokenizer';
    } catch {
      encodeName = null;
    }
  }
  const rng = makeRng(12345);
  const ids = new Int32Array(C * ctx);
  for (let c = 0; c < C; c++) {
    const name = encodeName ? encodeName(names[c]) : Array.from({ length: 1 + rng.int(4) }, () => 400 + rng.int(40000));
    const row = [SOT, ...new Array(nCtx).fill(X), ...name, DOT, EOT];
    if (row.length > ctx) throw new Error(`class ${c} needs ${row.length} tokens, the context holds ${ctx}`);
    ids.set(row, c * ctx);
  }
  return { ids, shape: [C, ctx], source };
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Wall time of one awaited call in ms, and its result. */
export async function timed(fn) {
  const t0 = process.hrtime.bigint();
  const result = await fn();
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, result };
}

/** |a-b| / max(|a|,|b|,tiny), elementwise maximum over two arrays. */
export function maxRelDiff(a, b) {
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]) / Math.max(Math.abs(a[i]), Math.abs(b[i]), 1e-30);
    if (!(d <= worst)) worst = d; // NaN propagates as the worst case
  }
  return worst;
}

/** Relative difference of two tensors as a whole: max|a-b| / max|a| (robust for entries near zero). */
export function tensorRelDiff(a, b) {
  let diff = 0, scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(a[i]), Math.abs(b[i]));
  }
  return scale === 0 ? diff : diff / scale;
}

/** Peak resident set size of this process so far, in MB. */
export function peakRssMb() {
  return process.resourceUsage().maxRSS / 1024;
}

/** Progress lines go to stderr; a child's result is its last stdout line, as JSON. */
export function log(msg) {
  process.stderr.write(`${msg}\n`);
}

export function emit(result) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

/**
 * Runs `node bench/<script> ...args` (or another command), forwarding its stderr as progress, and returns the
 * JSON of its last stdout line. Rejects with the child's stderr tail if it fails.
 */
export function runChild(command, args, { env = {}, cwd = root } = {}) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let errTail = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => {
      process.stderr.write(`  ${String(d).replace(/\n(?=.)/g, '\n  ')}`);
      errTail = (errTail + d).slice(-4000);
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const last = out.trim().split('\n').pop() ?? '';
      if (code === 0) {
        try { resolvePromise(JSON.parse(last)); } catch { reject(new Error(`${args[0]}: no JSON result (${last.slice(0, 200)})`)); }
      } else {
        reject(new Error(`${[command, ...args].join(' ')} failed (${signal ?? `exit ${code}`}): ${errTail.trim().split('\n').slice(-5).join(' | ')}`));
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// The bench's tools, outside the package's dependencies (installed by bench/setup.mjs, which `npm run bench` runs).

/** onnxruntime-node's version, installed into `bench/.work/node_modules` (not a dependency of ipclip). */
export const ORT_VERSION = '1.30.0';

/**
 * The interpreter that exports the ONNX graph: Debian's /usr/bin/python3 with python3-torch (the `python3` on PATH
 * may be another one, e.g. pyenv's, without torch); IPCLIP_BENCH_PYTHON overrides it. Null when it has no torch.
 */
export function findPython() {
  const py = process.env.IPCLIP_BENCH_PYTHON || '/usr/bin/python3';
  const r = spawnSync(py, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
  return r.status === 0 ? { py, torch: r.stdout.trim() } : null;
}

/** The version of onnxruntime-node in the bench's work folder, or null. */
export function onnxruntimeVersion() {
  const pkg = join(workDir, 'node_modules', 'onnxruntime-node', 'package.json');
  try { return JSON.parse(readFileSync(pkg, 'utf8')).version; } catch { return null; }
}

/** Installs onnxruntime-node@ORT_VERSION into the bench's work folder unless it is there: { version } or { error }. */
export function ensureOnnxruntime() {
  if (onnxruntimeVersion() === ORT_VERSION) return { version: ORT_VERSION };
  log(`bench setup: installing onnxruntime-node@${ORT_VERSION} into bench/.work/node_modules (the bench's own folder, ` +
    'not a dependency of ipclip; its CPU binaries ship in the npm package)');
  mkdirSync(workDir, { recursive: true });
  // Its postinstall only fetches optional GPU binaries from NuGet: skipped (no network but the registries).
  const r = spawnSync('npm', ['install', '--prefix', workDir, '--ignore-scripts', '--no-save', '--no-audit', '--no-fund',
    `onnxruntime-node@${ORT_VERSION}`], { encoding: 'utf8', env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' } });
  if (r.status !== 0) return { error: `npm install onnxruntime-node failed: ${(r.stderr || r.stdout || String(r.error)).trim().split('\n').slice(-2).join(' ')}` };
  if (onnxruntimeVersion() !== ORT_VERSION) return { error: `npm install left no onnxruntime-node@${ORT_VERSION} in bench/.work` };
  return { version: ORT_VERSION };
}
