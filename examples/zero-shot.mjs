#!/usr/bin/env node
// Zero-shot classification with ipclip: load a CLIP checkpoint and a vocabulary, rank a few labels per image.
//   node examples/zero-shot.mjs [weights] [vocab] [image ...]
// Defaults: the tiny test CLIP and OpenAI's vocabulary from ../shared, and its four fixture images. The tiny CLIP is
// randomly initialised, so its rankings are arbitrary: point it at a real checkpoint (e.g. ViT-B-16.safetensors)
// for meaningful ones.
import { existsSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const shared = join(root, '..', 'shared');
const [weights = join(shared, 'fixtures/clip-tiny/openai.safetensors'),
  vocab = join(shared, 'vocab/bpe_simple_vocab_16e6.txt.gz'), ...given] = process.argv.slice(2);
const images = given.length > 0 ? given
  : ['small-50x40.png', 'square-224.png', 'tall-120x333.png', 'wide-300x200.png'].map((f) => join(shared, 'fixtures/text-image', f));
const labels = ['a red rectangle', 'colourful noise', 'a smooth gradient', 'a dog', 'a handwritten digit'];

if (!existsSync(join(root, 'dist', 'index.js'))) {
  console.error('ipclip is not compiled yet: run `npm run build` (or `npm run demo`, which builds what it needs).');
  process.exit(1);
}
for (const p of [weights, vocab, ...images]) {
  if (!existsSync(p)) {
    console.error(`not found: ${p}\nusage: node examples/zero-shot.mjs [weights] [vocab] [image ...]`);
    process.exit(1);
  }
}

const { Clip } = await import('ipclip'); // the package itself (package.json "exports" → dist/index.js)
const clip = await Clip.load(weights, { vocab });
try {
  const { vision } = clip.config;
  console.log(`CLIP ${clip.info.format} ${vision.imageSize}px/${vision.patchSize} ViT, ${vision.layers} layers, ` +
    `on ${clip.info.device} (${clip.info.dtype}), logit scale ${clip.logitScale.toFixed(2)}`);
  const ranked = await clip.classify(images, labels, { template: 'a picture of {}.' });
  const rows = ranked.map((r, i) => [basename(images[i]), r[0].label, r[0].score.toFixed(3), r[1].label, r[1].score.toFixed(3)]);
  const head = ['image', 'best label', 'p', 'runner-up', 'p'];
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (r) => r.map((v, c) => v.padEnd(widths[c])).join('  ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
} finally {
  clip.dispose();
}
