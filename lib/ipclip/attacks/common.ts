/**
 * What every attack of the suite shares: image sets held in memory as preprocessed tensors, accuracy of a prompt
 * and of zero-shot CLIP on them, a working copy of the attacked prompt (the caller's is never changed), the
 * seeded split of the unauthorized training images into the attacker's pool and a labelled validation split, and
 * the training loop that drives the prompt's native step with the attack's loss weights as data.
 */
import type { Clip } from '../../clip/clip.js';
import { argmaxRows, softmaxRows } from '../../clip/similarity.js';
import { IpclipError, check } from '../../core/errors.js';
import { Rng } from '../../core/rng.js';
import type { FloatTensor, ImageTensor, Tensor } from '../../core/tensor.js';
import type { DomainDataset } from '../../data/dataset.js';
import { BatchLoader } from '../../data/loader.js';
import type { AttackLossWeights, NativeStepOptions } from '../../native/types.js';
import { accuracy } from '../metrics.js';
import { PromptModel } from '../prompt-model.js';

/**
 * A set of images held in memory: preprocessed `[N, 3, S, S]` (CLIP's test transform) and their labels.
 * @category Attacks
 */
export interface ImageSet {
  images: ImageTensor;
  labels: Int32Array;
}

/** Number of images of a set. */
export function sizeOf(set: ImageSet): number {
  return set.labels.length;
}

/** Images `indices` of a set, copied, in that order. */
export function pick(set: ImageSet, indices: ArrayLike<number>): ImageSet {
  const [, c, h, w] = set.images.shape as [number, number, number, number];
  const plane = c * h * w;
  const data = new Float32Array(indices.length * plane);
  const labels = new Int32Array(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const j = indices[i]!;
    data.set(set.images.data.subarray(j * plane, (j + 1) * plane), i * plane);
    labels[i] = set.labels[j]!;
  }
  return { images: { data, shape: [indices.length, c, h, w] }, labels };
}

/**
 * Reads a dataset into memory with CLIP's test transform (optionally watermarked, method §5).
 * @throws IpclipError `ERR_EMPTY_INPUT` for an empty dataset; loader errors.
 */
export async function loadImageSet(dataset: DomainDataset, size: number, opts: { watermark?: boolean; workers?: number } = {}): Promise<ImageSet> {
  if (dataset.length === 0) throw new IpclipError('ERR_EMPTY_INPUT', `the set '${dataset.domain}' has no samples`);
  const loader = new BatchLoader(dataset, {
    batchSize: 64, size, seed: 0, shuffle: false, transform: { augment: 'test', watermark: opts.watermark === true },
    ...(opts.workers !== undefined ? { workers: opts.workers } : {}),
  });
  const plane = 3 * size * size;
  const data = new Float32Array(dataset.length * plane);
  const labels = new Int32Array(dataset.length);
  let at = 0;
  try {
    for await (const b of loader.epoch(0)) {
      data.set(b.images.data, at * plane);
      labels.set(b.labels, at);
      at += b.labels.length;
    }
  } finally {
    await loader.close();
  }
  return { images: { data, shape: [dataset.length, 3, size, size] }, labels };
}

/** Batches of at most `batch` images of a set, as views. */
function* batches(set: ImageSet, batch: number): Generator<ImageTensor> {
  const [n, c, h, w] = set.images.shape as [number, number, number, number];
  const plane = c * h * w;
  for (let i = 0; i < n; i += batch) {
    const m = Math.min(batch, n - i);
    yield { data: set.images.data.subarray(i * plane, (i + m) * plane), shape: [m, c, h, w] };
  }
}

/** The prompt's predictions on a set. */
export async function promptPredictions(prompt: PromptModel, set: ImageSet, batch = 64): Promise<Int32Array> {
  const out = new Int32Array(sizeOf(set));
  let at = 0;
  for (const b of batches(set, batch)) {
    out.set(await prompt.predict(b), at);
    at += b.shape[0]!;
  }
  return out;
}

/** Top-1 accuracy of the prompt on a set. */
export async function promptAccuracy(prompt: PromptModel, set: ImageSet): Promise<number> {
  return accuracy(await promptPredictions(prompt, set), set.labels);
}

/**
 * Zero-shot CLIP on in-memory sets: the class texts encoded once (`template`, `{}` = the class name with `_` as
 * spaces), logits `exp(logit_scale)·cos`, as `Clip.classify` computes them.
 */
