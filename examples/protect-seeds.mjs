#!/usr/bin/env node
// Trains the demo's protected prompt (SynthDomains, photo authorized, sketch unauthorized, 60 % train, 20 epochs,
// batches of 8, lr 0.001, feature cache: the benchmark's default recipe) for several seeds through the protection
// benchmark, saves each seed's prompt, and writes the benchmark's verdict, so that `ipclip attack --seeds` can
// attack every seed (docs/attacks.md, "Several seeds" and "Defences"):
//   node examples/protect-seeds.mjs [--data .cache/synth] [--out out/attack-seeds/baseline] [--seeds 0,1,2] [--defence]
//                                   [--defence-methods adain,fourier,histogram]
//   node bin/ipclip.js attack --prompt 'out/attack-seeds/baseline/prompt-seed{seed}.safetensors' --seeds 0,1,2 \
//     --data .cache/synth --authorized photo --unauthorized sketch --train-fraction 0.6 --out out/attack-seeds/baseline
// --defence trains with the `paper` preset's disguised-unauthorized option (docs/method.md, beyond the paper).
// The data folder is rendered by `npm run demo` (or `ipclip synth --out .cache/synth --per-class 50`).
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: flags } = parseArgs({
  options: {
    data: { type: 'string', default: join('.cache', 'synth') },
    out: { type: 'string', default: join('out', 'attack-seeds', 'baseline') },
    seeds: { type: 'string', default: '0,1,2' },
    epochs: { type: 'string', default: '20' },
    defence: { type: 'boolean', default: false },
    // The defence's transforms (DisguiseOptions.methods), e.g. 'adain' or 'adain,fourier'; default all three.
    'defence-methods': { type: 'string' },
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
const { Clip, runProtectionBenchmark } = await import(join(root, 'dist', 'index.js'));
const seeds = flags.seeds.split(',').map(Number);
const clip = await Clip.load(join(root, 'models', 'synth-clip', 'model.safetensors'));
mkdirSync(flags.out, { recursive: true });
const t0 = performance.now();
let last = '';
const result = await runProtectionBenchmark({
  clip, data: flags.data, authorized: 'photo', unauthorized: 'sketch', others: ['sketch'], scenarios: ['target-specified'], seeds,
  recipe: {
    epochs: Number(flags.epochs),
    ...(flags.defence ? { disguisedUnauthorized: flags['defence-methods'] ? { methods: flags['defence-methods'].split(',') } : true } : {}),
  },
  onProgress: (e) => {
    const line = `seed ${e.seed} ${e.stage}`;
    if (line !== last) console.error(`${line} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    last = line;
  },
  onProtected: async ({ seed, prompt }) => prompt.save(join(flags.out, `prompt-seed${seed}.safetensors`)),
});
writeFileSync(join(flags.out, 'benchmark.json'), `${JSON.stringify(result, null, 2)}\n`);
for (const r of result.runs) {
  const s = r.sets;
  console.log(`seed ${r.seed}: photo ${(100 * s.photo.protected).toFixed(1)} % (reference ${(100 * s.photo.reference).toFixed(1)}, zero-shot ` +
    `${(100 * s.photo.zeroShot).toFixed(1)}), sketch ${(100 * s.sketch.protected).toFixed(1)} %; ${r.pass ? 'pass' : 'FAIL: ' + r.checks.filter((c) => !c.pass).map((c) => c.name).join('; ')}`);
}
console.log(`${result.pass ? 'pass' : 'fail'} in ${((performance.now() - t0) / 1000).toFixed(0)} s; wrote ${flags.out}`);
clip.dispose();
