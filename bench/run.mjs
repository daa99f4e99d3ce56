#!/usr/bin/env node
// `npm run bench`: IP-CLIP's fast text path against the naive one, the image tower against onnxruntime-node on
// the same graph and weights, the vision forward's share of the measured matrix-product peak, and peak memory.
// One command, one run; every part runs in its own child process (its peak RSS is its own). Prints a table and
// writes bench/results.json. See bench/README.md.
//   node bench/run.mjs [--quick] [--device cpu|cuda[:N]] [--threads N] [--skip-ort] [--resize-only] [--data-parallel-only]
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
  console.log('usage: node bench/run.mjs [--quick] [--device cpu|cuda[:N]] [--threads N] [--skip-ort] [--resize-only] [--data-parallel-only]');
  process.exit(0);
}
// CLIP's resize of a 12 MP photo, the addon's PIL-exact resampler against sharp (a few seconds). With
// --resize-only it is all that runs, and only its key of bench/results.json is replaced.
const resizeRow = (r) => ['resize 12 MP → 224: native PIL-exact vs sharp (ms)', (r.nativeMs).toFixed(1), `${r.sharpMs.toFixed(1)} sharp`,
  `${r.speedupVsSharp.toFixed(2)}× (1 thread ${r.oneThreadSpeedupVsSharp.toFixed(2)}×)`];
// Data parallelism on the CPU (bench/dataparallel.mjs): one process against two (Gloo over 127.0.0.1), 1 thread
// each, on the same global batch. With --data-parallel-only it is all that runs (its key of results.json only).
const dataParallelRow = (d) => [`data parallel ${d.arch} ${d.globalBatch}/step, 2 procs vs 1, 1 thread each (s)`,
  (d.twoProcessesMs / 1000).toFixed(2), `${(d.oneProcessMs / 1000).toFixed(2)} 1 proc`,
  `${d.speedup.toFixed(2)}× (efficiency ${(d.scalingEfficiency * 100).toFixed(0)}%, all-reduce ${(d.allReduceShare * 100).toFixed(1)}%)`];
if (opts.dataParallelOnly) {
  log('data parallel: 1 process vs 2 processes (Gloo), 1 thread each');
  const dataParallel = await runChild('node', [join(benchDir, 'dataparallel.mjs'), '--batch', '8', '--steps', '3']);
  const file = join(benchDir, 'results.json');
  const previous = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {};
  writeFileSync(file, `${JSON.stringify({ ...previous, dataParallel }, null, 2)}\n`);
  console.log(dataParallelRow(dataParallel).join('  '));
  console.log('wrote bench/results.json (key dataParallel)');
  process.exit(0);
}
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
// What the addon's default `linear: 'auto'` picks here (native/clip/linear.cpp): oneDNN on AVX-512 CPUs.
const autoLinear = runtime.cpu?.avx512f && runtime.cpu?.onednn ? 'onednn' : 'blas';
// bf16 matrix hardware (what `dtype: 'auto'` looks for): without it libtorch 1.13's bf16 products run a scalar fallback.
const bf16Hardware = Boolean(runtime.cpu?.avx512bf16 || runtime.cpu?.amxBf16);
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

/**
 * The machine's matrix-product peak, measured by the addon's own libtorch (same threads): `blas` is torch::mm
 * (OpenBLAS in Debian's libtorch), `onednn` the towers' oneDNN linear with its per-call layout conversions.
 */
async function matmulPeak(n, kernel = 'blas') {
  addon.setThreads(threads);
  const ms = await addon.benchMatmul(n, 7, kernel);
  return { n, kernel, ms, gflops: (2 * n ** 3) / (ms / 1000) / 1e9, source: `addon benchMatmul (${kernel})` };
}

