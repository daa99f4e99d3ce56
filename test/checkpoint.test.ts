// Checkpoints: save → load round trips, the release's format, mismatch detection, hostile metadata.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseMeta, readCheckpoint, runDifference, writeCheckpoint, type CheckpointMeta, type RunRecord } from '../lib/ipclip/checkpoint.js';
import { Clip } from '../lib/clip/clip.js';
import { IpclipError } from '../lib/core/errors.js';
import { PromptModel } from '../lib/ipclip/prompt-model.js';
import { Rng } from '../lib/core/rng.js';
import { readSafetensors, writeSafetensors, type TensorToWrite } from '../lib/io/safetensors.js';
import type { ImageTensor } from '../lib/core/tensor.js';
import { CLIP_TINY, HAVE_SHARED, TEST_DEVICE, VOCAB_PATH, shared } from './helpers/fixtures.js';

const NAMES = ['alarm_clock', 'backpack', 'bike', 'desk_lamp', 'trash_can'];
const STEP = shared('fixtures', 'ipclip-step', 'step.safetensors');

async function codeOf(p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(IpclipError);
  return (err as IpclipError).code;
}

function randomImages(n: number, seed: number): ImageTensor {
  const rng = new Rng(seed);
  return { data: Float32Array.from({ length: n * 3 * 32 * 32 }, () => rng.normal()), shape: [n, 3, 32, 32] };
}

/** Rewrites `file` with its metadata document changed by `edit` (tensors kept). */
async function editMeta(file: string, out: string, edit: (m: Record<string, unknown>) => void): Promise<void> {
  const c = await readSafetensors(file);
  const meta = JSON.parse(c.metadata.ipclip!) as Record<string, unknown>;
  edit(meta);
  await writeSafetensors(out, c.tensors as Record<string, TensorToWrite>, { ipclip: JSON.stringify(meta) });
}

