#!/usr/bin/env node
// Zero-shot classification with ipclip: load a CLIP, rank labels per image.
//   node examples/zero-shot.mjs [--model FILE] [--labels a,b,...] [--template 'a photo of a {}.'] [image ...]
// Defaults: the shipped small CLIP (models/synth-clip, its vocabulary beside it), SynthDomains' ten shape classes as
// labels, and eight SynthDomains images rendered here in memory (two per domain), so it runs out of the box. With a
// real checkpoint (e.g. ViT-B-16.safetensors plus --labels), give your own images.
import { existsSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: flags, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    model: { type: 'string', default: join(root, 'models', 'synth-clip', 'model.safetensors') },
    labels: { type: 'string' },
    template: { type: 'string', default: 'a photo of {}.' },
  },
});
if (!existsSync(join(root, 'dist', 'index.js'))) {
  console.error('ipclip is not compiled yet: run `npm run build` (or `npm run demo`, which builds what it needs).');
  process.exit(1);
}
for (const p of [flags.model, ...positionals]) {
  if (!existsSync(p)) {
    console.error(`not found: ${p}\nusage: node examples/zero-shot.mjs [--model FILE] [--labels a,b,...] [image ...]`);
    process.exit(1);
  }
}

// The package itself (package.json "exports": `ipclip` → dist/index.js, `ipclip/tools` → dist/tools/index.js).
const { Clip } = await import('ipclip');
const { Rng, SYNTH_CLASSES, SYNTH_DOMAINS, renderSynthImage } = await import('ipclip/tools');

const article = (w) => (/^[aeiou]/.test(w) ? 'an' : 'a');
const classes = flags.labels ? flags.labels.split(',').map((l) => l.trim()).filter(Boolean) : [...SYNTH_CLASSES];
// Labels read as the captions the shipped model was trained on ("a photo of a circle.").
const labels = classes.map((c) => (flags.labels ? c : `${article(c)} ${c}`));

let images;
let names;
if (positionals.length > 0) {
  images = positionals;
  names = positionals.map((p) => basename(p));
} else {
  const rng = new Rng(7);
  const rendered = [];
  SYNTH_DOMAINS.forEach((domain, d) => {
    for (const k of [0, 1]) rendered.push({ domain, cls: SYNTH_CLASSES[(3 * d + 5 * k) % SYNTH_CLASSES.length] });
  });
  images = await Promise.all(rendered.map(async (r) => (await renderSynthImage(r.domain, r.cls, rng.fork(`${r.domain}-${r.cls}`))).png));
  names = rendered.map((r) => `${r.domain} ${r.cls}`);
}

const clip = await Clip.load(flags.model);
try {
  const { vision } = clip.config;
  console.log(`CLIP ${clip.info.format} ${vision.imageSize}px/${vision.patchSize} ViT, ${vision.layers} layers, ` +
    `on ${clip.info.device} (${clip.info.dtype}), logit scale ${clip.logitScale.toFixed(2)}`);
  const ranked = await clip.classify(images, labels, { template: flags.template, topK: 2 });
  const label = (l) => classes[labels.indexOf(l)];
  const rows = ranked.map((r, i) => [names[i], label(r.top[0].label), r.top[0].score.toFixed(3), label(r.top[1].label), r.top[1].score.toFixed(3)]);
  const head = ['image', 'best label', 'p', 'runner-up', 'p'];
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (r) => r.map((v, c) => v.padEnd(widths[c])).join('  ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
} finally {
  clip.dispose();
}
