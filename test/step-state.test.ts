// What a training step keeps and what a checkpoint carries besides the parameters (issue 9 items 5 and 10): the
// float16 loss scale and the compute dtype travel through checkpoints, resuming under another dtype is refused,
// and gradients are copied to the host only for steps that keep them.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCheckpoint } from '../lib/ipclip/checkpoint.js';
import { Clip } from '../lib/clip/clip.js';
import { IpclipError } from '../lib/core/errors.js';
import { callNative } from '../lib/native/errors.js';
import { PromptModel } from '../lib/ipclip/prompt-model.js';
import { Rng } from '../lib/core/rng.js';
import type { ImageTensor } from '../lib/core/tensor.js';
import { IPTrainer } from '../lib/ipclip/trainer/trainer.js';
import { CLIP_TINY, HAVE_SHARED, TEST_DEVICE, VOCAB_PATH } from './helpers/fixtures.js';

const CLASSES = ['blue', 'green', 'red'];

async function errorOf(p: Promise<unknown> | (() => unknown)): Promise<IpclipError> {
  const err = await (typeof p === 'function' ? Promise.resolve().then(p) : p).then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(IpclipError);
  return err as IpclipError;
}

function randomImages(rng: Rng, n: number): ImageTensor {
  const data = new Float32Array(n * 3 * 32 * 32);
  for (let i = 0; i < data.length; i++) data[i] = rng.next() * 2 - 1;
  return { data, shape: [n, 3, 32, 32] };
}

