#!/usr/bin/env node
// Reproduces the shipped small CLIP (models/synth-clip/): renders SynthDomains, learns a BPE vocabulary from the
// captions, pretrains both towers contrastively, evaluates zero-shot per domain on held-out images and writes the
// weights, config, vocabulary, eval.json and the model card README.md.
//   node scripts/pretrain.mjs [--out models/synth-clip] [--data .cache/synth-pretrain] [--train-per-class 400]
//                             [--test-per-class 50] [--epochs 18] [--batch-size 128] [--lr 1e-3] [--seed 0]
//                             [--threads 2] [--merges 300] [--render-size 64] [--image-size 32] [--patch-size 8]
//                             [--vision-layers 4] [--fade 0] [--fillers 0] [--quiet]
// Needs the built addon and the compiled library (dist/, `npm run build`): it imports the package itself
// (`ipclip`, `ipclip/tools`, resolved through package.json "exports"), as any user script would.
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

const usage = () => readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 8).map((l) => l.replace(/^\/\/ ?/, '')).join('\n');
let args;
try {
  ({ values: args } = parseArgs({ options: {
    out: { type: 'string', default: join(root, 'models', 'synth-clip') },
    data: { type: 'string', default: join(root, '.cache', 'synth-pretrain') },
    'train-per-class': { type: 'string', default: '400' },
    'test-per-class': { type: 'string', default: '50' },
    epochs: { type: 'string', default: '18' },
    'batch-size': { type: 'string', default: '128' },
    lr: { type: 'string', default: '1e-3' },
    seed: { type: 'string', default: '0' },
    threads: { type: 'string', default: String(Math.min(2, cpus().length)) },
    merges: { type: 'string', default: '300' },
    'render-size': { type: 'string', default: '64' },
    'image-size': { type: 'string', default: '32' },
    'patch-size': { type: 'string', default: '8' },
    'vision-layers': { type: 'string', default: '4' },
    fade: { type: 'string', default: '0' },
    fillers: { type: 'string', default: '0' },
    quiet: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  } }));
} catch (err) {
  console.error(`pretrain: ${err.message}\n\n${usage()}`);
  process.exit(2);
}
if (args.help) { console.log(usage()); process.exit(0); }
const int = (name) => {
  const v = Number(args[name]);
  if (!Number.isInteger(v) || v < 0) { console.error(`pretrain: --${name} must be a non-negative integer`); process.exit(2); }
  return v;
};
const opt = {
  trainPer: int('train-per-class'), testPer: int('test-per-class'), epochs: int('epochs'), batchSize: int('batch-size'),
  lr: Number(args.lr), seed: int('seed'), threads: int('threads'), merges: int('merges'), renderSize: int('render-size'),
  imageSize: int('image-size'), patchSize: int('patch-size'), visionLayers: int('vision-layers'), fade: Number(args.fade), fillers: int('fillers'),
};
if (!(opt.lr > 0)) { console.error('pretrain: --lr must be a positive number'); process.exit(2); }
if (!(opt.fade >= 0 && opt.fade <= 1)) { console.error('pretrain: --fade must be a fraction in [0, 1]'); process.exit(2); }
if (opt.patchSize === 0 || opt.imageSize % opt.patchSize !== 0) { console.error('pretrain: --patch-size must divide --image-size'); process.exit(2); }

// Imported after the flags are parsed, so `--help` works before a build.
const { Clip, setThreads, ClipTokenizer, decodeImage } = await import('ipclip');
const { generateSynthDomains, SYNTH_DOMAIN_WORDS, SYNTH_COLOURS, ClipPretrainer, learnMerges, writeOpenAiVocab, Rng, writeFileAtomic, watermark } = await import('ipclip/tools');
const t0 = performance.now();
const secs = () => ((performance.now() - t0) / 1000).toFixed(0);
const log = (...a) => console.log(`[${secs()}s]`, ...a);
if (opt.threads > 0) setThreads(opt.threads);

