// Child process of the bench: IP-CLIP training step and protected inference, fast text path vs naive.
//   node bench/train.mjs --arch ViT-B/16 --classes 65 --batch 8 --repeats 3 [--memory-only] [--device cpu]
// --memory-only [--path naive] runs one step of one path and reports only this process's peak RSS (training memory of the fast path).
// Steps run with update: false so every repeat (and both paths) starts from the same parameters: the losses
// and gradients of the two paths are compared pair by pair.
import { ARCHS, classTokens, dtypeFor, emit, loadAddon, log, median, peakRssMb, randomImages, randomLabels,
  tensorRelDiff, timed } from './common.mjs';

const args = Object.fromEntries(process.argv.slice(2).map((a, i, all) =>
  a.startsWith('--') ? [a.slice(2), all[i + 1] && !all[i + 1].startsWith('--') ? all[i + 1] : true] : null).filter(Boolean));
const arch = ARCHS[args.arch];
if (!arch) throw new Error(`unknown --arch ${args.arch}`);
const C = Number(args.classes ?? 65);
const B = Number(args.batch ?? 8);
const repeats = Number(args.repeats ?? 3);
const inferenceRepeats = Number(args['inference-repeats'] ?? 5);
const naiveBudgetMs = Number(args['naive-budget-s'] ?? 120) * 1000;
const device = args.device ?? 'cpu';
const threads = Number(args.threads ?? 0);

const addon = loadAddon();
if (threads > 0) addon.setThreads(threads);
// --dtype and --linear (the towers' compute dtype and linear engine) default to dtypeFor(device) and the addon's 'auto'.
const dtype = args.dtype ?? dtypeFor(device);
const clip = await addon.createRandomClip(arch, { seed: 7, device, dtype, ...(args.linear ? { linear: args.linear } : {}) });
const nCtx = 2 * arch.vision.layers + 4;
const tokens = await classTokens(C, arch.text.contextLength, nCtx, arch.text.vocabSize);
const S = arch.vision.imageSize;
const A = randomImages(1, B, S);
const U = randomImages(2, B, S);
const yA = randomLabels(3, B, C);
const yU = randomLabels(4, B, C);
const one = randomImages(5, 1, S);
// The step takes its loss as data: the target-specified scenario's weights under the paper preset.
const { SCENARIO_DESCRIPTORS } = await import('ipclip');
const loss = SCENARIO_DESCRIPTORS['target-specified'].loss;
const stepOpts = { preset: 'paper', unauthorized: loss.unauthorized, lossWeights: loss.weights.paper, lr: 0.01, update: false };

const prompt = (textPath) => addon.createPrompt(clip, tokens.ids, tokens.shape, { seed: 11, textPath });
const step = (p) => timed(() => p.step(A.data, A.shape, yA, U.data, U.shape, yU, stepOpts));

if (args['memory-only']) {
  const only = prompt(args.path === 'naive' ? 'naive' : 'fast');
  await step(only);
  const again = await step(only); // a second, warm step: its time is this batch size's step time
  emit({ peakRssMb: peakRssMb(), stepMs: again.ms, path: args.path === 'naive' ? 'naive' : 'fast', batch: `${B}+${B}`,
    dtype: clip.info.dtype, linear: clip.info.linear });
  process.exit(0);
}

if (args['compare-linear']) {
  // The fast step with each linear engine, interleaved in this process (blas, onednn, blas, …) after a warm-up of
  // each, so machine noise hits both alike; the text tower's backward goes through oneDNN's on `onednn`.
  const other = await addon.createRandomClip(arch, { seed: 7, device, dtype, linear: clip.info.linear === 'onednn' ? 'blas' : 'onednn' });
  const byLinear = { [clip.info.linear]: clip, [other.info.linear]: other };
  const prompts = Object.fromEntries(Object.entries(byLinear).map(([k, c]) =>
    [k, addon.createPrompt(c, tokens.ids, tokens.shape, { seed: 11, textPath: 'fast' })]));
  const samples = Object.fromEntries(Object.keys(prompts).map((k) => [k, []]));
  const losses = {};
  for (let r = 0; r <= repeats; r++) {
    for (const k of ['blas', 'onednn']) {
      const s = await step(prompts[k]);
      losses[k] = s.result.terms.loss;
      if (r > 0) samples[k].push(s.ms); // r = 0: warm-up
      log(`  linear ${k} step ${r === 0 ? 'warm-up' : r}: ${(s.ms / 1000).toFixed(2)} s`);
    }
  }
  emit({ batch: `${B}+${B}`, repeats, samplesMs: samples, blasMs: median(samples.blas), onednnMs: median(samples.onednn),
    onednnSpeedup: median(samples.blas) / median(samples.onednn), lossRelDiff: Math.abs(losses.blas - losses.onednn) / Math.abs(losses.blas) });
  process.exit(0);
}

const fast = prompt('fast');
const naive = prompt('naive');
const warmNaive = args['warm-naive'] === true || args['warm-naive'] === 'true';

// Warm-up: allocator, thread pool and lazy initialisation out of the timed samples.
log(`train ${args.arch} C=${C} B=${B}+${B}: warm-up (fast${warmNaive ? ' and naive' : ''})`);
await step(fast);
if (warmNaive) await step(naive);