describe.skipIf(!HAVE_SHARED)('step state', () => {
  let clip: Clip;
  const tmp = mkdtempSync(join(tmpdir(), 'ipclip-step-state-'));
  beforeAll(async () => {
    clip = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, device: TEST_DEVICE });
  });
  afterAll(() => {
    clip?.dispose();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('a checkpoint carries the loss scale and the compute dtype, and a resume restores the scale', async () => {
    using prompt = await PromptModel.create(clip, CLASSES, { seed: 2 });
    const trainer = new IPTrainer(prompt, { scenario: 'target-specified', batchSize: 2, seed: 2 });
    const native = prompt.native;
    expect((await callNative(() => native.optimizerState())).lossScale).toEqual({ scale: 65536, goodSteps: 0 });
    await callNative(() => native.setOptimizerState({ step: 0, tensors: {}, lossScale: { scale: 1024, goodSteps: 17 } }));
    const file = join(tmp, 'scale.safetensors');
    await trainer.saveCheckpoint(file);
    const meta = (await readCheckpoint(file)).meta!;
    expect(meta.training!.lossScale).toEqual({ scale: 1024, goodSteps: 17 });
    expect(meta.training!.dtype).toBe('float32');

    using resumed = await PromptModel.create(clip, CLASSES, { seed: 2 });
    await new IPTrainer(resumed, { scenario: 'target-specified', batchSize: 2, seed: 2 }).restore(file);
    expect((await callNative(() => resumed.native.optimizerState())).lossScale).toEqual({ scale: 1024, goodSteps: 17 });

    // A scale the loss-scale rule could never reach is refused, and nothing changes.
    const bad = await errorOf(callNative(() => native.setOptimizerState({ step: 3, tensors: {}, lossScale: { scale: 0.25, goodSteps: 0 } })));
    expect(bad.code).toBe('ERR_BAD_WEIGHTS');
    const after = await callNative(() => native.optimizerState());
    expect([after.step, after.lossScale]).toEqual([0, { scale: 1024, goodSteps: 17 }]);
  });

  it('resuming under another compute dtype is ERR_MISMATCH naming both dtypes', async () => {
    using prompt = await PromptModel.create(clip, CLASSES, { seed: 3 });
    const file = join(tmp, 'fp32.safetensors');
    await new IPTrainer(prompt, { scenario: 'target-specified', batchSize: 2, seed: 3 }).saveCheckpoint(file);
    const bf16 = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, device: TEST_DEVICE, dtype: 'bfloat16' });
    try {
      expect(bf16.info.fingerprint).toBe(clip.info.fingerprint); // the same weights: only the dtype differs
      using other = await PromptModel.create(bf16, CLASSES, { seed: 3 });
      const e = await errorOf(new IPTrainer(other, { scenario: 'target-specified', batchSize: 2, seed: 3 }).restore(file));
      expect(e.code).toBe('ERR_MISMATCH');
      expect(e.message).toContain('compute dtype');
      expect(e.message).toContain('float32');
      expect(e.message).toContain('bfloat16');
    } finally {
      bf16.dispose();
    }
  });

  it('gradients are kept by update: false and keepGradients steps only, and are the same either way', async () => {
    using prompt = await PromptModel.create(clip, CLASSES, { seed: 4 });
    const trainer = new IPTrainer(prompt, { scenario: 'target-specified', batchSize: 3, seed: 4 });
    const rng = new Rng(5);
    const a = { images: randomImages(rng, 3), labels: Int32Array.from([0, 1, 2]) };
    const u = { images: randomImages(rng, 3), labels: Int32Array.from([2, 0, 1]) };
    expect(prompt.gradients()).toEqual({}); // no step yet
    await trainer.step(a, u, { update: false });
    const probe = prompt.gradients();
    expect(Object.keys(probe).length).toBeGreaterThan(0);
    // The same parameters (update: false changed nothing), so a kept training step's gradients are these.
    await trainer.step(a, u, { keepGradients: true });
    const kept = prompt.gradients();
    expect(Object.keys(kept).sort()).toEqual(Object.keys(probe).sort());
    for (const k of Object.keys(probe)) expect(Array.from(kept[k]!.data), k).toEqual(Array.from(probe[k]!.data));
    // A plain training step leaves them on the device: asking afterwards is an error, not a stale answer.
    await trainer.step(a, u);
    const e = await errorOf(() => prompt.gradients());
    expect(e.code).toBe('ERR_INVALID_ARGUMENT');
    expect(e.message).toContain('keepGradients');
    await trainer.step(a, u, { update: false });
    expect(Object.keys(prompt.gradients()).length).toBe(Object.keys(probe).length);
    // float32 towers: the loss is not scaled, so the float16 scale neither counts nor moves.
    expect((await callNative(() => prompt.native.optimizerState())).lossScale).toEqual({ scale: 65536, goodSteps: 0 });
  });

  // Run by scripts/gpu-check.sh (IPCLIP_DEVICE=cuda); CPU runs skip them.
  it.skipIf(!TEST_DEVICE.startsWith('cuda'))('CUDA: float32 runs without TF32; float16 steps count towards the scale', async () => {
    expect(clip.info.tf32).toBe(false);
    const half = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, device: TEST_DEVICE, dtype: 'float16' });
    try {
      using prompt = await PromptModel.create(half, CLASSES, { seed: 6 });
      const trainer = new IPTrainer(prompt, { scenario: 'target-specified', batchSize: 2, seed: 6 });
      const rng = new Rng(7);
      const a = { images: randomImages(rng, 2), labels: Int32Array.from([0, 1]) };
      const u = { images: randomImages(rng, 2), labels: Int32Array.from([2, 0]) };
      // An overflow (likely in the first steps at 2^16) halves the scale and restarts the count of finite steps.
      let want = { scale: 65536, goodSteps: 0 };
      for (let i = 0; i < 4; i++) {
        const skipped = (await trainer.step(a, u)).skipped;
        want = skipped ? { scale: Math.max(1, want.scale / 2), goodSteps: 0 } : { scale: want.scale, goodSteps: want.goodSteps + 1 };
      }
      expect((await callNative(() => prompt.native.optimizerState())).lossScale).toEqual(want);
      await trainer.step(a, u, { keepGradients: true });
      const grads = prompt.gradients();
      expect(Object.values(grads).every((g) => g.data.every(Number.isFinite))).toBe(true);
    } finally {
      half.dispose();
    }
  });
});
