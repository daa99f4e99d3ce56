// The user's command line on the shipped model: predict on folders and globs (against the library, in sorted
// order), zero-shot `classify --labels`, the progress bar of eval / predict (plain lines off a terminal, none with
// --json), and messages that name the real problem (a CLIP given as the checkpoint, a file that is not
// safetensors, verify-ownership on a prompt of another scenario).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDist } from './helpers/dist.js';
import { Clip } from '../lib/clip/clip.js';
import { Rng } from '../lib/core/rng.js';
import { PromptModel } from '../lib/ipclip/prompt-model.js';
import { DomainDataset } from '../lib/data/dataset.js';
import { runRecordOf, writeCheckpoint } from '../lib/ipclip/checkpoint.js';
import { SYNTH_CLASSES, renderSynthImage } from '../lib/tools/synth/synth.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'bin', 'ipclip.js');
const CLASSES = [...SYNTH_CLASSES].slice(0, 3).sort();

interface Result { code: number | null; stdout: string; stderr: string }
function ipclip(args: string[]): Result {
  const threads = args[0] === 'info' ? [] : ['--threads', '2'];
  const r = spawnSync(process.execPath, [BIN, ...args, ...threads], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Row { image: string; label: string; index: number; score: number; top: { label: string; index: number; score: number }[] }

describe('ipclip predict / classify / eval on the shipped model', () => {
  let dir: string;
  let data: string;
  let run: string;
  let clip: Clip;
  let prompt: PromptModel;
  let photos: string[];

  beforeAll(async () => {
    ensureDist(ROOT);
    dir = mkdtempSync(join(tmpdir(), 'ipclip-cli-user-'));
    data = join(dir, 'data');
    const rng = new Rng(4);
    photos = [];
    for (const domain of ['photo', 'sketch'] as const) {
      for (const cls of CLASSES) {
        mkdirSync(join(data, domain, cls), { recursive: true });
        for (let i = 0; i < 5; i++) {
          const f = join(data, domain, cls, `${cls}_${i}.png`);
          writeFileSync(f, (await renderSynthImage(domain, cls, rng.fork(f), 32)).png);
          if (domain === 'photo') photos.push(f);
        }
      }
    }
    photos.sort();
    clip = await Clip.load('synth-clip');
    prompt = await PromptModel.create(clip, CLASSES, { seed: 3 });
    run = join(dir, 'run');
    mkdirSync(run);
    await prompt.save(join(run, 'prompt.safetensors'));
  }, 120_000);
  afterAll(() => {
    prompt?.dispose();
    clip?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('predict DIR lists the folder sorted and classifies as the library; a glob takes only its matches', async () => {
    const r = ipclip(['predict', join(data, 'photo'), '--checkpoint', run, '--top', '2', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const rows = JSON.parse(r.stdout) as Row[];
    expect(rows.map((x) => x.image)).toEqual(photos);
    const lib = await prompt.classify(photos);
    rows.forEach((x, i) => {
      expect(x.index).toBe(lib[i]!.index);
      expect(x.label).toBe(CLASSES[x.index]);
      expect(x.score).toBeCloseTo(lib[i]!.score, 5);
      expect(x.top.map((t) => t.index)).toEqual(lib[i]!.top.slice(0, 2).map((t) => t.index));
    });
    expect(r.stderr).not.toMatch(/predict \d+\//); // no progress with --json
    const g = ipclip(['predict', join(data, '*', CLASSES[0]!, '*_1.png'), '--checkpoint', run, '--json']);
    expect(g.code, g.stderr).toBe(0);
    expect((JSON.parse(g.stdout) as Row[]).map((x) => x.image))
      .toEqual([join(data, 'photo', CLASSES[0]!, `${CLASSES[0]}_1.png`), join(data, 'sketch', CLASSES[0]!, `${CLASSES[0]}_1.png`)]);
    const text = ipclip(['predict', join(data, 'photo'), '--checkpoint', run]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stderr).toMatch(/^predict 15\/15 100%/m); // the plain progress line off a terminal
    const none = ipclip(['predict', join(dir, 'nothing-*.png'), '--checkpoint', run]);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/no files match/);
  }, 120_000);

  it('classify IMG… --labels ranks the labels as Clip.classify does', async () => {
    const labels = CLASSES.map((c) => `a ${c}`);
    const imgs = [photos[0]!, photos[7]!];
    const r = ipclip(['classify', ...imgs, '--labels', labels.join(','), '--template', 'a photo of {}.', '--top', '3', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const rows = JSON.parse(r.stdout) as Row[];
    const lib = await clip.classify(imgs, labels, { template: 'a photo of {}.' });
    expect(rows.map((x) => x.label)).toEqual(lib.map((p) => p.label));
    rows.forEach((x, i) => {
      expect(x.top).toHaveLength(3);
      x.top.forEach((t, k) => expect(t.score).toBeCloseTo(lib[i]!.top[k]!.score, 5));
    });
    const bad = ipclip(['classify', photos[0]!, '--labels', 'a,a']);
    expect(bad.code).toBe(2);
    const missing = ipclip(['classify', photos[0]!]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--labels is required/);
  }, 120_000);

  it('eval shows the progress bar off a terminal (nothing with --json)', () => {
    const args = ['eval', '--checkpoint', join(run, 'prompt.safetensors'), '--scenario', 'target-specified', '--data', data,
      '--authorized', 'photo', '--unauthorized', 'sketch', '--no-zero-shot'];
    const r = ipclip(args);
    expect(r.code, r.stderr).toBe(0);
    // 80/20 split of 5 images per class: 1 test image per class and domain, 6 images in all.
    expect(r.stderr).toMatch(/^eval 6\/6 100%/m);
    const j = ipclip([...args, '--json']);
    expect(j.code, j.stderr).toBe(0);
    expect(j.stderr).not.toMatch(/eval \d+\//);
    expect(JSON.parse(j.stdout).sets).toHaveLength(2);
  }, 120_000);

  it('info numbers epochs as the progress line does (1-based epoch in progress, epochs done)', async () => {
    const training = {
      scenario: 'target-specified', preset: 'paper', epochs: 10, batchSize: 8, lr: 0.01, weightDecay: 5e-4, trainEnhancer: true,
      featureCache: false, iteration: 30, epoch: 3, seed: 0, totalIterations: 100, optimizerStep: 30, lastLr: 0.009, skippedUpdates: 0,
      streamSeeds: { authorized: 1, unauthorized: 2 }, accumulator: { sums: {}, count: 0, skipped: 0 },
      history: [0, 1, 2].map((epoch) => ({ epoch, iterations: 10, skipped: 0, terms: { loss: -0.5, ceA: 0.25 }, lr: 0.009 })),
    };
    const file = join(dir, 'mid.safetensors');
    await writeCheckpoint(file, { state: await prompt.state(), meta: { ...prompt.metadata(), training } });
    const r = ipclip(['info', file]);
    expect(r.code, r.stderr).toBe(0);
    // Three epochs closed (history epochs 0, 1, 2); a resumed run's progress line would say "epoch 4/10".
    expect(r.stdout).toMatch(/3\/10 epochs done, resumes in epoch 4\/10/);
    expect(r.stdout).toMatch(/last epoch\s+epoch 3\/10: loss -0\.5000/);
    const j = JSON.parse(ipclip(['info', file, '--json']).stdout);
    expect(j.training).toMatchObject({ epochsDone: 3, resumesInEpoch: 4, complete: false });
  });

  it('names the real problem: a CLIP as the checkpoint, a file that is not safetensors, ownership of another scenario', async () => {
    const weights = join(ROOT, 'models', 'synth-clip', 'model.safetensors');
    const c = ipclip(['predict', photos[0]!, '--checkpoint', weights]);
    expect(c.code).toBe(1);
    expect(c.stderr).toMatch(/is a CLIP model, not a prompt checkpoint/);
    const png = ipclip(['info', photos[0]!]);
    expect(png.code).toBe(1);
    expect(png.stderr).toMatch(/is not a safetensors file: it looks like a PNG image/);
    expect(png.stderr).not.toMatch(/header length \d{12,}/);
    // A prompt whose run record names target-specified: verify-ownership says so before reading any image.
    const photo = await DomainDataset.splits(data, { domain: 'photo', seed: 0 });
    const file = join(dir, 'ts.safetensors');
    await writeCheckpoint(file, { state: await prompt.state(), meta: { ...prompt.metadata(), run: runRecordOf('target-specified', photo.train) } });
    const v = ipclip(['verify-ownership', '--checkpoint', file]);
    expect(v.code).toBe(1);
    expect(v.stderr).toMatch(/trained for the target-specified scenario, not ownership/);
  });
});