// Interleaved samples (fast, naive, fast, naive, …) so machine noise hits both paths alike. A naive sample that
// exceeds the budget ends the naive sampling: the ratio then rests on fewer naive samples (reported).
const fastMs = [], naiveMs = [];
const relDiff = (a, b) => Math.abs(a - b) / Math.max(Math.abs(a), Math.abs(b), 1e-30);
// Per gradient tensor max|a-b| / max|a|; a gradient that is zero in exact arithmetic (image_tokens.lin.bias: a
// uniform shift of every width entry, which each LayerNorm after it removes) holds only round-off, so it is
// measured against the largest gradient entry of the step instead of its own.
function gradientsRelDiff(ga, gb) {
  const maxAbs = (t) => t.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const global = Math.max(...Object.values(ga).map(maxAbs));
  let worst = 0;
  for (const [k, g] of Object.entries(ga)) {
    const own = Math.max(maxAbs(g), maxAbs(gb[k]));
    const d = tensorRelDiff(g.data, gb[k].data) * own;
    worst = Math.max(worst, d / (own < 1e-5 * global ? global : own));
  }
  return worst;
}
let lossRelDiff = 0, termsRelDiff = 0, gradRelDiff = 0;
let lossFast = NaN, lossNaive = NaN;
let termsFast = null, termsNaive = null;
for (let r = 0; r < repeats; r++) {
  const f = await step(fast);
  fastMs.push(f.ms);
  lossFast = f.result.terms.loss;
  const gradsFast = fast.gradients();
  log(`  fast step ${r + 1}/${repeats}: ${(f.ms / 1000).toFixed(2)} s (loss ${lossFast.toFixed(6)})`);
  if (naiveMs.length === 0 || naiveMs[naiveMs.length - 1] < naiveBudgetMs) {
    const n = await step(naive);
    naiveMs.push(n.ms);
    lossNaive = n.result.terms.loss;
    log(`  naive step ${naiveMs.length}: ${(n.ms / 1000).toFixed(2)} s (loss ${lossNaive.toFixed(6)})`);
    lossRelDiff = Math.max(lossRelDiff, relDiff(lossFast, lossNaive));
    termsFast = f.result.terms;
    termsNaive = n.result.terms;
    for (const [k, v] of Object.entries(f.result.terms)) termsRelDiff = Math.max(termsRelDiff, relDiff(v, n.result.terms[k]));
    gradRelDiff = Math.max(gradRelDiff, gradientsRelDiff(gradsFast, naive.gradients()));
  }
}

// Protected inference of one image, interleaved the same way (cheap enough for every repeat on both paths).
log(`inference ${args.arch} C=${C}, one image`);
await fast.logits(one.data, one.shape);
await naive.logits(one.data, one.shape);
const infFast = [], infNaive = [];
let logitsRelDiff = 0;
for (let r = 0; r < inferenceRepeats; r++) {
  const f = await timed(() => fast.logits(one.data, one.shape));
  const n = await timed(() => naive.logits(one.data, one.shape));
  infFast.push(f.ms);
  infNaive.push(n.ms);
  logitsRelDiff = Math.max(logitsRelDiff, tensorRelDiff(f.result.logits.data, n.result.logits.data));
}

// The share of a step that no text path can change: the frozen vision tower with statistics over A and U.
const both = randomImages(6, 2 * B, S);
await clip.encodeImage(both.data, both.shape, { stats: true });
const visionSamples = [];
for (let r = 0; r < 2; r++) visionSamples.push((await timed(() => clip.encodeImage(both.data, both.shape, { stats: true }))).ms);
const visionMs = median(visionSamples);

const fm = median(fastMs), nm = median(naiveMs);
emit({
  arch: args.arch, classes: C, batch: `${B}+${B}`, nCtx, classTokens: tokens.source, device, dtype: clip.info.dtype, linear: clip.info.linear,
  threads: addon.runtimeInfo().threads,
  trainStep: {
    fastMs: fm, naiveMs: nm, speedup: nm / fm, fastSamplesMs: fastMs, naiveSamplesMs: naiveMs,
    repeats: { fast: fastMs.length, naive: naiveMs.length, warmNaive },
    lossFast, lossNaive, lossRelDiff, termsFast, termsNaive,
    // The total is a signed sum of terms of order 1 and can nearly cancel: its difference against the terms' scale.
    lossVsTermsRelDiff: termsFast ? Math.abs(lossFast - lossNaive) /
      Object.entries(termsFast).filter(([k]) => k !== 'loss').reduce((s, [, v]) => s + Math.abs(v), 0) : null,
    termsMaxRelDiff: termsRelDiff, gradientMaxRelDiff: gradRelDiff,
    sameLoss: lossRelDiff <= 1e-5,
    visionShareMs: visionMs,
  },
  inference: {
    fastMs: median(infFast), naiveMs: median(infNaive), speedup: median(infNaive) / median(infFast),
    repeats: inferenceRepeats, logitsMaxRelDiff: logitsRelDiff, sameLogits: logitsRelDiff <= 1e-5,
  },
  peakRssMbBothPaths: peakRssMb(),
});
fast.dispose();
naive.dispose();
clip.dispose();