export class ZeroShot {
  private constructor(private readonly clip: Clip, private readonly text: FloatTensor) {}

  static async create(clip: Clip, classNames: readonly string[], template = 'a photo of a {}.'): Promise<ZeroShot> {
    check(template.includes('{}'), 'zero-shot template must contain {}');
    const t = await clip.encodeText(classNames.map((c) => template.replaceAll('{}', c.replace(/_/g, ' '))));
    return new ZeroShot(clip, normaliseRows(t));
  }

  /** Class probabilities `[N, C]` (softmax of the scaled cosine similarities). */
  async probabilities(set: ImageSet): Promise<FloatTensor> {
    const c = this.text.shape[0]!;
    const out = new Float32Array(sizeOf(set) * c);
    let at = 0;
    for (const b of batches(set, 64)) {
      const f = normaliseRows(await this.clip.encodeImage(b));
      const n = f.shape[0]!;
      const d = f.shape[1]!;
      const logits = new Float32Array(n * c);
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < c; j++) {
          let s = 0;
          for (let k = 0; k < d; k++) s += f.data[i * d + k]! * this.text.data[j * d + k]!;
          logits[i * c + j] = this.clip.logitScale * s;
        }
      }
      out.set(softmaxRows({ data: logits, shape: [n, c] }).data, at * c);
      at += n;
    }
    return { data: out, shape: [sizeOf(set), c] };
  }

  async accuracy(set: ImageSet): Promise<number> {
    return accuracy(argmaxRows(await this.probabilities(set)), set.labels);
  }
}

function normaliseRows(t: FloatTensor): FloatTensor {
  const [n, d] = t.shape as [number, number];
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let k = 0; k < d; k++) s += t.data[i * d + k]! ** 2;
    const norm = Math.sqrt(s) || 1;
    for (let k = 0; k < d; k++) out[i * d + k] = t.data[i * d + k]! / norm;
  }
  return { data: out, shape: [n, d] };
}

/**
 * A working copy of `prompt` (same CLIP, classes, parameters, enhancement module and banks; fresh optimiser
 * state). The attacks train copies, never the caller's prompt.
 */
export async function copyPrompt(prompt: PromptModel): Promise<PromptModel> {
  const copy = await PromptModel.create(prompt.clip, prompt.classNames, { seed: prompt.seed, textPath: prompt.textPath });
  try {
    await copy.setState((await prompt.state()) as Record<string, Tensor>);
  } catch (err) {
    copy.dispose();
    throw err;
  }
  return copy;
}

/** A seeded permutation of 0..n−1. */
export function permutation(n: number, rng: Rng): number[] {
  return rng.shuffle(Array.from({ length: n }, (_, i) => i));
}

/**
 * `fraction` of a set's indices, at least one per class present and at least `min` in all, drawn class-balanced
 * from the seeded permutation `order` (the first images of each class in that order, round robin).
 */
export function stratifiedPick(labels: Int32Array, order: readonly number[], fraction: number, min = 1): number[] {
  const want = Math.max(min, Math.round(fraction * order.length));
  const byClass = new Map<number, number[]>();
  for (const i of order) {
    const l = labels[i]!;
    if (!byClass.has(l)) byClass.set(l, []);
    byClass.get(l)!.push(i);
  }
  const queues = [...byClass.keys()].sort((a, b) => a - b).map((k) => byClass.get(k)!);
  const out: number[] = [];
  for (let round = 0; out.length < Math.min(want, order.length); round++) {
    for (const q of queues) {
      if (round < q.length && out.length < want) out.push(q[round]!);
    }
  }
  return out;
}

/**
 * What a training attack trains on: its images and labels (labels unused by unlabelled objectives) and, for
 * distillation, each image's soft targets `[N, C]`.
 */
export interface TrainData {
  set: ImageSet;
  softTargets?: FloatTensor;
}

/** One training attack's loop settings. */
export interface TrainLoop {
  steps: number;
  evalEvery: number;
  batchSize: number;
  lr: number;
  weightDecay: number;
  seed: number;
  /** The step's loss weights on the one (authorized-side) batch; undefined: plain CE (the reference's step). */
  weights?: AttackLossWeights;
  signal?: AbortSignal;
  onStep?: (step: number) => void;
}

/** What {@link trainAttack} returns: the selected state, when it was taken, and the cost. */
export interface TrainOutcome {
  /** Steps run in all. */
  steps: number;
  /** The step whose state was selected (the best validation accuracy; the first on ties). */
  selectedStep: number;
  /** Validation accuracy at every evaluation, `[step, accuracy]`. */
  curve: [number, number][];
  seconds: number;
}