// 1. Data: images i < trainPer of each (domain, class) train; the rest are held out for the zero-shot numbers.
const perClass = opt.trainPer + opt.testPer;
const synth = await generateSynthDomains({ out: args.data, perClass, seed: opt.seed, size: opt.renderSize });
const manifest = JSON.parse(readFileSync(join(synth.root, 'synth.json'), 'utf8'));
log(`SynthDomains: ${synth.count} images at ${opt.renderSize}px in ${synth.root}${synth.reused ? ' (cached)' : ''}`);

const article = (w) => (/^[aeiou]/i.test(w) ? 'an' : 'a');
// The IP prompt puts n_ctx = 2L + 4 learned tokens before the class name, so the class sits at positions
// n_ctx + 1 … ; captions with a prefix of filler words (no class, colour or style meaning) train those positions.
const nCtx = 2 * opt.visionLayers + 4;
const FILLERS = ['here', 'is', 'this', 'my', 'our', 'one', 'nice', 'little', 'old', 'new', 'picture', 'image', 'look', 'at',
  'see', 'we', 'have', 'there', 'another', 'just', 'really', 'very', 'good', 'cool', 'simple', 'quick', 'shot', 'view',
  'again', 'today'];
const CONTEXT = 32;
const captionRng = new Rng(opt.seed).fork('captions');
const fillers = (k, rng) => Array.from({ length: k }, () => FILLERS[rng.int(FILLERS.length)]).join(' ');
/**
 * Caption variants of one image (one is drawn per use), repeated to weight them: full, domain + class, plain,
 * colour + class, and `--fillers` (default 0) with a random filler prefix (1 … n_ctx + 6 words) before one of full, domain + class,
 * plain or the bare class name, so the class name appears at every position up to about n_ctx + 8.
 */
function captionsOf(domain, cls, full) {
  const dw = SYNTH_DOMAIN_WORDS[domain];
  const colour = SYNTH_COLOURS.find((c) => full.includes(` ${c} ${cls}.`));
  const withDomain = `${article(dw)} ${dw} of ${article(cls)} ${cls}.`;
  const plain = `a photo of ${article(cls)} ${cls}.`;
  const list = [full, full, full, withDomain, withDomain, plain, plain];
  if (colour) list.push(`${article(colour)} ${colour} ${cls}.`);
  const bases = [full, withDomain, plain, `${cls}.`];
  for (let j = 0; j < opt.fillers; j++) {
    const base = bases[j % bases.length];
    const room = CONTEXT - 4 - base.split(' ').length; // words are single tokens after the merges; '.', SOT, EOT
    const k = 1 + captionRng.int(Math.min(nCtx + 6, room));
    list.push(`${fillers(k, captionRng)} ${base}`);
  }
  return list;
}
const train = { images: [], captions: [] };
const test = [];  // { file, domain, label }
for (const domain of synth.domains) {
  synth.classes.forEach((cls, label) => {
    for (let i = 0; i < perClass; i++) {
      const key = `${domain}/${cls}/${cls}_${String(i).padStart(4, '0')}.png`;
      const file = join(synth.root, key);
      if (i < opt.trainPer) {
        train.images.push(file);
        train.captions.push(captionsOf(domain, cls, manifest.captions[key]));
      } else test.push({ file, domain, label });
    }
  });
}
// Photometric robustness: a share of the training images is also given faded towards white, grey or black
// (blend factor 0.3–0.8), with the same captions. Real CLIPs keep recognising low-contrast, washed-out images
// (which is what the ownership watermark's white grid becomes once an image is resized); a model trained on
// clean renders alone does not.
const fadeRng = new Rng(opt.seed).fork('fade');
const originals = train.images.length;
let faded = 0;
for (let i = 0; i < originals; i++) {
  if (!fadeRng.chance(opt.fade)) continue;
  const img = await decodeImage(train.images[i]);
  const u = fadeRng.next();
  const target = u < 0.5 ? 255 : u < 0.75 ? 128 : 0;
  const a = fadeRng.uniform(0.3, 0.8);
  const data = new Uint8Array(img.data.length);
  for (let j = 0; j < data.length; j++) data[j] = Math.round(a * target + (1 - a) * img.data[j]);
  train.images.push({ data, width: img.width, height: img.height });
  train.captions.push(train.captions[i]);
  faded++;
}
log(`training pairs: ${originals} images + ${faded} faded copies; ${test.length} held out`);

