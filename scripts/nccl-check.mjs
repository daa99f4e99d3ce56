#!/usr/bin/env node
// NCCL on one GPU (scripts/gpu-check.sh runs it where fewer than 2 GPUs are present; not part of CI: CI has no
// GPU). A 1-rank NCCL group cannot show cross-rank agreement, but it drives every NCCL code path a multi-GPU job
// uses: the rendezvous, each collective on CUDA tensors, the step's flattened gradient all-reduce and the
// synchronised BatchNorm of target-specified training. Expectations: a 1-rank sum, gather and broadcast return
// their input, and a target-specified fit through the group ends with the parameters of the same fit without it.
// In float64: the two differ only in rounding (the group path scales gradients by the batch size and computes the
// BatchNorm variance in two passes), which float32 and Adam amplify over an epoch to ~5e-3 of scale (measured
// with gloo on the CPU) but float64 keeps near 1e-11.
//   node scripts/nccl-check.mjs [--data DIR] [--backend gloo --device cpu]
// (DIR: a SynthDomains root, default .cache/synth, rendered if missing; gloo on the CPU checks the script itself.)
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Clip, DataParallel, DomainDataset, IPTrainer, PromptModel } from '../dist/index.js';
import { generateSynthDomains } from '../dist/tools/index.js';

const arg = (name, fallback) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : fallback; };
const root = arg('--data', join('.cache', 'synth'));
const backend = arg('--backend', 'nccl');
const device = arg('--device', 'cuda');
const fail = (msg) => { console.error(`nccl-check: FAILED ${msg}`); process.exit(1); };

const group = await DataParallel.join({ backend, rank: 0, worldSize: 1, localRank: 0, masterAddr: '127.0.0.1', masterPort: 29533, timeoutMs: 60_000 });
const v = Float64Array.from([1, 2.5, -3]);
const sum = await group.group.allReduce(v);
const [gathered] = await group.group.allGather(v);
const cast = await group.group.broadcast(v, 0);
for (const [name, got] of [['allReduce', sum], ['allGather', gathered], ['broadcast', cast]]) {
  if (Array.from(got).join() !== Array.from(v).join()) fail(`${name} of 1 rank returned ${Array.from(got)}`);
}
await group.group.barrier();
console.log(`nccl-check: 1-rank allReduce, allGather, broadcast, barrier on ${backend}: ok`);

await generateSynthDomains({ out: root, perClass: 8, seed: 0, size: 64 });
const photo = await DomainDataset.fromFolder(root, { domain: 'photo' });
const sketch = await DomainDataset.fromFolder(root, { domain: 'sketch' });
const clip = await Clip.load('models/synth-clip', { device, dtype: 'float64' });
const fit = async (distributed) => {
  const prompt = await PromptModel.create(clip, photo.classNames, { seed: 0 });
  const out = join('/tmp', `nccl-check-${distributed ? 'group' : 'alone'}`);
  rmSync(out, { recursive: true, force: true });
  await new IPTrainer(prompt, { scenario: 'target-specified', epochs: 1, batchSize: 8, lr: 0.01, seed: 0, trainEnhancer: true, ...(distributed ? { distributed } : {}) })
    .fit({ authorized: photo, unauthorized: sketch });
  const state = await prompt.state();
  prompt.dispose();
  return state;
};
const alone = await fit(undefined);
const viaGroup = await fit(group);
let worst = 0;
for (const [k, t] of Object.entries(alone)) {
  if (k.includes('feat_')) continue;
  const u = viaGroup[k].data;
  let diff = 0, scale = 0;
  for (let i = 0; i < t.data.length; i++) { diff = Math.max(diff, Math.abs(t.data[i] - u[i])); scale = Math.max(scale, Math.abs(t.data[i])); }
  worst = Math.max(worst, scale > 0 ? diff / scale : diff);
}
console.log(`nccl-check: target-specified fit (${device}) through a 1-rank ${backend} group vs none: parameters ${worst.toExponential(2)} of scale apart`);
if (!(worst < 1e-8)) fail('the fit through the group differs from the fit without it');
await group.close();
clip.dispose();
console.log('nccl-check: done');