describe.skipIf(!HAVE_SHARED)('checkpoints', () => {
  let clip: Clip;
  let dir: string;

  beforeAll(async () => {
    clip = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, device: TEST_DEVICE });
    dir = mkdtempSync(join(tmpdir(), 'ipclip-ckpt-'));
  });
  afterAll(() => {
    clip?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('save → load gives the identical state and logits (banks included), with metadata', async () => {
    using prompt = await PromptModel.create(clip, NAMES, { seed: 4 });
    await prompt.updateBanks(randomImages(6, 2), Int32Array.from([0, 1, 2, 3, 4, 0]), 'unauthorized');
    const file = join(dir, 'p.safetensors');
    await prompt.save(file);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]); // the temporary file was renamed
    using loaded = await PromptModel.load(clip, file);
    expect(loaded.classNames).toEqual(NAMES);
    expect(loaded.seed).toBe(4);
    const [a, b] = [await prompt.state(), await loaded.state()];
    expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
    for (const k of Object.keys(a)) expect(Array.from(b[k]!.data), k).toEqual(Array.from(a[k]!.data));
    expect(a.target_feat_bank!.data.some((v) => v !== 0)).toBe(true);
    const images = randomImages(3, 9);
    expect(Array.from((await loaded.logits(images)).logits.data)).toEqual(Array.from((await prompt.logits(images)).logits.data));
    const { meta } = await readCheckpoint(file);
    expect(meta!.classNames).toEqual(NAMES);
    expect(meta!.clip.fingerprint).toBe(clip.info.fingerprint);
    expect(meta!.clip.config).toEqual(clip.config);
  });

  it.skipIf(!existsSync(STEP))('imports the release state (no metadata): class names required, unused tensors ignored', async () => {
    const fx = await readSafetensors(STEP);
    const release: Record<string, TensorToWrite> = {};
    for (const [name, t] of Object.entries(fx.tensors)) if (name.startsWith('state.')) release[name.slice(6)] = { data: t.data, shape: t.shape };
    const file = join(dir, 'release.safetensors');
    await writeSafetensors(file, release);
    expect(await codeOf(PromptModel.load(clip, file))).toBe('ERR_INVALID_ARGUMENT');
    // Four classes cannot hold a bank of 5 classes × 5 slots: another class list.
    expect(await codeOf(PromptModel.load(clip, file, { classNames: NAMES.slice(0, 4) }))).toBe('ERR_MISMATCH');
    using p = await PromptModel.load(clip, file, { classNames: NAMES });
    const state = await p.state();
    expect(Array.from(state['image_tokens.lin.weight']!.data)).toEqual(Array.from(fx.tensors['state.image_tokens.lin.weight']!.data as Float32Array));
    expect(Object.keys(state).some((k) => k.startsWith('style_mapping_tokens.'))).toBe(false);
    const { ignored } = await readCheckpoint(file);
    expect(ignored).toContain('style_mapping_tokens.linear1.0.weight');
    expect(ignored).toContain('attn_block.pre_project.1.num_batches_tracked');
    // A release state missing a prompt parameter is incomplete.
    delete release['image_tokens.lin.weight'];
    await writeSafetensors(file, release);
    expect(await codeOf(PromptModel.load(clip, file, { classNames: NAMES }))).toBe('ERR_BAD_WEIGHTS');
  });

  it('refuses a checkpoint of another CLIP or other class names (ERR_MISMATCH)', async () => {
    using prompt = await PromptModel.create(clip, NAMES, { seed: 1 });
    const file = join(dir, 'm.safetensors');
    await prompt.save(file);
    expect(await codeOf(PromptModel.load(clip, file, { classNames: [...NAMES].reverse() }))).toBe('ERR_MISMATCH');
    const other = join(dir, 'other.safetensors');
    await editMeta(file, other, (m) => { (m.clip as { fingerprint: string }).fingerprint = 'not-this-clip'; });
    expect(await codeOf(PromptModel.load(clip, other))).toBe('ERR_MISMATCH');
    await editMeta(file, other, (m) => { (m.clip as { config: { embedDim: number } }).config.embedDim = 512; });
    expect(await codeOf(PromptModel.load(clip, other))).toBe('ERR_MISMATCH');
  });

  it('rejects malformed metadata as ERR_BAD_FILE and never treats it as anything but data', async () => {
    using prompt = await PromptModel.create(clip, NAMES, { seed: 1 });
    const file = join(dir, 'b.safetensors');
    await prompt.save(file);
    const bad = join(dir, 'bad.safetensors');
    const c = await readSafetensors(file);
    await writeSafetensors(bad, c.tensors as Record<string, TensorToWrite>, { ipclip: '{not json' });
    expect(await codeOf(PromptModel.load(clip, bad))).toBe('ERR_BAD_FILE');
    await editMeta(file, bad, (m) => { m.classNames = 'alarm_clock'; });
    expect(await codeOf(PromptModel.load(clip, bad))).toBe('ERR_BAD_FILE');
    await editMeta(file, bad, (m) => { m.format = 99; });
    expect(await codeOf(PromptModel.load(clip, bad))).toBe('ERR_BAD_FILE');
    expect(() => parseMeta('{"format":1,"classNames":["a"],"clip":{"config":{},"fingerprint":"x"},"seed":0,"nCtx":10}'))
      .toThrow(/clip\.config/);
    expect(await codeOf(PromptModel.load(clip, join(dir, 'missing.safetensors')))).toBe('ERR_FILE_NOT_FOUND');
  });

  it('round-trips optimiser moments and training metadata (NaN means survive as NaN)', async () => {
    const file = join(dir, 'train.safetensors');
    const meta: CheckpointMeta = {
      format: 1, classNames: ['a', 'b'], clip: { config: clip.config, fingerprint: 'f' }, seed: 3, nCtx: 10,
      training: {
        scenario: 'ownership', preset: 'paper', epochs: 2, batchSize: 4, lr: 0.01, weightDecay: 5e-4, trainEnhancer: false, featureCache: false,
        iteration: 3, epoch: 1, seed: 9, totalIterations: 4, optimizerStep: 3, lastLr: 0.005, skippedUpdates: 1,
        streamSeeds: { authorized: 11, unauthorized: 12 },
        history: [{ epoch: 0, iterations: 2, skipped: 2, terms: { loss: NaN }, lr: 0.01 }],
        accumulator: { sums: { loss: 1.5 }, count: 1, skipped: 0 },
      },
    };
    const w = { data: Float32Array.from([1, 2, 3]), shape: [3] };
    await writeCheckpoint(file, { state: { 'image_tokens.lin.bias': w }, optimizer: { 'exp_avg.image_tokens.lin.bias': w }, meta });
    const raw = await readSafetensors(file);
    expect(Object.keys(raw.tensors).sort()).toEqual(['image_tokens.lin.bias', 'optim.exp_avg.image_tokens.lin.bias']);
    const back = await readCheckpoint(file);
    expect(Array.from(back.optimizer!['exp_avg.image_tokens.lin.bias']!.data)).toEqual([1, 2, 3]);
    expect(Object.keys(back.state)).toEqual(['image_tokens.lin.bias']);
    expect(back.meta!.training!.history[0]!.terms.loss).toBeNaN();
    expect({ ...back.meta!.training!, history: [] }).toEqual({ ...meta.training!, history: [] });
  });
});