// 2. Vocabulary: byte-level BPE merges learnt from every caption variant.
const work = mkdtempSync(join(tmpdir(), 'ipclip-pretrain-'));
const vocabPath = join(work, 'vocab.txt.gz');
const merges = learnMerges(train.captions.flat(), { numMerges: opt.merges, minFrequency: 2 });
writeOpenAiVocab(vocabPath, merges);
log(`vocabulary: ${merges.length} merges (${512 + merges.length + 2} ids)`);
{
  const tok = ClipTokenizer.fromFile(vocabPath);
  let longest = 0;
  for (const list of train.captions.slice(0, originals)) for (const c of list) longest = Math.max(longest, tok.encode(c).length + 2);
  if (longest > CONTEXT) { console.error(`pretrain: a caption needs ${longest} tokens, more than the context ${CONTEXT}`); process.exit(1); }
  log(`longest caption: ${longest} tokens of ${CONTEXT}`);
}

// 3. Pretraining.
const config = {
  embedDim: 64,
  vision: { width: 128, layers: opt.visionLayers, heads: 2, patchSize: opt.patchSize, imageSize: opt.imageSize },
  text: { width: 128, layers: 3, heads: 2, contextLength: CONTEXT },
};
const pretrainer = await ClipPretrainer.create(config, { vocab: vocabPath, seed: opt.seed });
const fitOptions = { epochs: opt.epochs, batchSize: opt.batchSize, lr: opt.lr, weightDecay: 0.1, gradClip: 1 };
let last = 0;
const fitStart = performance.now();
const fit = await pretrainer.fit(train, {
  ...fitOptions,
  onProgress: (p) => {
    if (opt.quiet || (p.step < p.totalSteps && performance.now() - last < 15000)) return;
    last = performance.now();
    const eta = (p.seconds / p.step) * (p.totalSteps - p.step);
    log(`step ${p.step}/${p.totalSteps} epoch ${p.epoch + 1} loss ${p.loss.toFixed(3)} acc ${p.accuracy.toFixed(2)} ` +
      `scale ${p.logitScale.toFixed(1)} lr ${p.lr.toExponential(2)} eta ${eta.toFixed(0)}s`);
  },
});
const trainSeconds = (performance.now() - fitStart) / 1000;
const out = resolve(args.out);
await pretrainer.save(out, { metadata: { data: 'SynthDomains', seed: String(opt.seed) } });
pretrainer.dispose();
rmSync(work, { recursive: true, force: true });
log(`trained ${fit.steps} steps in ${trainSeconds.toFixed(0)}s; saved to ${out}`);

