// One process of test/cpu-cache.test.ts: encodes fixed images with the fixture CLIP three times and prints the
// embeddings (as hex of their bytes) and the CPU cache's statistics, as JSON. The environment (IPCLIP_CPU_CACHE_MB)
// is the parent's choice; argv[2] is the CLIP's safetensors path.
import { createRequire } from 'node:module';

const addon = createRequire(import.meta.url)('../../build/Release/ipclip.node');
addon.setThreads(1);
const clip = await addon.loadClip(process.argv[2], { dtype: 'float32' });
const { imageSize } = clip.config.vision;
// Enough images that the input and the activations are blocks of >= 1 MiB, the ones the cache keeps.
const batch = Math.max(8, Math.ceil((3 << 20) / (12 * imageSize * imageSize)));
const data = new Float32Array(batch * 3 * imageSize * imageSize);
for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.37) * 1.5; // deterministic, no RNG
const before = addon.runtimeInfo().cpuCache;
const runs = [];
for (let r = 0; r < 3; r++) {
  const out = await clip.encodeImage(data, [batch, 3, imageSize, imageSize]);
  runs.push(Buffer.from(out.embeds.data.buffer, out.embeds.data.byteOffset, out.embeds.data.byteLength).toString('hex'));
}
const after = addon.runtimeInfo().cpuCache;
addon.releaseCpuCache();
const released = addon.runtimeInfo().cpuCache;
clip.dispose();
console.log(JSON.stringify({ runs, before, after, released }));
