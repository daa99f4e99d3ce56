// Child process of the bench: CLIP's resize of a 12 MP photo (4000×3000 → 299×224, the shorter side to 224)
// with the addon's PIL-exact resampler against sharp's cubic resize, interleaved in one process.
//   node bench/resize.mjs [--repeats 7]
// Both get the same raw RGB pixels (no decoding) and run at their defaults: the addon on a libuv worker
// thread that splits the rows over up to 4 threads (also timed on 1 thread), sharp on libvips' thread pool
// (sharp.concurrency(): 1 on glibc without jemalloc). Reports the medians of wall time and of process CPU
// time per resize, and how far sharp's result is from PIL's (mean |Δ| after CLIP's normalisation).
import { createRequire } from 'node:module';
import os from 'node:os';
import { emit, loadAddon, log, makeRng, median } from './common.mjs';

const args = process.argv.slice(2);
const at = args.indexOf('--repeats');
const repeats = at >= 0 ? Number(args[at + 1]) : 7;
if (!Number.isInteger(repeats) || repeats < 1 || repeats > 100) throw new Error('--repeats must be an integer in [1,100]');

const sharp = createRequire(import.meta.url)('sharp');
const addon = loadAddon();
const W = 4000, H = 3000, OW = 299, OH = 224;

// A photo-like image: smooth gradients, a hard-edged block, fine stripes and a little noise.
const rng = makeRng(31);
const img = new Uint8Array(W * H * 3);
for (let y = 0; y < H; y++) {
  for (let x = 0; x < W; x++) {
    const i = (y * W + x) * 3;
    const block = x > 1200 && x < 2200 && y > 800 && y < 1900;
    img[i] = block ? 230 : (x * 255) / W + 8 * rng.next();
    img[i + 1] = (y * 255) / H;
    img[i + 2] = (x >> 3) % 2 ? 200 : 40;
  }
}

async function native() {
  return addon.resizeBicubic(img, W, H, OW, OH);
}
async function native1() {
  return addon.resizeBicubic(img, W, H, OW, OH, 1);
}
async function viaSharp() {
  return sharp(img, { raw: { width: W, height: H, channels: 3 } })
    .resize(OW, OH, { fit: 'fill', kernel: 'cubic', fastShrinkOnLoad: false }).raw().toBuffer();
}

async function sample(fn) {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const out = await fn();
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const c = process.cpuUsage(c0);
  return { wallMs, cpuMs: (c.user + c.system) / 1000, out };
}

log(`resize: ${W}×${H} → ${OW}×${OH}, native PIL-exact vs sharp, ${repeats} interleaved samples each`);
const a = await native(), b = await viaSharp(); // warm-up (and the outputs compared below)
const nat = [], nat1 = [], shp = [];
for (let r = 0; r < repeats; r++) {
  nat.push(await sample(native));
  shp.push(await sample(viaSharp));
  nat1.push(await sample(native1));
}
const STD = [0.26862954, 0.26130258, 0.27577711];
let diff = 0;
for (let i = 0; i < a.length; i++) diff += Math.abs(a[i] - b[i]) / (255 * STD[i % 3]);
const m = (xs, k) => median(xs.map((s) => s[k]));
const result = {
  input: `${W}x${H}`, output: `${OW}x${OH}`, repeats,
  nativeMs: m(nat, 'wallMs'), sharpMs: m(shp, 'wallMs'), nativeOneThreadMs: m(nat1, 'wallMs'),
  nativeCpuMs: m(nat, 'cpuMs'), sharpCpuMs: m(shp, 'cpuMs'), nativeOneThreadCpuMs: m(nat1, 'cpuMs'),
  nativeThreads: Math.min(os.availableParallelism(), 4),
  sharpConcurrency: sharp.concurrency(), cpus: os.availableParallelism(),
  sharpMeanAbsDiffVsPil: diff / a.length,
};
result.speedupVsSharp = result.sharpMs / result.nativeMs;
result.oneThreadSpeedupVsSharp = result.sharpMs / result.nativeOneThreadMs;
result.cpuSpeedupVsSharp = result.sharpCpuMs / result.nativeCpuMs;
emit(result);