/**
 * Trains `prompt` in place for `loop.steps` steps on `data` (the vision tower's features cached once: the test
 * transform, no augmentation), evaluating on `validation` every `evalEvery` steps, and leaves the prompt in the
 * state of the best evaluation (the attacker-optimistic rule: the attacker is granted labelled validation data of
 * the unauthorized domain to pick its checkpoint). Step 0 (the untouched prompt) is not a candidate.
 */
export async function trainAttack(prompt: PromptModel, data: TrainData, validation: ImageSet, loop: TrainLoop): Promise<TrainOutcome> {
  const n = sizeOf(data.set);
  if (n === 0) throw new IpclipError('ERR_EMPTY_INPUT', 'an attack got no training images');
  check(Number.isInteger(loop.steps) && loop.steps >= 1, `attack steps must be a positive integer, got ${loop.steps}`);
  check(Number.isInteger(loop.evalEvery) && loop.evalEvery >= 1, `attack evalEvery must be a positive integer, got ${loop.evalEvery}`);
  const t0 = performance.now();
  const classes = prompt.numClasses;
  // The native step's batch statistics need two images (the enhancement branch is unused here, but a batch of
  // one is refused the same way everywhere); a single image is simply repeated.
  const train = n === 1 ? pick(data.set, [0, 0]) : data.set;
  const size = sizeOf(train);
  const soft = data.softTargets && n === 1
    ? { data: Float32Array.from([...data.softTargets.data, ...data.softTargets.data]), shape: [2, classes] }
    : data.softTargets;
  await prompt.exclusive('attack cache', (native) => native.clearFeatures());
  const all = Int32Array.from({ length: size }, (_, i) => i);
  await prompt.exclusive('attack cache', (native) => native.cacheFeatures('authorized', size, all, train.images.data, [...train.images.shape]));
  const batch = Math.max(2, Math.min(loop.batchSize, size));
  const rng = new Rng(loop.seed).fork('attack-order');
  // Seeded passes over the images; a batch that reaches a pass's end continues into the next pass (without
  // repeating an image inside one batch).
  let order: number[] = permutation(size, rng);
  const next = (): number[] => {
    if (order.length >= batch) return order.splice(0, batch);
    const rest = order;
    const fresh = permutation(size, rng);
    const others = fresh.filter((i) => !rest.includes(i));
    const need = batch - rest.length;
    order = [...others.slice(need), ...fresh.filter((i) => rest.includes(i))];
    return [...rest, ...others.slice(0, need)];
  };
  const empty = new Int32Array(0);
  const curve: [number, number][] = [];
  let best = -1;
  let bestState: Awaited<ReturnType<PromptModel['state']>> | null = null;
  let selectedStep = 0;
  for (let step = 1; step <= loop.steps; step++) {
    if (loop.signal?.aborted) throw new IpclipError('ERR_ABORTED', 'the attack suite was stopped');
    const idx = next();
    const indices = Int32Array.from(idx);
    const labels = Int32Array.from(idx, (i) => train.labels[i]!);
    const opts: NativeStepOptions = {
      unauthorized: false, lr: loop.lr, weightDecay: loop.weightDecay,
      ...(loop.weights ? { lossWeights: loop.weights } : {}),
    };
    if (soft && loop.weights?.distillA) {
      const t = new Float32Array(idx.length * classes);
      idx.forEach((i, r) => t.set(soft.data.subarray(i * classes, (i + 1) * classes), r * classes));
      opts.distillTargets = { data: t, shape: [idx.length, classes] };
    }
    await prompt.exclusive('attack step', (native) => native.stepCached(indices, labels, empty, empty, opts));
    loop.onStep?.(step);
    if (step % loop.evalEvery === 0 || step === loop.steps) {
      const acc = await promptAccuracy(prompt, validation);
      curve.push([step, acc]);
      if (acc > best) {
        best = acc;
        bestState = await prompt.state();
        selectedStep = step;
      }
    }
  }
  await prompt.exclusive('attack cache', (native) => native.clearFeatures());
  if (bestState && selectedStep !== loop.steps) await prompt.setState(bestState as Record<string, Tensor>);
  return { steps: loop.steps, selectedStep, curve, seconds: (performance.now() - t0) / 1000 };
}