/**
 * The theoretical fp32 peak: fp32 lanes of the widest ISA × FMA pipes per core × 2 flops per FMA × cores × clock,
 * every value read from /proc/cpuinfo (flags, "cpu MHz", physical cores) or stated as an assumption:
 *   - lanes: 16 with avx512f, 8 with avx2+fma, 4 otherwise;
 *   - FMA pipes: 2 of the ISA's width (Intel Xeon since Skylake-SP, AMD Zen 2/3/5), except AMD with AVX-512 but
 *     without avx512_vp2intersect (Zen 4), whose 512-bit FMAs run as two halves on its two 256-bit pipes: 1;
 *   - clock: "cpu MHz" of the first CPU (under a hypervisor the nominal clock; boost can exceed it, so a measured
 *     figure above 100 % means the cores ran faster than that), or IPCLIP_BENCH_CPU_GHZ when set;
 *   - cores: the bench's threads, at most the physical cores (SMT siblings share the FMA pipes).
 */
function theoreticalPeak(cores) {
  let text = '';
  try { text = readFileSync('/proc/cpuinfo', 'utf8'); } catch { return { gflops: null, source: 'no /proc/cpuinfo' }; }
  const field = (name) => new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(text)?.[1]?.trim() ?? '';
  const flags = new Set(field('flags').split(/\s+/));
  const model = field('model name');
  const physical = new Set([...text.matchAll(/^physical id\s*:\s*(\d+)[\s\S]*?^core id\s*:\s*(\d+)/gm)].map((m) => `${m[1]}/${m[2]}`)).size ||
    os.cpus().length;
  const avx512 = flags.has('avx512f');
  const lanes = avx512 ? 16 : flags.has('avx2') && flags.has('fma') ? 8 : 4;
  const zen4 = avx512 && /AMD/i.test(model) && !flags.has('avx512_vp2intersect');
  const fmaPipes = zen4 ? 1 : 2;
  const ghz = process.env.IPCLIP_BENCH_CPU_GHZ ? Number(process.env.IPCLIP_BENCH_CPU_GHZ) : Number(field('cpu MHz')) / 1000;
  const used = Math.min(cores, physical);
  return {
    gflops: lanes * fmaPipes * 2 * used * ghz, isa: avx512 ? 'AVX-512' : lanes === 8 ? 'AVX2+FMA' : 'SSE', lanes, fmaPipes,
    flopsPerCyclePerCore: lanes * fmaPipes * 2, cores: used, physicalCores: physical, ghz, model,
    source: `/proc/cpuinfo: flags (${avx512 ? 'avx512f' : 'avx2, fma'}), ${process.env.IPCLIP_BENCH_CPU_GHZ ? 'IPCLIP_BENCH_CPU_GHZ' : '"cpu MHz"'}, ` +
      `physical cores; ${fmaPipes} FMA pipe(s) of that width per core ${zen4 ? '(AMD Zen 4: 512-bit FMAs on two 256-bit pipes)' : '(assumed: Intel Xeon since Skylake-SP, AMD Zen 2/3/5)'}`,
  };
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

/** The smallest cosine between matching rows of two [n,d] embeddings. */
function minCosine(a, b, d) {
  let worst = 1;
  for (let i = 0; i < a.length / d; i++) {
    let ab = 0, aa = 0, bb = 0;
    for (let j = i * d; j < (i + 1) * d; j++) { ab += a[j] * b[j]; aa += a[j] ** 2; bb += b[j] ** 2; }
    worst = Math.min(worst, ab / Math.sqrt(aa * bb));
  }
  return worst;
}

/**
 * Rough peak bytes of a naive step: ~200 bytes per text-width channel per token per layer, kept for backward
 * (measured 2026-12-02: 24.2 GB RSS at ViT-B/16, C = 65, 2 + 2, the timing child; the earlier 100 underestimated it
 * and the kernel's OOM killer ended the bench on a 24 GiB machine).
 */
function naiveStepBytes(a, C, B) {
  return 2 * B * C * a.text.contextLength * a.text.layers * a.text.width * 200;
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
// 40 %: the second naive sample of a child runs with the first one's pages still mapped (measured: 21.8 GB RSS at C = 36,
// 2 + 2, where one step is estimated at 13.6 GB), and the machine runs other work.
const memBudget = 0.4 * os.totalmem();
while (B > 2 && naiveStepBytes(ARCHS[trainArch], C, B) > memBudget) B = Math.max(2, B >> 1);
// Where even 2 + 2 does not fit (the enhancement branch's smallest batch), the comparison drops classes instead:
// the speed-up then holds for that class count, and the fast path at the requested shape is still timed below.
let compareC = C;
while (compareC > 8 && naiveStepBytes(ARCHS[trainArch], compareC, B) > memBudget) compareC = Math.floor(compareC * 0.75);
if (B !== requestedB || compareC !== C) {
  notes.push(`naive step at ${requestedB}+${requestedB}, C = ${C} would need ~${(naiveStepBytes(ARCHS[trainArch], C, requestedB) / 2 ** 30).toFixed(0)} GiB ` +
    `(machine: ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB): fast and naive are compared at ${B}+${B}, C = ${compareC}; ` +
    `the fast path at ${requestedB}+${requestedB}, C = ${C} is timed and measured separately`);
}
log(`train: ${trainArch}, C=${compareC}, fast vs naive at ${B}+${B}, ${threads} threads`);
const train = await runChild('node', [join(benchDir, 'train.mjs'), '--arch', trainArch, '--classes', String(compareC),
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

// The same fast step with the other linear engine (oneDNN's backward for the text tower), and in bf16 where the CPU
// has bf16 hardware: fresh processes at the requested batch, like `memory` (second, warm step timed).
let trainByLinear = null;
if (opts.device === 'cpu') {
  // At the compared batch (B), one sample each after a warm-up: a step at 8 + 8 takes minutes on 2 shared cores.
  log(`train: fast step at ${B}+${B}, linear blas against onednn, interleaved`);
  trainByLinear = await runChild('node', [join(benchDir, 'train.mjs'), '--arch', trainArch, '--classes', String(C),
    '--batch', String(B), '--repeats', opts.quick ? '2' : '1', '--compare-linear', ...common]);
}
let trainBf16 = null;
if (bf16Hardware || opts.device.startsWith('cuda')) {
  log(`train: one fast step at ${requestedB}+${requestedB} in bfloat16`);
  const r = await runChild('node', [join(benchDir, 'train.mjs'), '--arch', trainArch, '--classes', String(C),
    '--batch', String(requestedB), '--memory-only', '--dtype', 'bfloat16', ...common]);
  // On CUDA the default step (memory) runs float16: the ratio is then against float16.
  trainBf16 = { fastMs: r.stepMs, speedupVsFp32: opts.device === 'cpu' ? memory.stepMs / r.stepMs : null,
    ...(opts.device === 'cpu' ? {} : { speedupVsFp16: memory.stepMs / r.stepMs }), batch: r.batch };
} else {
  trainBf16 = { fastMs: null, speedupVsFp32: null,
    reason: 'this CPU has no AVX512-BF16 or AMX: libtorch 1.13 runs bf16 matrix products in a scalar fallback here ' +
      '(see encodeImage.bfloat16), so a bf16 step would take minutes and say nothing about bf16 hardware; measure it on an AVX512-BF16 machine' };
}

// ---------------------------------------------------------------------------------------------------------------
// 2–3. encodeImage vs onnxruntime-node, and the vision forward against the matmul peak.

const encodeArchs = opts.quick ? ['ViT-B/32'] : ['ViT-B/32', 'ViT-B/16'];
const gflopsArch = opts.quick ? 'ViT-B/32' : 'ViT-B/16';
const encode = {};
const peaks = [];
const peakN = opts.quick ? 1024 : 2048;
const onCpu = opts.device === 'cpu';
if (onCpu) peaks.push(await matmulPeak(peakN, 'blas'), await matmulPeak(peakN, 'onednn'));
if (python) {
  for (const arch of encodeArchs) {
    const base = ensureExport(python, arch);
    const repeats = arch === 'ViT-B/16' ? '3' : '5';
    // Both linear engines side by side (interleaved in one process); the headline figure is the one the default
    // ('auto') picks on this CPU.
    const both = await runChild('node', [join(benchDir, 'encode.mjs'), '--runtime', 'addon', '--model', base, '--batch', '16',
      '--repeats', repeats, ...(onCpu ? ['--linear', 'both'] : []), ...common]);
    const byLinear = both.byLinear ?? { [both.linear ?? 'blas']: both }; // one engine on CUDA (cuBLAS)
    const first = Object.values(byLinear)[0];
    const a = { ...(byLinear[autoLinear] ?? first), peakRssMb: both.peakRssMb };
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
      addonBatchMs: a.batchMs, onnxruntimeBatchMs: o ? o.batchMs : null, linear: a.linear,
      byLinear: Object.fromEntries(Object.entries(byLinear).map(([k, r]) => [k, {
        imagesPerSecond: r.imagesPerSecond, batchMs: r.batchMs, vsOnnxruntime: o ? r.imagesPerSecond / o.imagesPerSecond : null,
        // The two engines compute the same function: their embeddings agree to fp32 round-off.
        outputsRelDiffVsBlas: byLinear.blas ? tensorRelDiff(r.probe, byLinear.blas.probe) : null,
      }])),
      probe: a.probe,
      peakRssMb: { addon: a.peakRssMb, addonModelsLoaded: Object.keys(byLinear).length, onnxruntime: o ? o.peakRssMb : null },
    };
  }
}
// bf16 encode against fp32 on the same model file: throughput and the embeddings' cosine to fp32. Without bf16
// hardware, a small batch of ViT-B/32 (the scalar fallback runs at about 1 GFLOP/s) and one sample.
let encodeBf16 = null;
if (python && !opts.device.startsWith('cuda')) {
  const arch = bf16Hardware ? gflopsArch : 'ViT-B/32';
  const fp32 = encode[arch];
  const batch = bf16Hardware ? 16 : 2;
  try {
    const r = await runChild('node', [join(benchDir, 'encode.mjs'), '--runtime', 'addon', '--model', ensureExport(python, arch),
      '--batch', String(batch), '--repeats', bf16Hardware ? '3' : '1', '--dtype', 'bfloat16', ...common]);
    encodeBf16 = {
      arch, batch, imagesPerSecond: r.imagesPerSecond,
      vsOnnxruntime: fp32?.onnxruntimeImagesPerSecond ? r.imagesPerSecond / fp32.onnxruntimeImagesPerSecond : null,
      vsFp32: fp32 ? r.imagesPerSecond / fp32.imagesPerSecond : null,
      cosineToFp32: fp32 ? minCosine(r.probe, fp32.probe, ARCHS[arch].embedDim) : null,
      bf16Hardware,
      ...(bf16Hardware ? {} : { note: `no bf16 hardware: batch ${batch}, one sample; fp32 and onnxruntime at batch 16` }),
    };
  } catch (err) {
    encodeBf16 = { imagesPerSecond: null, vsOnnxruntime: null, cosineToFp32: null, error: err.message };
  }
}

// GPU (--device cuda): the vision tower in float32, float16 and bfloat16 on one model file, ratios to float32 and
// the embeddings' cosine to float32 (scripts/gpu-check.sh runs this when a device is lent).
let gpu = null;
if (python && opts.device.startsWith('cuda')) {
  const base = ensureExport(python, gflopsArch);
  const byDtype = {};
  for (const dtype of ['float32', 'float16', 'bfloat16']) {
    try {
      byDtype[dtype] = await runChild('node', [join(benchDir, 'encode.mjs'), '--runtime', 'addon', '--model', base, '--batch', '16',
        '--repeats', '5', '--dtype', dtype, ...common]);
    } catch (err) {
      byDtype[dtype] = { error: err.message };
    }
  }
  const f32 = byDtype.float32;
  gpu = { arch: gflopsArch, batch: 16, device: opts.device, ...Object.fromEntries(Object.entries(byDtype).map(([k, r]) => [k, r.error ? r : {
    imagesPerSecond: r.imagesPerSecond, gflops: (16 * visionFlops(ARCHS[gflopsArch])) / (r.batchMs / 1000) / 1e9,
    speedupVsFp32: f32?.imagesPerSecond ? r.imagesPerSecond / f32.imagesPerSecond : null,
    cosineToFp32: f32?.probe ? minCosine(r.probe, f32.probe, ARCHS[gflopsArch].embedDim) : null }])) };
}

// 4. What bf16 costs in accuracy (the shipped CLIP, zero-shot) and `ipclip predict` end to end: both use the
// compiled package (dist/).
const haveDist = existsSync(join(benchDir, '..', 'dist', 'index.js'));
if (!haveDist) notes.push('no dist/ (run `npx tsc -p tsconfig.build.json`): no zero-shot bf16 row and no `ipclip predict` row');
const optional = async (what, script, args) => {
  if (!haveDist || opts.device !== 'cpu') return null;
  log(what);
  try {
    return await runChild('node', [join(benchDir, script), ...args, '--threads', String(threads)]);
  } catch (err) {
    return { error: err.message };
  }
};
const zeroShot = await optional('zero-shot: models/synth-clip in float32 and bfloat16', 'zeroshot.mjs', ['--per-class', opts.quick ? '3' : '10']);
const predict = await optional(`predict: ipclip predict end to end`, 'predict.mjs', ['--images', opts.quick ? '200' : '1000']);
if (encodeBf16 && zeroShot && !zeroShot.error) encodeBf16.cosineToFp32OnFixtures = zeroShot.cosineToFp32;

// before and after: the larger counts (noise only lowers a sample)
if (onCpu) peaks.push(await matmulPeak(peakN, 'blas'), await matmulPeak(peakN, 'onednn'));

const flopsPerImage = visionFlops(ARCHS[gflopsArch]);
const best = (kernel) => { const g = peaks.filter((p) => p.kernel === kernel).map((p) => p.gflops); return g.length ? Math.max(...g) : null; };
const theoretical = onCpu ? theoreticalPeak(threads) : { gflops: null, source: 'not a CPU run' };
const peakParts = { openblasGflops: best('blas'), onednnGflops: best('onednn'), theoreticalGflops: theoretical.gflops };
const peakValues = Object.values(peakParts).filter((x) => x);
const peak = peakValues.length ? Math.max(...peakValues) : null;
const fwd = encode[gflopsArch];
const gflops = fwd ? (16 * flopsPerImage) / (fwd.addonBatchMs / 1000) / 1e9 : null;
const gflopsOf = (batchMs) => (16 * flopsPerImage) / (batchMs / 1000) / 1e9;
const ortGflops = fwd?.onnxruntimeBatchMs ? gflopsOf(fwd.onnxruntimeBatchMs) : null;
const fraction = (x) => (x && peak ? x / peak : null);
const main = encode[encodeArchs[encodeArchs.length - 1]] ?? {};

log('data parallel: 1 process vs 2 processes (Gloo), 1 thread each');
const dataParallel = opts.device === 'cpu'
  ? await runChild('node', [join(benchDir, 'dataparallel.mjs'), '--batch', '8', '--steps', opts.quick ? '2' : '3']).catch((err) => ({ error: err.message }))
  : null;

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
    arch: trainArch, classes: compareC, batch: `${B}+${B}`, nCtx: train.nCtx, classTokens: train.classTokens,
    repeats: train.trainStep.repeats, fastSamplesMs: train.trainStep.fastSamplesMs, naiveSamplesMs: train.trainStep.naiveSamplesMs,
    lossFast: train.trainStep.lossFast, lossNaive: train.trainStep.lossNaive,
    lossRelDiff: train.trainStep.lossRelDiff, lossVsTermsRelDiff: train.trainStep.lossVsTermsRelDiff,
    termsFast: train.trainStep.termsFast, termsNaive: train.trainStep.termsNaive, termsMaxRelDiff: train.trainStep.termsMaxRelDiff,
    gradientMaxRelDiff: train.trainStep.gradientMaxRelDiff, sameLoss: train.trainStep.sameLoss,
    visionShareMs: train.trainStep.visionShareMs,
    fastAtRequestedBatch: { batch: memory.batch, stepMs: memory.stepMs, linear: memory.linear },
    byLinear: trainByLinear,
    bfloat16: trainBf16,
  },
  inference: { ...train.inference, arch: trainArch, classes: compareC, images: 1 },
  encodeImage: {
    imagesPerSecond: main.imagesPerSecond ?? null, onnxruntimeImagesPerSecond: main.onnxruntimeImagesPerSecond ?? null,
    vsOnnxruntime: main.vsOnnxruntime ?? null, onnxruntimeError: main.onnxruntimeError ?? (python ? null : 'no python3-torch to export the ONNX graph'),
    arch: encodeArchs[encodeArchs.length - 1], linear: main.linear ?? null,
    perModel: Object.fromEntries(Object.entries(encode).map(([k, { probe, ...rest }]) => [k, rest])),
    bfloat16: encodeBf16,
  },
  peak: { ...peakParts, gflops: peak, theoretical, samples: peaks },
  visionForward: {
    gflops, peakGflops: peak, fractionOfPeak: fraction(gflops), linear: fwd?.linear ?? null,
    byLinear: fwd ? Object.fromEntries(Object.entries(fwd.byLinear).map(([k, r]) => [k, { gflops: gflopsOf(r.batchMs), fractionOfPeak: fraction(gflopsOf(r.batchMs)) }])) : null,
    onnxruntime: ortGflops ? { gflops: ortGflops, fractionOfPeak: fraction(ortGflops) } : null,
    fractionsOf: peak ? Object.fromEntries(Object.entries(peakParts).filter(([, v]) => v).map(([k, v]) => [k, gflops / v])) : null,
    arch: gflopsArch, batch: 16, gflopPerImage: flopsPerImage / 1e9,
    flops: '2·N·3P²·W + L·(24·T·W² + 4·T²·W) + 2·W·D per image; N=(S/P)² patches, T=N+1',
    peakSource: 'the best of: median of 7 fp32 n×n products through OpenBLAS (torch::mm) and through the oneDNN linear, each ' +
      'before and after the encode runs, by the addon (same libtorch, same threads); and the theoretical FMA peak (peak.theoretical)',
  },
  gpu,
  zeroShotBf16: zeroShot,
  predict,
  resize,
  dataParallel,
  peakRssMb: memory.peakRssMb,
  peakRss: { trainFastMb: memory.peakRssMb, trainTimingBothPathsMb: train.peakRssMbBothPaths, trainBatch: memory.batch },
  notes,
};
writeFileSync(join(benchDir, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);

// ---------------------------------------------------------------------------------------------------------------
// Table

const f = (x, d = 2) => (x === null || x === undefined || Number.isNaN(x) ? '—' : Number(x).toFixed(d));
const pctOf = (x) => (x === null || x === undefined ? '—' : `${f(x * 100, 0)}%`);
const rows = [
  ['measure', 'ipclip', 'baseline', 'ratio'],
  [`train step ${trainArch} C=${compareC} B=${B}+${B} (s)`, f(results.trainStep.fastMs / 1000), `${f(results.trainStep.naiveMs / 1000)} naive`, `${f(results.trainStep.speedup, 1)}×`],
  ...(trainByLinear ? [[`train step (fast) ${trainByLinear.batch}, linear onednn vs blas (s)`,
    f(trainByLinear.onednnMs / 1000), `${f(trainByLinear.blasMs / 1000)} blas`, `${f(trainByLinear.onednnSpeedup)}×`]] : []),
  [`train step (fast) ${requestedB}+${requestedB}, bfloat16 (s)`, f(trainBf16.fastMs ? trainBf16.fastMs / 1000 : null),
    `${f(memory.stepMs / 1000)} fp32`, trainBf16.speedupVsFp32 ? `${f(trainBf16.speedupVsFp32)}×` : 'not run (no bf16 hardware)'],
  [`inference 1 image C=${compareC} (ms)`, f(results.inference.fastMs, 0), `${f(results.inference.naiveMs, 0)} naive`, `${f(results.inference.speedup, 1)}×`],
  ...Object.entries(encode).flatMap(([arch, e]) => Object.entries(e.byLinear).map(([k, r]) => [
    `encodeImage ${arch} batch 16, linear ${k}${k === e.linear ? ' (default)' : ''} (img/s)`, f(r.imagesPerSecond),
    `${f(e.onnxruntimeImagesPerSecond)} onnxruntime`, `${f(r.vsOnnxruntime)}×`])),
  ...(encodeBf16 ? [[`encodeImage ${encodeBf16.arch ?? ''} batch ${encodeBf16.batch ?? ''}, bfloat16 (img/s)`, f(encodeBf16.imagesPerSecond),
    `${f(encode[encodeBf16.arch]?.onnxruntimeImagesPerSecond)} onnxruntime fp32`, `${f(encodeBf16.vsOnnxruntime)}× (cosine to fp32 ${f(encodeBf16.cosineToFp32, 5)})`]] : []),
  [`peak fp32 (GFLOP/s): OpenBLAS / oneDNN / theoretical`, `${f(peakParts.openblasGflops, 0)} / ${f(peakParts.onednnGflops, 0)} / ${f(peakParts.theoreticalGflops, 0)}`, '', ''],
  ...(fwd ? Object.entries(results.visionForward.byLinear).map(([k, r]) => [`vision forward ${gflopsArch} batch 16, linear ${k} (GFLOP/s)`,
    f(r.gflops, 1), `${f(peak, 0)} peak`, pctOf(r.fractionOfPeak)]) : []),
  ...(ortGflops ? [[`vision forward ${gflopsArch} batch 16, onnxruntime (GFLOP/s)`, f(ortGflops, 1), `${f(peak, 0)} peak`, pctOf(fraction(ortGflops))]] : []),
  ...(zeroShot && !zeroShot.error ? [[`zero-shot synth-clip, ${zeroShot.images} images: bfloat16 vs float32 (accuracy)`,
    pctOf(zeroShot.bfloat16.accuracy), `${pctOf(zeroShot.float32.accuracy)} fp32`, `${f((zeroShot.bfloat16.accuracy - zeroShot.float32.accuracy) * 100, 1)} points (cosine ${f(zeroShot.cosineToFp32.min, 5)})`]] : []),
  ...(predict && !predict.error ? [[`ipclip predict, ${predict.images} JPEGs (img/s, end to end)`, f(predict.cli.imagesPerSecond, 1),
    `decode ${f(predict.breakdownMs.decode, 0)} / preprocess ${f(predict.breakdownMs.preprocess, 0)} / vision ${f(predict.breakdownMs.vision, 0)} / prompt+text ${f(predict.breakdownMs.promptAndText, 0)} ms`, '']] : []),
  ...(gpu ? ['float32', 'float16', 'bfloat16'].filter((k) => gpu[k] && !gpu[k].error).map((k) => [`encodeImage ${gpu.arch} batch 16 ${gpu.device} ${k} (img/s)`,
    f(gpu[k].imagesPerSecond), `${f(gpu.float32?.imagesPerSecond)} float32`, `${f(gpu[k].speedupVsFp32)}× (cosine ${f(gpu[k].cosineToFp32, 5)})`]) : []),
  resizeRow(resize),
  ...(dataParallel && !dataParallel.error ? [dataParallelRow(dataParallel)] : []),
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
const th = results.peak.theoretical;
if (th?.gflops) console.log(`theoretical peak: ${th.isa}, ${th.lanes} fp32 lanes × ${th.fmaPipes} FMA pipe(s) × 2 × ${th.cores} core(s) × ${f(th.ghz, 3)} GHz = ${f(th.gflops, 0)} GFLOP/s (${th.source})`);
for (const n of notes) console.log(`note: ${n}`);
console.log('wrote bench/results.json');