describe('run record', () => {
  const base = {
    format: 1, classNames: ['a', 'b'], seed: 0, nCtx: 4,
    clip: { fingerprint: 'ab', config: { embedDim: 8, vision: { width: 8, layers: 1, heads: 1, patchSize: 8, imageSize: 32 },
      text: { width: 8, layers: 1, heads: 1, contextLength: 16, vocabSize: 100 } } },
  };
  const split = {
    rule: 'path-hash', version: 1, seed: 3, sizes: { train: 4, test: 2 }, preset: null, trainFraction: null, onBadImage: 'skip',
    listed: 10, nTrain: 4, nTest: 2, trainFrom: '8000000000000000', testUpTo: '1000000000000000',
  };
  const run: RunRecord = {
    scenario: 'target-specified', data: { root: 'data', resolved: '/x/data' }, authorized: 'photo', unauthorized: 'sketch',
    split: split as RunRecord['split'], unauthorizedSplit: { ...split, trainFrom: null, nTrain: 0 } as RunRecord['split'],
    skippedImages: [{ path: '/x/data/photo/a/bad.png', reason: 'empty (0 bytes)' }],
  };

  it('round-trips through the metadata and rejects a malformed one', () => {
    expect(parseMeta(JSON.stringify({ ...base, run })).run).toEqual(run);
    const bad = (edit: (r: Record<string, unknown>) => void) => {
      const r = JSON.parse(JSON.stringify(run)) as Record<string, unknown>;
      edit(r);
      return () => parseMeta(JSON.stringify({ ...base, run: r }));
    };
    expect(bad((r) => { r.authorized = 3; })).toThrow(expect.objectContaining({ code: 'ERR_BAD_FILE' }));
    expect(bad((r) => { (r.split as Record<string, unknown>).trainFrom = '../../etc'; })).toThrow(/split key/);
    expect(bad((r) => { (r.split as Record<string, unknown>).rule = 'shuffle'; })).toThrow(expect.objectContaining({ code: 'ERR_BAD_FILE' }));
    expect(bad((r) => { r.skippedImages = 'none'; })).toThrow(expect.objectContaining({ code: 'ERR_BAD_FILE' }));
  });

  it('names the first setting two runs differ in', () => {
    expect(runDifference(run, JSON.parse(JSON.stringify(run)) as RunRecord)).toBeNull();
    expect(runDifference(run, { ...run, unauthorized: 'clipart' })).toEqual(['the unauthorized domain', 'sketch', 'clipart']);
    expect(runDifference(run, { ...run, data: { root: 'd2', resolved: '/y' } })).toEqual(['the data root', '/x/data', '/y']);
    expect(runDifference(run, { ...run, split: { ...run.split!, sizes: { train: 5, test: 2 } } })).toEqual(['the split sizes', '4/2', '5/2']);
    expect(runDifference(run, { ...run, split: { ...run.split!, onBadImage: 'error' } })).toEqual(['the split onBadImage', 'skip', 'error']);
    // Counts and key ranges are results, not settings: a resumed run may see them unchanged or not.
    expect(runDifference(run, { ...run, split: { ...run.split!, nTrain: 3 } })).toBeNull();
  });
});
