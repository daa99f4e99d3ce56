#!/usr/bin/env node
// `npm run bench`: IP-CLIP's fast text path against the naive one, the image tower against onnxruntime-node on
// the same graph and weights, the vision forward's share of the measured matrix-product peak, and peak memory.
// One command, one run; every part runs in its own child process (its peak RSS is its own). Prints a table and
// writes bench/results.json. See bench/README.md.
//   node bench/run.mjs [--quick] [--device cpu|cuda[:N]] [--threads N] [--skip-ort] [--resize-only]
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import {
  ARCHS, benchDir, ensureOnnxruntime, findPython, loadAddon, log, parseArgs, runChild, tensorRelDiff, workDir,
} from './common.mjs';

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (err) {
  console.error(`bench: ${err.message}`);
  process.exit(2);
}
if (opts.help) {
  console.log('usage: node bench/run.mjs [--quick] [--device cpu|cuda[:N]] [--threads N] [--skip-ort] [--resize-only]');
  process.exit(0);
}
// CLIP's resize of a 12 MP photo, the addon's PIL-exact resampler against sharp (a few seconds). With
// --resize-only it is all that runs, and only its key of bench/results.json is replaced.
const resizeRow = (r) => ['resize 12 MP → 224: native PIL-exact vs sharp (ms)', (r.nativeMs).toFixed(1), `${r.sharpMs.toFixed(1)} sharp`,
  `${r.speedupVsSharp.toFixed(2)}× (1 thread ${r.oneThreadSpeedupVsSharp.toFixed(2)}×)`];
log('resize: 12 MP → 224, native PIL-exact vs sharp');
const resize = await runChild('node', [join(benchDir, 'resize.mjs'), '--repeats', '7']);
if (opts.resizeOnly) {
  const file = join(benchDir, 'results.json');
  const previous = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {};
  writeFileSync(file, `${JSON.stringify({ ...previous, resize }, null, 2)}\n`);
  console.log(resizeRow(resize).join('  '));
  console.log(`CPU time per resize: native ${resize.nativeCpuMs.toFixed(1)} ms, sharp ${resize.sharpCpuMs.toFixed(1)} ms; ` +
    `sharp's result vs PIL: mean |Δ| ${resize.sharpMeanAbsDiffVsPil.toExponential(2)} after normalisation`);
  console.log('wrote bench/results.json (key resize)');
  process.exit(0);
}

const threads = opts.threads || os.availableParallelism();
const addon = loadAddon();
const runtime = addon.runtimeInfo();
if (opts.device.startsWith('cuda') && !runtime.cudaAvailable) {
  console.error(`--device ${opts.device}: this addon's libtorch ${runtime.torchVersion} sees no CUDA device`);
  process.exit(1);
}
mkdirSync(workDir, { recursive: true });
const common = ['--threads', String(threads), '--device', opts.device];
const notes = [];

// ---------------------------------------------------------------------------------------------------------------
// Setup: python3-torch (the ONNX export) and onnxruntime-node in bench/.work, not dependencies of ipclip.
// `npm run bench` installs both first (scripts/ensure.mjs --bench, bench/setup.mjs); run directly, the bench installs
// onnxruntime-node itself and reports a missing python3-torch.

function ensureOrt() {
  if (opts.skipOrt) return { error: '--skip-ort was given' };
  if (opts.device.startsWith('cuda')) return { error: "onnxruntime-node's CUDA binaries are a separate download (not installed)" };
  return ensureOnnxruntime();
}

