#!/usr/bin/env node
// Trains a protected prompt with the demo's recipe (SynthDomains, photo authorized, sketch unauthorized, split seed 0,
// 60 % train, 20 epochs, batches of 8, peak lr 0.001, cached test-transform features) and saves it, so that
// `ipclip attack` can be run against it (docs/attacks.md):
//   node examples/attack.mjs [--data .cache/synth] [--out out/attack-demo] [--epochs 20] [--seed 0]
//   node bin/ipclip.js attack --prompt out/attack-demo/prompt.safetensors --data .cache/synth \
//     --authorized photo --unauthorized sketch --seed 0 --train-fraction 0.6 --out out/attack-demo
// The data folder is rendered by `npm run demo` (or `ipclip synth --out .cache/synth --per-class 50`).
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: flags } = parseArgs({
  options: {
    data: { type: 'string', default: join('.cache', 'synth') },
    out: { type: 'string', default: join('out', 'attack-demo') },
    epochs: { type: 'string', default: '20' },
    seed: { type: 'string', default: '0' },
  },
});
if (!existsSync(join(root, 'dist', 'index.js'))) {
  console.error('ipclip is not compiled yet: run `npm run build`.');
  process.exit(1);
}
if (!existsSync(join(flags.data, 'photo')) || !existsSync(join(flags.data, 'sketch'))) {
  console.error(`${flags.data} has no photo and sketch domains: render them with \`ipclip synth --out ${flags.data} --per-class 50\`.`);
  process.exit(1);
}
const { Clip, DomainDataset, IPTrainer, PromptModel } = await import(join(root, 'dist', 'index.js'));
const seed = Number(flags.seed);
const clip = await Clip.load(join(root, 'models', 'synth-clip', 'model.safetensors'));
const photo = await DomainDataset.splits(flags.data, { domain: 'photo', seed, trainFraction: 0.6 });
const sketch = await DomainDataset.splits(flags.data, { domain: 'sketch', seed, trainFraction: 0.6 });
const prompt = await PromptModel.create(clip, photo.train.classNames, { seed });
const t0 = performance.now();
await new IPTrainer(prompt, {
  scenario: 'target-specified', epochs: Number(flags.epochs), batchSize: 8, lr: 0.001, seed, featureCache: true,
}).fit({ authorized: photo.train, unauthorized: sketch.train });
mkdirSync(flags.out, { recursive: true });
await prompt.save(join(flags.out, 'prompt.safetensors'));
console.log(`trained in ${((performance.now() - t0) / 1000).toFixed(0)} s; wrote ${join(flags.out, 'prompt.safetensors')}`);
prompt.dispose();
clip.dispose();
