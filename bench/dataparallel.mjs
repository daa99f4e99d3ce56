// Data-parallel scaling on this machine (bench/README.md, part 9): the same global batch of G + G images per
// step in one process, and split over 2 processes (G/2 + G/2 each, Gloo over 127.0.0.1), 1 thread per process.
//   node bench/dataparallel.mjs [--arch quick-train] [--batch 8] [--steps 4]           the comparison (JSON)
//   node bench/dataparallel.mjs --rank R --world N --port P --batch B [--steps S]      one rank (internal)
//   node bench/dataparallel.mjs --arch ViT-B/16 --cache-fill 32                         the feature cache's fill
// A rank times S training steps after a warm-up one (median), and then S all-reduces of a buffer of the
// prompt's gradient size alone (the communication part of a step, measured on its own).
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { ARCHS, classTokens, emit, loadAddon, log, median, randomImages, randomLabels, timed } from './common.mjs';

const args = Object.fromEntries(process.argv.slice(2).map((a, i, all) =>
  a.startsWith('--') ? [a.slice(2), all[i + 1] && !all[i + 1].startsWith('--') ? all[i + 1] : true] : null).filter(Boolean));
const archName = args.arch ?? 'quick-train';
const arch = ARCHS[archName];
if (!arch) throw new Error(`unknown --arch ${archName}`);
const steps = Number(args.steps ?? 4);
const C = Number(args.classes ?? 10);

async function rank(r, world, port, B) {
  const addon = loadAddon();
  addon.setThreads(1);
  const clip = await addon.createRandomClip(arch, { seed: 7, device: 'cpu', dtype: 'float32' });
  const tokens = await classTokens(C, arch.text.contextLength, 2 * arch.vision.layers + 4, arch.text.vocabSize);
  const prompt = addon.createPrompt(clip, tokens.ids, tokens.shape, { seed: 11, textPath: 'fast' });
  const S = arch.vision.imageSize;
  let group = null;
  if (world > 1) {
    group = await addon.createProcessGroup({ backend: 'gloo', rank: r, worldSize: world, masterAddr: '127.0.0.1', masterPort: port, timeoutMs: 600_000 });
    await prompt.attachGroup(group);
  }
  if (args['cache-fill'] !== undefined) return cacheFill(prompt, group, r, world, Number(args['cache-fill']), S);
  // Rank r's slice of the global batch: images seeded by rank, so the ranks see different samples.
  const A = randomImages(100 + r, B, S), U = randomImages(200 + r, B, S);
  const yA = randomLabels(300 + r, B, C), yU = randomLabels(400 + r, B, C);
  const { SCENARIO_DESCRIPTORS } = await import('ipclip');
  const loss = SCENARIO_DESCRIPTORS['target-specified'].loss;
  const stepOpts = { preset: 'paper', unauthorized: true, lossWeights: loss.weights.paper, lr: 0.001, keepGradients: true };
  const step = () => timed(() => prompt.step(A.data, A.shape, yA, U.data, U.shape, yU, stepOpts));
  await step(); // warm-up
  const stepMs = [];
  for (let i = 0; i < steps; i++) stepMs.push((await step()).ms);
  const gradElements = Object.values(prompt.gradients()).reduce((n, t) => n + t.data.length, 0);
  const allReduceMs = [];
  if (group) {
    const buf = new Float64Array(Math.ceil(gradElements / 2)); // the step reduces fp32: the same bytes as half as many doubles
    for (let i = 0; i < steps; i++) allReduceMs.push((await timed(() => group.allReduce(buf))).ms);
    await group.close();
  }
  emit({ rank: r, world, batch: B, stepMs: median(stepMs), samplesMs: stepMs, gradElements, allReduceMs: group ? median(allReduceMs) : null });
}

