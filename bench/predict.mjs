// Child process of the bench: `ipclip predict` end to end on a folder of generated JPEGs, and where the time goes.
//   node bench/predict.mjs [--images 1000] [--threads 2]
// The images: SynthDomains renders (64 px, the four domains and ten classes in turn), encoded as JPEG (quality 90)
// into bench/.work/predict-jpegs (kept for later runs). The prompt: an untrained IP prompt on the shipped CLIP
// (models/synth-clip) over the ten classes, saved once — its predictions are meaningless, its cost is a trained
// one's. The CLI run is timed as a whole (process start, loading, every image); the breakdown then times each stage
// in this process on the same files: decode (sharp), preprocess (resize + crop + normalise of decoded pixels),
// the vision tower (Clip.encodeImage) and the prompt + text tower (PromptModel.logits minus its vision pass, which
// takes per-layer statistics as well: approximately).
// Uses the compiled package (dist/): run `npx tsc -p tsconfig.build.json` first.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { emit, log, root, timed, workDir } from './common.mjs';

const args = Object.fromEntries(process.argv.slice(2).map((a, i, all) =>
  a.startsWith('--') ? [a.slice(2), all[i + 1] && !all[i + 1].startsWith('--') ? all[i + 1] : true] : null).filter(Boolean));
const count = Number(args.images ?? 1000);
const threads = Number(args.threads ?? 0);
const ipclip = await import(join(root, 'dist', 'index.js'));
const { Clip, PromptModel, decodeImage, preprocess, setThreads } = ipclip;
const { Rng, SYNTH_CLASSES, SYNTH_DOMAINS, renderSynthImage } = await import(join(root, 'dist', 'tools', 'index.js')); // the tools subpath
const { default: sharp } = await import('sharp');
if (threads > 0) setThreads(threads);

const dir = join(workDir, 'predict-jpegs');
mkdirSync(dir, { recursive: true });
const files = Array.from({ length: count }, (_, i) => join(dir, `${String(i).padStart(5, '0')}.jpg`));
if (!files.every((f) => existsSync(f))) {
  log(`predict: rendering ${count} JPEGs into ${dir}`);
  const rng = new Rng(4242);
  for (const [i, file] of files.entries()) {
    const domain = SYNTH_DOMAINS[i % SYNTH_DOMAINS.length];
    const cls = SYNTH_CLASSES[Math.floor(i / SYNTH_DOMAINS.length) % SYNTH_CLASSES.length];
    const { png } = await renderSynthImage(domain, cls, rng, 64);
    writeFileSync(file, await sharp(png).jpeg({ quality: 90 }).toBuffer());
  }
}
const modelFile = join(root, 'models', 'synth-clip', 'model.safetensors');
const promptFile = join(workDir, 'predict-prompt.safetensors');
const clip = await Clip.load(modelFile);
if (!existsSync(promptFile)) {
  const p = await PromptModel.create(clip, SYNTH_CLASSES, { seed: 3 });
  await p.save(promptFile);
  p.dispose();
}

// 1. The CLI, end to end.
log(`predict: ipclip predict on ${count} JPEGs`);
const t0 = performance.now();
const r = spawnSync(process.execPath, [join(root, 'bin', 'ipclip.js'), 'predict', ...files, '--checkpoint', promptFile,
  '--clip', modelFile, '--json', ...(threads > 0 ? ['--threads', String(threads)] : [])], { encoding: 'utf8', maxBuffer: 1 << 28 });
const cliMs = performance.now() - t0;
if (r.status !== 0) throw new Error(`ipclip predict failed (${r.status}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
const predictions = JSON.parse(r.stdout).length;
// The process alone (start-up, imports, loading the CLIP and the prompt): predict on one image.
const t1 = performance.now();
const one = spawnSync(process.execPath, [join(root, 'bin', 'ipclip.js'), 'predict', files[0], '--checkpoint', promptFile,
  '--clip', modelFile, '--json', ...(threads > 0 ? ['--threads', String(threads)] : [])], { encoding: 'utf8' });
const oneMs = performance.now() - t1;
if (one.status !== 0) throw new Error(`ipclip predict (one image) failed: ${one.stderr.trim().split('\n').pop()}`);

// 2. The stages, in this process.
const size = clip.config.vision.imageSize;
const prompt = await PromptModel.load(clip, promptFile);
const decode = await timed(() => Promise.all(files.map((f) => decodeImage(f))));
const pre = await timed(() => preprocess(decode.result, { size }));
await clip.encodeImage(pre.result); // warm-up
const vision = await timed(() => clip.encodeImage(pre.result, { returnStats: true }));
const logits = await timed(() => prompt.logits(pre.result));
prompt.dispose();
clip.dispose();
emit({
  images: count, predictions, model: 'models/synth-clip', imageSize: size,
  cli: { ms: cliMs, imagesPerSecond: (1000 * count) / cliMs, oneImageMs: oneMs,
    imagesPerSecondWithoutStartup: (1000 * (count - 1)) / Math.max(1, cliMs - oneMs) },
  breakdownMs: { decode: decode.ms, preprocess: pre.ms, vision: vision.ms, promptAndText: Math.max(0, logits.ms - vision.ms), logitsTotal: logits.ms },
});
