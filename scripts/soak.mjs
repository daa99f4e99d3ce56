#!/usr/bin/env node
// Soak test: N (default 10,000) encodeImage calls on clip-tiny, checking every result against the first and
// sampling resident memory after a warm-up and at the end. Prints the figures docs/reliability.md records and
// exits 1 when memory grew by 5% or more after the warm-up, or a result drifted.
//   node scripts/soak.mjs [calls] [warmup]       (run `npm run build:native` first; node --expose-gc is optional)
// It drives the raw addon (build/Release/ipclip.node, or $IPCLIP_ADDON) so it needs no TypeScript build; the
// JS-level Clip wrapper is covered by the 1,000-call test in test/reliability/concurrency.test.ts.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const calls = Number(process.argv[2] ?? 10000);
const warmup = Number(process.argv[3] ?? Math.min(1000, Math.floor(calls / 10)));
const addonFile = process.env.IPCLIP_ADDON ? resolve(process.env.IPCLIP_ADDON) : join(root, 'build', 'Release', 'ipclip.node');
const weights = join(root, '..', 'shared', 'fixtures', 'clip-tiny', 'openai.safetensors');
for (const f of [addonFile, weights]) if (!existsSync(f)) { console.error(`soak: ${f} is missing`); process.exit(2); }

const addon = createRequire(import.meta.url)(addonFile);
const model = await addon.loadClip(weights, {});
const size = model.config.vision.imageSize;
// Four deterministic inputs (no RNG needed: a fixed pattern per input).
const inputs = Array.from({ length: 4 }, (_, k) => Float32Array.from({ length: 3 * size * size }, (_, i) => Math.sin(i * 0.01 * (k + 1))));
const expected = [];
for (const x of inputs) expected.push((await model.encodeImage(x, [1, 3, size, size], {})).embeds.data);

const mib = (b) => (b / 2 ** 20).toFixed(1);
const gc = globalThis.gc;
let drift = 0;
let before = 0;
let peak = 0;
const t0 = Date.now();
for (let i = 0; i < calls; i++) {
  if (i === warmup) { gc?.(); before = process.memoryUsage().rss; }
  const k = i % 4;
  const out = (await model.encodeImage(inputs[k], [1, 3, size, size], {})).embeds.data;
  for (let j = 0; j < out.length; j++) if (out[j] !== expected[k][j]) { drift++; break; }
  if (i % 500 === 0) peak = Math.max(peak, process.memoryUsage().rss);
}
gc?.();
const after = process.memoryUsage().rss;
model.dispose();
const growth = (after - before) / before;
console.log(JSON.stringify({
  calls, warmup, gcExposed: typeof gc === 'function', rssAfterWarmupMiB: +mib(before), rssEndMiB: +mib(after),
  peakSampledMiB: +mib(Math.max(peak, after)), growthPercent: +(growth * 100).toFixed(2), driftedResults: drift,
  seconds: +((Date.now() - t0) / 1000).toFixed(1),
}));
process.exit(growth < 0.05 && drift === 0 ? 0 : 1);