// featureCache over ranks: this rank runs the vision tower on its contiguous share of n images (4 per call), then
// shareFeatures all-gathers every rank's rows.
async function cacheFill(prompt, group, r, world, n, S) {
  const all = randomImages(5, n, S);
  const plane = 3 * S * S;
  const [from, to] = [Math.floor((r * n) / world), Math.floor(((r + 1) * n) / world)];
  const encode = await timed(async () => {
    for (let i = from; i < to; i += 4) {
      const j = Math.min(to, i + 4);
      await prompt.cacheFeatures('authorized', n, Int32Array.from({ length: j - i }, (_, k) => i + k), all.data.subarray(i * plane, j * plane), [j - i, 3, S, S]);
    }
  });
  const share = group ? (await timed(() => prompt.shareFeatures('authorized'))).ms : 0;
  if (group) await group.close();
  emit({ rank: r, world, images: to - from, encodeMs: encode.ms, shareMs: share });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
  });
}

function child(argv) {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [fileURLToPath(import.meta.url), ...argv], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, OMP_NUM_THREADS: '1' } });
    let out = '';
    c.stdout.on('data', (d) => { out += d; });
    c.on('close', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop())) : reject(new Error(`rank failed (exit ${code})`))));
  });
}

if (args.rank !== undefined) {
  await rank(Number(args.rank), Number(args.world), Number(args.port), Number(args.batch));
  process.exit(0);
}

if (args['cache-fill'] !== undefined) {
  // The fill of the feature cache: 1 process encoding all n images against 2 ranks encoding half each and then
  // exchanging them (the slower rank's encode + share), interleaved as below.
  const n = Number(args['cache-fill']);
  const common = ['--arch', archName, '--cache-fill', String(n), '--batch', '0'];
  const one = [], two = [], share = [];
  for (let round = 0; round < 2; round++) {
    log(`dataparallel ${archName}: feature cache fill of ${n} images, 1 process (round ${round + 1})`);
    one.push((await child(['--rank', '0', '--world', '1', '--port', '0', ...common])).encodeMs);
    log(`dataparallel ${archName}: feature cache fill, 2 processes × ${n / 2} + share (round ${round + 1})`);
    const port = await freePort();
    const ranks = await Promise.all([0, 1].map((r) => child(['--rank', String(r), '--world', '2', '--port', String(port), ...common])));
    two.push(Math.max(...ranks.map((x) => x.encodeMs + x.shareMs)));
    share.push(Math.max(...ranks.map((x) => x.shareMs)));
  }
  emit({ arch: archName, images: n, oneProcessMs: median(one), twoProcessesMs: median(two), shareMs: median(share), speedup: median(one) / median(two), samples: { one, two } });
  process.exit(0);
}

const G = Number(args.batch ?? 8);
const common = ['--arch', archName, '--steps', String(steps), '--classes', String(C)];
// Interleaved: 1 process, 2 processes, 1, 2, so the machine's load falls on both alike.
const one = [], two = [];
let gradElements = 0, allReduceMs = [];
for (let round = 0; round < 2; round++) {
  log(`dataparallel ${archName} ${G}+${G} per step: 1 process (round ${round + 1})`);
  one.push((await child(['--rank', '0', '--world', '1', '--port', '0', '--batch', String(G), ...common])).stepMs);
  log(`dataparallel ${archName}: 2 processes × ${G / 2}+${G / 2} (round ${round + 1})`);
  const port = await freePort();
  const ranks = await Promise.all([0, 1].map((r) => child(['--rank', String(r), '--world', '2', '--port', String(port), '--batch', String(G / 2), ...common])));
  two.push(Math.max(...ranks.map((x) => x.stepMs)));
  gradElements = ranks[0].gradElements;
  allReduceMs.push(ranks[0].allReduceMs);
}
const oneMs = median(one), twoMs = median(two);
emit({
  arch: archName, classes: C, globalBatch: `${G}+${G}`, steps, oneProcessMs: oneMs, twoProcessesMs: twoMs,
  speedup: oneMs / twoMs, scalingEfficiency: oneMs / twoMs / 2, gradElements, gradMb: (gradElements * 4) / 2 ** 20,
  allReduceMs: median(allReduceMs), allReduceShare: median(allReduceMs) / twoMs, samples: { one, two },
});
