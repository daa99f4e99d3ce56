// The run record at library level: what the trainer records from folder datasets, and the Evaluator's refusal of
// sets holding training images (checked before any model work, so no CLIP is needed here).
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runRecordOf } from '../lib/ipclip/checkpoint.js';
import { DomainDataset } from '../lib/data/dataset.js';
import { refuseTrainingImages } from '../lib/ipclip/evaluator.js';

let root = '';
beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'ipclip-runrec-'));
  for (const d of ['photo', 'sketch']) {
    for (const c of ['cat', 'dog']) {
      await mkdir(path.join(root, d, c), { recursive: true });
      for (let i = 0; i < 6; i++) {
        await sharp({ create: { width: 4, height: 4, channels: 3, background: { r: 30 * i, g: 0, b: 0 } } }).png().toFile(path.join(root, d, c, `${i}.png`));
      }
    }
  }
});
afterAll(async () => { if (root) await rm(root, { recursive: true, force: true }); });

describe('run record and training-image refusal', () => {
  it('records root, domains and split settings; refuses any set reaching into the training split', async () => {
    const a = await DomainDataset.splits(root, { domain: 'photo', seed: 9, sizes: { train: 6, test: 3 } });
    const u = await DomainDataset.splits(root, { domain: 'sketch', seed: 9, sizes: { train: 6, test: 3 } });
    const run = runRecordOf('target-specified', a.train, u.train);
    expect(run).toMatchObject({
      scenario: 'target-specified', data: { root, resolved: path.resolve(root) }, authorized: 'photo', unauthorized: 'sketch',
      split: { rule: 'path-hash', version: 1, seed: 9, sizes: { train: 6, test: 3 }, onBadImage: 'error', listed: 12, nTrain: 6, nTest: 3 },
      skippedImages: [],
    });
    // The run's own test splits pass, clean or watermarked.
    expect(() => refuseTrainingImages(run, 'authorized', a.test)).not.toThrow();
    expect(() => refuseTrainingImages(run, 'sketch', { dataset: u.test, watermark: true })).not.toThrow();
    // Training images, a whole domain, or a larger test split (9 of 12: it reaches the 6 training images) do not.
    expect(() => refuseTrainingImages(run, 'authorized', a.train)).toThrow(expect.objectContaining({ code: 'ERR_MISMATCH' }));
    expect(() => refuseTrainingImages(run, 'sketch', u.train)).toThrow(/training split of 'sketch'/);
    const whole = await DomainDataset.fromFolder(root, { domain: 'photo' });
    expect(() => refuseTrainingImages(run, 'authorized', whole)).toThrow(/holds 6 of 12 images/);
    const wide = await DomainDataset.splits(root, { domain: 'photo', seed: 9, sizes: { train: 3, test: 9 } });
    expect(() => refuseTrainingImages(run, 'authorized', wide.test)).toThrow(/holds 3 of 9 images/);
    // Another seed cuts another split: its test split holds some of this run's training images.
    const reseeded = await DomainDataset.splits(root, { domain: 'photo', seed: 10, sizes: { train: 6, test: 6 } });
    const overlap = reseeded.test.samples.filter((s) => a.train.samples.some((t) => t.path === s.path)).length;
    if (overlap > 0) expect(() => refuseTrainingImages(run, 'authorized', reseeded.test)).toThrow(new RegExp(`holds ${overlap} of 6`));
    else expect(() => refuseTrainingImages(run, 'authorized', reseeded.test)).not.toThrow();
    // In-memory datasets carry no root: nothing to compare, nothing refused.
    const mem = DomainDataset.fromSamples(a.train.samples, a.train.classNames, { domain: 'photo' });
    expect(() => refuseTrainingImages(run, 'authorized', mem)).not.toThrow();
    expect(runRecordOf('reference', mem)).toMatchObject({ data: null, split: null, unauthorized: null });
  });
});
