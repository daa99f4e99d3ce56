// One concurrency model (lib/core/queue.ts): Clip, PromptModel and the pretrainer hand their native calls to the
// addon one at a time, in call order, from a JS queue; a prompt model shares its CLIP's queue (the native side
// locks both). Observed on the raw binding objects: how many calls are inside the addon at once, and in which order
// they entered.
import { describe, expect, it } from 'vitest';
import { Clip } from '../lib/clip/clip.js';
import { IpclipError } from '../lib/core/errors.js';
import { SerialQueue } from '../lib/core/queue.js';
import { Rng } from '../lib/core/rng.js';
import type { ImageTensor } from '../lib/core/tensor.js';
import { PromptModel } from '../lib/ipclip/prompt-model.js';
import { IPTrainer } from '../lib/ipclip/trainer/trainer.js';
import { CLIP_TINY, HAVE_SHARED, TEST_DEVICE, VOCAB_PATH } from './helpers/fixtures.js';

function images(n: number, seed: number): ImageTensor {
  const rng = new Rng(seed);
  return { data: Float32Array.from({ length: n * 3 * 32 * 32 }, () => rng.normal()), shape: [n, 3, 32, 32] };
}

/** Wraps `obj[name]` to record entry order (by `tag`) and the most calls in flight at once (shared `meter`). */
function instrument(obj: object, name: string, tag: (args: unknown[]) => string, meter: { now: number; max: number; order: string[] }): void {
  const target = obj as Record<string, (...a: unknown[]) => Promise<unknown>>;
  const original = target[name]!.bind(obj);
  // The binding's methods are read-only on its prototype: shadow them with an own property.
  Object.defineProperty(obj, name, {
    configurable: true,
    value: (...args: unknown[]) => {
      meter.order.push(tag(args));
      meter.max = Math.max(meter.max, ++meter.now);
      return Promise.resolve(original(...args)).finally(() => { meter.now--; });
    },
  });
}

describe('SerialQueue', () => {
  it('runs tasks one at a time in order, passes results and rejections through, and keeps going after a failure', async () => {
    const q = new SerialQueue();
    const log: string[] = [];
    const task = (name: string, fail = false) => () => new Promise<string>((resolve, reject) => {
      log.push(`start ${name}`);
      setImmediate(() => { log.push(`end ${name}`); if (fail) reject(new Error(name)); else resolve(name); });
    });
    const results = await Promise.allSettled([q.run(task('a')), q.run(task('b', true)), q.run(() => { throw new Error('c'); }), q.run(task('d'))]);
    expect(log).toEqual(['start a', 'end a', 'start b', 'end b', 'start d', 'end d']);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'fulfilled']);
    expect((results[3] as PromiseFulfilledResult<string>).value).toBe('d');
    expect(q.pending).toBe(0);
  });
});

describe.skipIf(!HAVE_SHARED)('PromptModel and Clip share one JS queue', () => {
  it('N concurrent calls enter the addon one at a time, in call order, all settle, and the event loop keeps turning', async () => {
    const clip = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, device: TEST_DEVICE });
    const prompt = await PromptModel.create(clip, ['alarm_clock', 'backpack', 'bike'], { seed: 2 });
    try {
      const meter = { now: 0, max: 0, order: [] as string[] };
      const shapeTag = (what: string) => (args: unknown[]) => `${what}${(args[1] as number[])[0]}`;
      instrument(prompt.native, 'logits', shapeTag('p'), meter);
      instrument(clip.nativeModel, 'encodeImage', shapeTag('c'), meter);

      let ticks = 0;
      let turning = true;
      const tick = () => { ticks++; if (turning) setImmediate(tick); };
      setImmediate(tick);

      // Call i uses a batch of i + 1 images, so the entry order is visible; CLIP calls are interleaved.
      const N = 6;
      const calls: Promise<unknown>[] = [];
      const expected: string[] = [];
      for (let i = 0; i < N; i++) {
        calls.push(prompt.logits(images(i + 1, i)));
        expected.push(`p${i + 1}`);
        if (i % 2 === 1) { calls.push(clip.encodeImage(images(i + 1, 100 + i))); expected.push(`c${i + 1}`); }
      }
      const settled = await Promise.allSettled(calls);
      turning = false;
      expect(settled.every((r) => r.status === 'fulfilled')).toBe(true);
      expect(meter.max).toBe(1);
      expect(meter.order).toEqual(expected);
      expect((settled[0] as PromiseFulfilledResult<{ logits: { shape: number[] } }>).value.logits.shape).toEqual([1, 3]);
      // Every call after the first waits for its predecessor's completion, which arrives in a new loop iteration.
      expect(ticks).toBeGreaterThanOrEqual(calls.length - 1);
    } finally {
      prompt.dispose();
      clip.dispose();
    }
  });

  it("the trainer's native calls go through the same queue: a step and a prompt call never overlap in the addon", async () => {
    const clip = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, device: TEST_DEVICE });
    const prompt = await PromptModel.create(clip, ['alarm_clock', 'backpack', 'bike'], { seed: 3 });
    try {
      const meter = { now: 0, max: 0, order: [] as string[] };
      instrument(prompt.native, 'logits', (a) => `p${(a[1] as number[])[0]}`, meter);
      instrument(prompt.native, 'step', (a) => `s${(a[1] as number[])[0]}`, meter);
      instrument(prompt.native, 'optimizerState', () => 'o', meter);
      const trainer = new IPTrainer(prompt, { scenario: 'target-specified', epochs: 1, batchSize: 2, seed: 1 });
      const batch = (n: number, seed: number) => ({ images: images(n, seed), labels: Int32Array.from({ length: n }, (_, i) => i % 3) });
      const calls: Promise<unknown>[] = [
        prompt.logits(images(1, 1)),
        trainer.step(batch(2, 2), batch(2, 3)),
        prompt.logits(images(3, 4)),
        trainer.step(batch(4, 5), batch(4, 6), { update: false }),
        trainer.saveCheckpoint('/nonexistent-dir/never-written.safetensors').catch(() => 'io error expected'),
      ];
      const settled = await Promise.allSettled(calls);
      expect(settled.every((r) => r.status === 'fulfilled')).toBe(true);
      expect(meter.max).toBe(1);
      expect(meter.order).toEqual(['p1', 's2', 'p3', 's4', 'o']);
    } finally {
      prompt.dispose();
      clip.dispose();
    }
  });

  it('calls queued behind a dispose reject ERR_DISPOSED; none hangs', async () => {
    const clip = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, device: TEST_DEVICE });
    const prompt = await PromptModel.create(clip, ['alarm_clock', 'backpack'], { seed: 4 });
    try {
      const calls = [prompt.logits(images(2, 1)), prompt.logits(images(2, 2)), prompt.logits(images(2, 3))];
      prompt.dispose();
      const settled = await Promise.allSettled(calls);
      expect(settled[0]!.status).toBe('fulfilled'); // already inside the addon: it finishes
      for (const r of settled.slice(1)) {
        expect(r.status).toBe('rejected');
        expect((r as PromiseRejectedResult).reason).toBeInstanceOf(IpclipError);
        expect(((r as PromiseRejectedResult).reason as IpclipError).code).toBe('ERR_DISPOSED');
      }
    } finally {
      prompt.dispose();
      clip.dispose();
    }
  });
});
