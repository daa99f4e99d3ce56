// Child process of the bench: what bfloat16 costs in accuracy. The shipped CLIP (models/synth-clip) in float32 and in
// bfloat16 on the same held-out SynthDomains images (a seed the model was not trained on): zero-shot accuracy with
// the plain template "a photo of a {class}." per domain and overall, and the cosine of each image embedding to its
// float32 one, also on the fixture photos of ../shared/fixtures/text-image when present.
//   node bench/zeroshot.mjs [--per-class 10] [--threads 2]
// Uses the compiled package (dist/): run `npx tsc -p tsconfig.build.json` first.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { emit, log, root, workDir } from './common.mjs';

const args = Object.fromEntries(process.argv.slice(2).map((a, i, all) =>
  a.startsWith('--') ? [a.slice(2), all[i + 1] && !all[i + 1].startsWith('--') ? all[i + 1] : true] : null).filter(Boolean));
const perClass = Number(args['per-class'] ?? 10);
const threads = Number(args.threads ?? 0);
const ipclip = await import(join(root, 'dist', 'index.js'));
const { Clip, preprocess, setThreads } = ipclip;
const { generateSynthDomains } = await import(join(root, 'dist', 'tools', 'index.js')); // the tools subpath
if (threads > 0) setThreads(threads);

const modelFile = join(root, 'models', 'synth-clip', 'model.safetensors');
const synth = await generateSynthDomains({ out: join(workDir, 'synth-zeroshot'), perClass, seed: 1009, size: 64 });
const items = [];
for (const domain of synth.domains) {
  synth.classes.forEach((cls, label) => {
    const dir = join(synth.root, domain, cls);
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.png')).sort()) items.push({ file: join(dir, f), domain, label });
  });
}
const fixtureDir = join(root, '..', 'shared', 'fixtures', 'text-image');
const fixtures = existsSync(fixtureDir) ? readdirSync(fixtureDir).filter((f) => f.endsWith('.png')).sort().map((f) => join(fixtureDir, f)) : [];

const unit = (t) => {
  const [n, d] = t.shape;
  const out = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += t.data[i * d + j] ** 2;
    s = Math.sqrt(s) || 1;
    for (let j = 0; j < d; j++) out[i * d + j] = t.data[i * d + j] / s;
  }
  return { data: out, n, d };
};
const article = (w) => (/^[aeiou]/i.test(w) ? 'an' : 'a');

async function run(dtype) {
  const clip = await Clip.load(modelFile, { dtype });
  const size = clip.config.vision.imageSize;
  const t0 = performance.now();
  const img = unit(await clip.encodeImage(await preprocess(items.map((x) => x.file), { size })));
  const txt = unit(await clip.encodeText(synth.classes.map((c) => `a photo of ${article(c)} ${c}.`)));
  const ms = performance.now() - t0;
  const correct = {};
  const total = {};
  items.forEach((item, i) => {
    let best = -1, bestScore = -Infinity;
    for (let c = 0; c < txt.n; c++) {
      let s = 0;
      for (let j = 0; j < img.d; j++) s += img.data[i * img.d + j] * txt.data[c * txt.d + j];
      if (s > bestScore) { bestScore = s; best = c; }
    }
    correct[item.domain] = (correct[item.domain] ?? 0) + (best === item.label ? 1 : 0);
    total[item.domain] = (total[item.domain] ?? 0) + 1;
  });
  const fix = fixtures.length ? unit(await clip.encodeImage(await preprocess(fixtures, { size }))) : null;
  const info = clip.info;
  clip.dispose();
  const perDomain = Object.fromEntries(Object.keys(total).map((d) => [d, correct[d] / total[d]]));
  const accuracy = Object.values(correct).reduce((a, b) => a + b, 0) / items.length;
  log(`zero-shot synth-clip ${dtype}: ${(100 * accuracy).toFixed(1)}% over ${items.length} images (${ms.toFixed(0)} ms)`);
  return { dtype: info.dtype, accuracy, perDomain, ms, img, fix };
}

function cosines(a, b) {
  const out = [];
  for (let i = 0; i < a.n; i++) {
    let s = 0;
    for (let j = 0; j < a.d; j++) s += a.data[i * a.d + j] * b.data[i * b.d + j];
    out.push(s);
  }
  return out;
}

const f32 = await run('float32');
const bf16 = await run('bfloat16');
const cos = cosines(bf16.img, f32.img);
const fixCos = f32.fix ? cosines(bf16.fix, f32.fix) : [];
const strip = ({ img, fix, ...rest }) => rest;
emit({
  model: 'models/synth-clip', images: items.length, perClass, seed: 1009, template: 'a photo of a {class}.',
  float32: strip(f32), bfloat16: strip(bf16),
  accuracyPointsBf16MinusFp32: 100 * (bf16.accuracy - f32.accuracy),
  cosineToFp32: {
    min: Math.min(...cos), mean: cos.reduce((a, b) => a + b, 0) / cos.length,
    fixtures: fixCos.length ? { images: fixCos.length, min: Math.min(...fixCos) } : null,
  },
});