// 4. Zero-shot evaluation of the saved model (as users load it), per domain and template.
const clip = await Clip.load(join(out, 'model.safetensors'));
const pushFill = new Rng(opt.seed).fork('pushed');
const pushPrefix = fillers(nCtx, pushFill);
// Each template as Clip.classify takes it: a text with `{}` for the label, and the labels it is filled with (the
// article belongs to the class name, so it travels with the label).
const withArticle = synth.classes.map((cls) => `${article(cls)} ${cls}`);
const templates = {
  domain: (domain) => ({ template: `${article(SYNTH_DOMAIN_WORDS[domain])} ${SYNTH_DOMAIN_WORDS[domain]} of {}.`, labels: withArticle }),
  plain: () => ({ template: 'a photo of {}.', labels: withArticle }),
  // The class name where an IP prompt puts it: after n_ctx tokens (here filler words), at position n_ctx + 1.
  pushed: () => ({ template: `${pushPrefix} {}.`, labels: synth.classes }),
};
// Zero-shot accuracy through the library's own classifier (the top prediction of Clip.classify).
const accuracy = async (images, items, { template, labels }) => {
  const predictions = await clip.classify(images, labels, { template });
  return predictions.filter((p, i) => p.index === items[i].label).length / items.length;
};
const results = {};
for (const domain of synth.domains) {
  const items = test.filter((t) => t.domain === domain);
  const files = items.map((t) => t.file);
  // The ownership/authorization watermark as the IP-CLIP streams apply it: at the rendered resolution, before resizing.
  const marked = [];
  for (const t of items) marked.push(watermark(await decodeImage(t.file)));
  results[domain] = {};
  for (const [name, template] of Object.entries(templates)) {
    if (name === 'pushed' && opt.fillers === 0) continue; // the filler words are learnt only with --fillers
    results[domain][name] = await accuracy(files, items, template(domain));
    if (name === 'domain') results[domain].watermarked = await accuracy(marked, items, template(domain));
  }
  log(`zero-shot ${domain}: domain template ${(100 * results[domain].domain).toFixed(1)}%, plain ${(100 * results[domain].plain).toFixed(1)}%, ` +
    `class at position ${nCtx + 1} ${results[domain].pushed === undefined ? '-' : (100 * results[domain].pushed).toFixed(1)}%, watermarked ${(100 * results[domain].watermarked).toFixed(1)}% (${items.length} images)`);
}
clip.dispose();

// 5. eval.json and the model card.
const totalSeconds = (performance.now() - t0) / 1000;
const lastLoss = fit.history.slice(-20).reduce((s, h) => s + h.loss, 0) / Math.min(20, fit.history.length);
const evalJson = {
  config: pretrainer.config, seed: opt.seed, data: { renderSize: opt.renderSize, trainPerClass: opt.trainPer, testPerClass: opt.testPer,
    classes: synth.classes, domains: synth.domains, trainImages: originals, fadedCopies: faded, fade: opt.fade }, merges: merges.length, fit: { ...fitOptions, steps: fit.steps, seconds: trainSeconds, finalLoss: lastLoss },
  zeroShot: results, totalSeconds, threads: opt.threads,
};
await writeFileAtomic(join(out, 'eval.json'), JSON.stringify(evalJson, null, 2) + '\n');
const pct = (x) => `${(100 * x).toFixed(1)}%`;
const c = pretrainer.config;
const cmd = `node scripts/pretrain.mjs --train-per-class ${opt.trainPer} --test-per-class ${opt.testPer} --epochs ${opt.epochs} ` +
  `--batch-size ${opt.batchSize} --lr ${opt.lr} --seed ${opt.seed} --threads ${opt.threads} --merges ${opt.merges} ` +
  `--render-size ${opt.renderSize} --image-size ${opt.imageSize} --patch-size ${opt.patchSize} --vision-layers ${opt.visionLayers} --fade ${opt.fade} --fillers ${opt.fillers}`;
