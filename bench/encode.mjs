// Child process of the bench: image-tower throughput of one runtime on one exported model.
//   node bench/encode.mjs --runtime addon|ort --model bench/.work/vit-b-16 --batch 16 --repeats 5 --threads 2
//     [--dtype float32|bfloat16|float16] [--linear auto|onednn|blas]   (addon only; dtype default: dtypeFor(device))
// addon: loadClip(<model>.safetensors) then ClipModel.encodeImage; ort: onnxruntime-node on <model>.onnx (same
// graph, same weights, written together by export_onnx.py). Also returns the embeddings of two fixed images so
// the orchestrator can check both runtimes compute the same function.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { dtypeFor, emit, loadAddon, log, median, peakRssMb, randomImages, timed, workDir } from './common.mjs';

const args = Object.fromEntries(process.argv.slice(2).map((a, i, all) =>
  a.startsWith('--') ? [a.slice(2), all[i + 1] && !all[i + 1].startsWith('--') ? all[i + 1] : true] : null).filter(Boolean));
const runtime = args.runtime;
const batch = Number(args.batch ?? 16);
const repeats = Number(args.repeats ?? 5);
const threads = Number(args.threads ?? 1);
const size = Number(args.image ?? 224);
const device = args.device ?? 'cpu';
const dtype = args.dtype ?? dtypeFor(device);

const images = randomImages(21, batch, size);
const probe = randomImages(22, 2, size);

let run; // (data, shape) => Promise<Float32Array of embeddings>
let describe = {};
if (runtime === 'addon' && args.linear === 'both') {
  // Both linear engines in this process, samples interleaved (blas, onednn, blas, …) after a warm-up of each, so
  // machine noise hits both alike.
  const addon = loadAddon();
  addon.setThreads(threads);
  const clips = {};
  for (const linear of ['blas', 'onednn']) clips[linear] = await addon.loadClip(`${args.model}.safetensors`, { device, dtype, threads, linear });
  const samples = { blas: [], onednn: [] };
  log(`encode addon (${dtype}, linear blas and onednn interleaved) ${args.model.split('/').pop()} batch ${batch}: warm-up`);
  for (const c of Object.values(clips)) await c.encodeImage(images.data, images.shape);
  for (let r = 0; r < repeats; r++) {
    for (const [k, c] of Object.entries(clips)) samples[k].push((await timed(() => c.encodeImage(images.data, images.shape))).ms);
  }
  const byLinear = {};
  for (const [k, c] of Object.entries(clips)) {
    const ms = median(samples[k]);
    log(`  addon linear ${k}: ${(ms / 1000).toFixed(2)} s per batch (${((batch * 1000) / ms).toFixed(2)} images/s)`);
    byLinear[k] = { runtime, dtype: c.info.dtype, linear: c.info.linear, batch, repeats, batchMs: ms, samplesMs: samples[k],
      imagesPerSecond: (batch * 1000) / ms, probe: Array.from((await c.encodeImage(probe.data, probe.shape)).embeds.data) };
  }
  emit({ byLinear, peakRssMb: peakRssMb() });
  process.exit(0);
}
if (runtime === 'addon') {
  const addon = loadAddon();
  addon.setThreads(threads);
  const clip = await addon.loadClip(`${args.model}.safetensors`, { device, dtype, threads, ...(args.linear ? { linear: args.linear } : {}) });
  run = async (data, shape) => (await clip.encodeImage(data, shape)).embeds.data;
  describe = { dtype: clip.info.dtype, linear: clip.info.linear, device: clip.info.device, threads: addon.runtimeInfo().threads };
} else if (runtime === 'ort') {
  const ort = createRequire(join(workDir, 'node_modules', 'x.js'))('onnxruntime-node');
  const session = await ort.InferenceSession.create(`${args.model}.onnx`, {
    executionProviders: [device.startsWith('cuda') ? 'cuda' : 'cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
  });
  run = async (data, shape) => {
    const out = await session.run({ pixels: new ort.Tensor('float32', data, shape) });
    return out.embeds.data;
  };
  describe = { version: ort.env.versions?.node ?? 'unknown', threads, device };
} else {
  throw new Error('--runtime must be addon or ort');
}

log(`encode ${runtime}${describe.linear ? ` (${describe.dtype}, linear ${describe.linear})` : ''} ${args.model.split('/').pop()} batch ${batch}: warm-up`);
await run(images.data, images.shape);
const samples = [];
for (let r = 0; r < repeats; r++) samples.push((await timed(() => run(images.data, images.shape))).ms);
const ms = median(samples);
log(`  ${runtime}: ${(ms / 1000).toFixed(2)} s per batch (${((batch * 1000) / ms).toFixed(2)} images/s)`);
emit({
  runtime, ...describe, batch, repeats, batchMs: ms, samplesMs: samples, imagesPerSecond: (batch * 1000) / ms,
  probe: Array.from(await run(probe.data, probe.shape)), peakRssMb: peakRssMb(),
});