/** Exports <arch> (safetensors + ONNX) once; later runs reuse the files while the script and seed are unchanged. */
function ensureExport(python, arch) {
  const base = join(workDir, arch.toLowerCase().replace(/[^a-z0-9]+/g, '-'));
  const stamp = createHash('sha256').update(readFileSync(join(benchDir, 'export_onnx.py'))).update(arch).digest('hex').slice(0, 16);
  const meta = `${base}.json`;
  if (existsSync(meta) && existsSync(`${base}.onnx`) && existsSync(`${base}.safetensors`) &&
    JSON.parse(readFileSync(meta, 'utf8')).stamp === stamp) return base;
  log(`setup: exporting ${arch} (random weights, seed 7) to safetensors and ONNX with python3-torch`);
  const r = spawnSync(python.py, [join(benchDir, 'export_onnx.py'), 'export', '--arch', arch, '--seed', '7', '--out', base],
    { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`export of ${arch} failed: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  writeFileSync(meta, JSON.stringify({ stamp, ...JSON.parse(r.stdout.trim().split('\n').pop()) }));
  return base;
}

/** The machine's matrix-product peak, measured by the addon's own libtorch (same BLAS, same threads). */
async function matmulPeak(n) {
  addon.setThreads(threads);
  const ms = await addon.benchMatmul(n, 7);
  return { n, ms, gflops: (2 * n ** 3) / (ms / 1000) / 1e9, source: 'addon benchMatmul' };
}

/**
 * FLOPs of one image through the vision tower (multiply-add = 2): patch embedding 2·N·3P²·W, per block
 * 24·T·W² (qkv 6TW², out proj 2TW², MLP 16TW²) + 4·T²·W (QKᵀ and AV), final projection 2·W·D;
 * N = (S/P)² patches, T = N + 1 tokens. LayerNorm, softmax and QuickGELU (elementwise) are not counted.
 */
function visionFlops(a) {
  const { width: W, layers: L, patchSize: P, imageSize: S } = a.vision;
  const N = (S / P) ** 2, T = N + 1;
  return 2 * N * 3 * P * P * W + L * (24 * T * W * W + 4 * T * T * W) + 2 * W * a.embedDim;
}

/** Rough peak bytes of a naive step: ~100 bytes per text-width channel per token per layer, kept for backward. */
function naiveStepBytes(a, C, B) {
  return 2 * B * C * a.text.contextLength * a.text.layers * a.text.width * 100;
}

const python = findPython();
if (!python) notes.push('/usr/bin/python3 has no torch: no ONNX export (`npm run bench` installs python3-torch; or apt-get install python3-torch)');
const ort = ensureOrt();

// ---------------------------------------------------------------------------------------------------------------
// 1. Training step and protected inference, fast vs naive (children: timing, then fast-path memory).

const trainArch = opts.quick ? 'quick-train' : 'ViT-B/16';
const C = opts.quick ? 20 : 65;
const requestedB = opts.quick ? 4 : 8;
let B = requestedB;
const memBudget = 0.6 * os.totalmem();
while (B > 2 && naiveStepBytes(ARCHS[trainArch], C, B) > memBudget) B = Math.max(2, B >> 1);
if (B !== requestedB) {
  notes.push(`naive step at ${requestedB}+${requestedB} would need ~${(naiveStepBytes(ARCHS[trainArch], C, requestedB) / 2 ** 30).toFixed(0)} GiB ` +
    `(machine: ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB): fast and naive are compared at ${B}+${B}; ` +
    `the fast path at ${requestedB}+${requestedB} is timed and measured separately`);
}
log(`train: ${trainArch}, C=${C}, fast vs naive at ${B}+${B}, ${threads} threads`);
const train = await runChild('node', [join(benchDir, 'train.mjs'), '--arch', trainArch, '--classes', String(C),
  '--batch', String(B), '--repeats', '3', '--naive-budget-s', opts.quick ? '60' : '120',
  ...(opts.quick ? ['--warm-naive'] : []), ...common]);
if (train.trainStep.repeats.naive < train.trainStep.repeats.fast) {
  notes.push(`a naive step took ${(train.trainStep.naiveSamplesMs[0] / 1000).toFixed(0)} s: ${train.trainStep.repeats.naive} naive sample(s) ` +
    `against ${train.trainStep.repeats.fast} fast ones`);
}
if (!train.trainStep.repeats.warmNaive) notes.push('no warm-up step for the naive path (one step costs minutes); the fast path had one');
log(`train memory: one fast step at ${requestedB}+${requestedB} in a fresh process`);
const memory = await runChild('node', [join(benchDir, 'train.mjs'), '--arch', trainArch, '--classes', String(C),
  '--batch', String(requestedB), '--memory-only', ...common]);

// ---------------------------------------------------------------------------------------------------------------
// 2–3. encodeImage vs onnxruntime-node, and the vision forward against the matmul peak.

const encodeArchs = opts.quick ? ['ViT-B/32'] : ['ViT-B/32', 'ViT-B/16'];
const gflopsArch = opts.quick ? 'ViT-B/32' : 'ViT-B/16';
const encode = {};
const peaks = [];
const peakN = opts.quick ? 1024 : 2048;
peaks.push(await matmulPeak(peakN));
if (python) {
  for (const arch of encodeArchs) {
    const base = ensureExport(python, arch);
    const repeats = arch === 'ViT-B/16' ? '3' : '5';
    const a = await runChild('node', [join(benchDir, 'encode.mjs'), '--runtime', 'addon', '--model', base, '--batch', '16', '--repeats', repeats, ...common]);
    let o = null;
    let ortError = ort.error ?? null;
    if (!ortError) {
      try {
        o = await runChild('node', [join(benchDir, 'encode.mjs'), '--runtime', 'ort', '--model', base, '--batch', '16', '--repeats', repeats, ...common]);
      } catch (err) {
        ortError = err.message;
      }
    }
    encode[arch] = {
      batch: 16, imagesPerSecond: a.imagesPerSecond, onnxruntimeImagesPerSecond: o ? o.imagesPerSecond : null,
      vsOnnxruntime: o ? a.imagesPerSecond / o.imagesPerSecond : null, onnxruntimeError: ortError,
      // Both runtimes on two fixed images: the same function (fp32 round-off only) or the comparison is void.
      outputsRelDiff: o ? tensorRelDiff(a.probe, o.probe) : null,
      addonBatchMs: a.batchMs, onnxruntimeBatchMs: o ? o.batchMs : null,
      peakRssMb: { addon: a.peakRssMb, onnxruntime: o ? o.peakRssMb : null },
    };
  }
}
peaks.push(await matmulPeak(peakN)); // before and after: the larger is the peak (noise only lowers a sample)

const flopsPerImage = visionFlops(ARCHS[gflopsArch]);
const peak = peaks.length ? Math.max(...peaks.map((p) => p.gflops)) : null;
const fwd = encode[gflopsArch];
const gflops = fwd ? (16 * flopsPerImage) / (fwd.addonBatchMs / 1000) / 1e9 : null;
const main = encode[encodeArchs[encodeArchs.length - 1]] ?? {};

// ---------------------------------------------------------------------------------------------------------------
// Results

const results = {
  quick: opts.quick,
  machine: {
    cpu: os.cpus()[0]?.model ?? 'unknown', cpus: os.cpus().length, memoryGiB: os.totalmem() / 2 ** 30,
    loadAverage: os.loadavg(), node: process.version, torch: runtime.torchVersion, pythonTorch: python?.torch ?? null,
    onnxruntimeNode: ort.version ?? null,
  },
  threads, device: opts.device, dtype: train.dtype,
  flags: process.argv.slice(2),
  trainStep: {
    fastMs: train.trainStep.fastMs, naiveMs: train.trainStep.naiveMs, speedup: train.trainStep.speedup,
    arch: trainArch, classes: C, batch: `${B}+${B}`, nCtx: train.nCtx, classTokens: train.classTokens,
    repeats: train.trainStep.repeats, fastSamplesMs: train.trainStep.fastSamplesMs, naiveSamplesMs: train.trainStep.naiveSamplesMs,
    lossFast: train.trainStep.lossFast, lossNaive: train.trainStep.lossNaive,
    lossRelDiff: train.trainStep.lossRelDiff, lossVsTermsRelDiff: train.trainStep.lossVsTermsRelDiff,
    termsFast: train.trainStep.termsFast, termsNaive: train.trainStep.termsNaive, termsMaxRelDiff: train.trainStep.termsMaxRelDiff,
    gradientMaxRelDiff: train.trainStep.gradientMaxRelDiff, sameLoss: train.trainStep.sameLoss,
    visionShareMs: train.trainStep.visionShareMs,
    fastAtRequestedBatch: { batch: memory.batch, stepMs: memory.stepMs },
  },
  inference: { ...train.inference, arch: trainArch, classes: C, images: 1 },
  encodeImage: {
    imagesPerSecond: main.imagesPerSecond ?? null, onnxruntimeImagesPerSecond: main.onnxruntimeImagesPerSecond ?? null,
    vsOnnxruntime: main.vsOnnxruntime ?? null, onnxruntimeError: main.onnxruntimeError ?? (python ? null : 'no python3-torch to export the ONNX graph'),
    arch: encodeArchs[encodeArchs.length - 1], perModel: encode,
  },
  visionForward: {
    gflops, peakGflops: peak, fractionOfPeak: gflops && peak ? gflops / peak : null,
    arch: gflopsArch, batch: 16, gflopPerImage: flopsPerImage / 1e9,
    flops: '2·N·3P²·W + L·(24·T·W² + 4·T²·W) + 2·W·D per image; N=(S/P)² patches, T=N+1',
    peakSource: 'median of 7 fp32 torch.mm at n×n with python3-torch (same libtorch, same threads), before and after; the larger',
    peakSamples: peaks,
  },
  resize,
  peakRssMb: memory.peakRssMb,
  peakRss: { trainFastMb: memory.peakRssMb, trainTimingBothPathsMb: train.peakRssMbBothPaths, trainBatch: memory.batch },
  notes,
};
writeFileSync(join(benchDir, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);

// ---------------------------------------------------------------------------------------------------------------
// Table

const f = (x, d = 2) => (x === null || x === undefined || Number.isNaN(x) ? '—' : Number(x).toFixed(d));
const rows = [
  ['measure', 'ipclip', 'baseline', 'ratio'],
  [`train step ${trainArch} C=${C} B=${B}+${B} (s)`, f(results.trainStep.fastMs / 1000), `${f(results.trainStep.naiveMs / 1000)} naive`, `${f(results.trainStep.speedup, 1)}×`],
  [`inference 1 image C=${C} (ms)`, f(results.inference.fastMs, 0), `${f(results.inference.naiveMs, 0)} naive`, `${f(results.inference.speedup, 1)}×`],
  ...Object.entries(encode).map(([arch, e]) => [`encodeImage ${arch} batch 16 (img/s)`, f(e.imagesPerSecond), `${f(e.onnxruntimeImagesPerSecond)} onnxruntime`, `${f(e.vsOnnxruntime)}×`]),
  [`vision forward ${gflopsArch} batch 16 (GFLOP/s)`, f(gflops, 1), `${f(peak, 1)} matmul peak`, `${f(results.visionForward.fractionOfPeak * 100, 0)}%`],
  resizeRow(resize),
  [`peak RSS, training (fast) ${memory.batch} (MB)`, f(memory.peakRssMb, 0), `${f(train.peakRssMbBothPaths, 0)} timing run`, ''],
];
const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
for (const [i, r] of rows.entries()) {
  console.log(r.map((c, j) => (j === 0 ? c.padEnd(widths[j]) : c.padStart(widths[j]))).join('  '));
  if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
}
console.log(`\nsame results: loss rel diff ${f(results.trainStep.lossRelDiff * 1e6, 2)}e-6 (vs the terms' scale ${f(results.trainStep.lossVsTermsRelDiff * 1e6, 2)}e-6; terms ${f(results.trainStep.termsMaxRelDiff * 1e6, 2)}e-6), ` +
  `gradients ${f(results.trainStep.gradientMaxRelDiff * 1e6, 2)}e-6, logits ${f(results.inference.logitsMaxRelDiff * 1e6, 2)}e-6; ` +
  `ONNX vs addon outputs ${Object.values(encode).map((e) => f(e.outputsRelDiff * 1e6, 2) + 'e-6').join(', ') || '—'}`);
console.log(`machine: ${results.machine.cpu}, ${results.machine.cpus} CPUs, ${threads} threads, libtorch ${runtime.torchVersion}, load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
for (const n of notes) console.log(`note: ${n}`);
console.log('wrote bench/results.json');