await writeFileAtomic(join(out, 'README.md'), `# synth-clip: a small CLIP pretrained by ipclip on SynthDomains

A small ViT CLIP trained from scratch, both towers, by \`ClipPretrainer\` (native contrastive
trainer: symmetric InfoNCE with identical captions counted as positives, learnable logit scale clamped to ≤ 100,
AdamW β = (0.9, 0.98), weight decay 0.1 on matrices only, gradient norm clipped to 1, linear warm-up over 5% of the
steps then cosine to 0). It is the default model of \`npm run demo\` and the CLI. It knows only SynthDomains' ten shapes
in four styles; it is not a general image model.

Files: \`model.safetensors\` (float32, OpenAI parameter names), \`config.json\` (OpenAI's model config), \`vocab.txt.gz\`
(OpenAI vocabulary format: 512 byte symbols + ${merges.length} merges learnt from the captions + 2 specials), \`eval.json\` (the numbers below).

## Architecture

| | |
|---|---|
| image | ${c.vision.imageSize}×${c.vision.imageSize}, patch ${c.vision.patchSize} (${(c.vision.imageSize / c.vision.patchSize) ** 2} patches + class token) |
| vision tower | width ${c.vision.width}, ${c.vision.layers} layers, ${c.vision.heads} heads |
| text tower | width ${c.text.width}, ${c.text.layers} layers, ${c.text.heads} heads, context ${c.text.contextLength}, vocabulary ${c.text.vocabSize} |
| embedding | ${c.embedDim} |

The context of ${c.text.contextLength} fits IP-CLIP's prompts (2·${c.vision.layers} + 4 = ${2 * c.vision.layers + 4} placeholder tokens + class name + 3).

## Data

SynthDomains (seed ${opt.seed}, rendered at ${opt.renderSize}px, resized to ${c.vision.imageSize}px): 10 classes × 4 domains (photo, clipart,
sketch, product). Images 0–${opt.trainPer - 1} of each (domain, class) train (${train.images.length} images); images ${opt.trainPer}–${perClass - 1}
are held out (${test.length} images) for the evaluation. ${opt.fade > 0 ? `A share ${opt.fade} of the training images (${faded}) is added a second time faded towards white, grey or black (blend
0.3–0.8), so that the model, like a CLIP trained on web images, still recognises washed-out images (the ownership
watermark's white grid becomes one once an image is resized). ` : ''}Each training use of an image is a random resized
crop (area 60–100%) with a random horizontal flip, and one caption drawn from: the dataset caption
"a {domain word} of a {colour} {class}." (weight 3; sketches name no colour), "a {domain word} of a {class}." (2),
"a photo of a {class}." (2), "a {colour} {class}." (1, not for sketches, which are grey)${opt.fillers > 0 ? `, and ${opt.fillers} with a random
prefix of 1 to ${nCtx + 6} filler words (such as "here is my nice picture") before one of the first three or the bare
"{class}.". IP-CLIP's prompts put 2L + 4 = ${nCtx} learned tokens before the class name; the prefixes make the class
name appear, during pretraining, at every text position up to about ${nCtx + 8}` : ''}.

## Training

${fit.steps} steps (${opt.epochs} epochs, batch ${opt.batchSize}), peak learning rate ${opt.lr}, seed ${opt.seed}, ${opt.threads} CPU threads:
${trainSeconds.toFixed(0)} s of training, ${totalSeconds.toFixed(0)} s in all (rendering, vocabulary, evaluation included) on a
shared 2-core machine. Final training loss (mean of the last 20 steps): ${lastLoss.toFixed(3)}.

Reproduce: \`npm run pretrain\` (the defaults are this run), i.e.

    ${cmd}

## Zero-shot accuracy (held-out images, 10 classes, chance 10%)

| domain | "a {domain word} of a {class}." | "a photo of a {class}." | class at position ${nCtx + 1} | watermarked, first template |
|---|---|---|---|---|
${synth.domains.map((d) => `| ${d} | ${pct(results[d].domain)} | ${pct(results[d].plain)} | ${results[d].pushed === undefined ? '–' : pct(results[d].pushed)} | ${pct(results[d].watermarked)} |`).join('\n')}

"Class at position ${nCtx + 1}": "${pushPrefix} {class}.", the class name where IP-CLIP's prompts put it
(after ${nCtx} filler words instead of the learned context). "Watermarked": the ownership watermark (every even row and
column white) applied at the rendered ${opt.renderSize} px, then resized to ${c.vision.imageSize} px, as the IP-CLIP streams do.

Domain words: ${synth.domains.map((d) => `${d} → "${SYNTH_DOMAIN_WORDS[d]}"`).join(', ')}. The bar the project set is ≥ 60% on each domain
with either template; the table says which template reaches it.
`);
log(`done in ${totalSeconds.toFixed(0)}s`);
