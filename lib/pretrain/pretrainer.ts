/**
 * Contrastive pretraining of a small CLIP from scratch ({@link ClipPretrainer}): both towers are trained on
 * image–caption pairs with CLIP's symmetric InfoNCE loss and learnable temperature, AdamW, a linear warm-up
 * and a cosine decay. The model is saved with OpenAI's parameter names so {@link Clip.load} reads it back.
 * The native side is native/pretrain/pretrain.cpp (loss, optimiser) and native/clip/init.cpp (initialisation).
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { BatchLoader } from '../data/loader.js';
import { DomainDataset, type Sample } from '../data/dataset.js';
import { IpclipError, check } from '../core/errors.js';
import { writeFileAtomic } from '../core/fs.js';
import { cosineAnneal, linearWarmup } from '../core/schedule.js';
import { queueOf } from '../core/queue.js';
import { assertPositiveInteger } from '../core/is.js';
import { checkRawImage, decodeImage, type ImageInput, type RawImage } from '../image/decode.js';
import { loadNative } from '../native/load.js';
import { callNative, callNativeSync } from '../native/errors.js';
import type { ClipConfig, NativePretrainer, PretrainStepStats } from '../native/types.js';
export type { NativePretrainer, PretrainStepStats } from '../native/types.js';
import { preprocess } from '../image/preprocess.js';
import { Rng } from '../core/rng.js';
import { writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import type { ImageTensor, Tensor } from '../core/tensor.js';
import { ClipTokenizer } from '../clip/tokenizer/tokenizer.js';

/**
 * The architecture to pretrain. `text.vocabSize` may be left out: it is then the vocabulary's size.
 * @category Pretraining
 */
export interface PretrainConfig {
  embedDim: number;
  vision: ClipConfig['vision'];
  text: Omit<ClipConfig['text'], 'vocabSize'> & { vocabSize?: number };
}


/**
 * Options of {@link ClipPretrainer.create}.
 * @category Pretraining
 */
export interface PretrainerOptions {
  /** Tokenizer vocabulary: a path (OpenAI format, e.g. `vocab.txt.gz`) whose file is also saved with the model. */
  vocab: string;
  /** Seed of the initial weights and of {@link ClipPretrainer.fit}'s data order and augmentation; default 0. */
  seed?: number;
  /** `'cpu'` (default), `'cuda'` or `'cuda:N'`. */
  device?: string;
}

/**
 * Image–caption pairs. Each image has one caption or several alternatives (one is drawn per use).
 * @category Pretraining
 */
export interface PretrainData {
  images: readonly ImageInput[];
  captions: readonly (string | readonly string[])[];
}

/**
 * Options of {@link ClipPretrainer.fit}.
 * @category Pretraining
 */
export interface FitOptions {
  /** Passes over the data (a positive integer). */
  epochs: number;
  /** Pairs per step (at least 2; capped at the number of pairs). Each epoch drops its last partial batch. */
  batchSize: number;
  /** Peak learning rate, reached after the warm-up; default 5e-4. */
  lr?: number;
  /** Linear warm-up steps from 0 to `lr`; default 5% of all steps. */
  warmup?: number;
  /** The cosine decays from `lr` to `minLr` at the last step; default 0. */
  minLr?: number;
  /** Decoupled weight decay (matrices only); default 0.1. */
  weightDecay?: number;
  /** Clip the global gradient norm to this; default 0 (no clipping). */
  gradClip?: number;
  /** RandomResizedCrop area range; default [0.6, 1] (mild: the objects must stay in view). */
  cropScale?: [number, number];
  /** Random horizontal flips; default true. */
  flip?: boolean;
  /** The batch loader's worker threads for decoding and augmentation (0: on the main thread); default 2. */
  workers?: number;
  /** Called after every step. */
  onProgress?: (p: FitProgress) => void;
  /** Stops after the current step; {@link FitResult.aborted} then says so (the model keeps what it learnt). */
  signal?: AbortSignal;
}

/**
 * Progress of {@link ClipPretrainer.fit}, after each step.
 * @category Pretraining
 */
export interface FitProgress extends PretrainStepStats {
  /** 1-based step of this fit, and the total. */
  step: number;
  totalSteps: number;
  /** 0-based epoch. */
  epoch: number;
  /** Learning rate used for the step. */
  lr: number;
  /** Seconds since fit started. */
  seconds: number;
}

/**
 * What {@link ClipPretrainer.fit} did.
 * @category Pretraining
 */
export interface FitResult {
  steps: number;
  seconds: number;
  aborted: boolean;
  /** Per step: loss, in-batch accuracy, learning rate. */
  history: { loss: number; accuracy: number; lr: number }[];
}

/**
 * Options of {@link ClipPretrainer.save}.
 * @category Pretraining
 */
export interface SaveOptions {
  /** Extra string metadata stored in the safetensors header. */
  metadata?: Record<string, string>;
}

/**
 * Learning rate of step `t` (0-based) out of `total`: linear warm-up from `lr/warmup` to `lr` over `warmup`
 * steps, then a cosine from `lr` down to `minLr` reached at the last step.
 * @category Pretraining
 */
export function cosineWarmupLr(t: number, total: number, opts: { lr: number; warmup: number; minLr?: number }): number {
  const { lr, warmup, minLr = 0 } = opts;
  check(Number.isInteger(t) && t >= 0 && Number.isInteger(total) && total > 0 && t < total, `step ${t} is not in [0, ${total})`);
  if (t < warmup) return linearWarmup(t + 1, warmup, 0, lr);
  const span = total - warmup - 1;
  if (span <= 0) return lr;
  return cosineAnneal(t - warmup, span, lr, minLr);
}

/** The OpenAI model-config JSON (the keys of OpenAI's `build_model`), plus the heads of the vision tower. */
export function openAiConfigJson(c: ClipConfig): Record<string, number> {
  return {
    embed_dim: c.embedDim,
    image_resolution: c.vision.imageSize,
    vision_layers: c.vision.layers,
    vision_width: c.vision.width,
    vision_heads: c.vision.heads,
    vision_patch_size: c.vision.patchSize,
    context_length: c.text.contextLength,
    vocab_size: c.text.vocabSize,
    transformer_width: c.text.width,
    transformer_heads: c.text.heads,
    transformer_layers: c.text.layers,
  };
}

/** Lossless PNG bytes of a decoded image (for the loader, which reads paths and encoded bytes). */
async function encodePng(img: RawImage): Promise<Buffer> {
  return sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } }).png({ compressionLevel: 1 }).toBuffer();
}

function checkConfig(c: PretrainConfig): void {
  check(c !== null && typeof c === 'object' && c.vision && c.text, 'config must be { embedDim, vision: {…}, text: {…} }');
  assertPositiveInteger(c.embedDim, 'config.embedDim', 4096);
  for (const key of ['width', 'layers', 'heads', 'patchSize', 'imageSize'] as const) assertPositiveInteger(c.vision[key], `config.vision.${key}`, 4096);
  for (const key of ['width', 'layers', 'heads', 'contextLength'] as const) assertPositiveInteger(c.text[key], `config.text.${key}`, 4096);
  // The weights loader infers heads as width/64 (OpenAI's rule): any other count would load as a different model.
  for (const [tower, t] of [['vision', c.vision], ['text', c.text]] as const) {
    const expected = Math.max(1, Math.floor(t.width / 64));
    check(t.heads === expected, `config.${tower}.heads must be max(1, width/64) = ${expected} (OpenAI's rule, which loading the saved weights assumes), got ${t.heads}`);
  }
}

/**
 * Trains a CLIP from scratch on image–caption pairs (both towers), natively.
 *
 * ```ts
 * const p = await ClipPretrainer.create(config, { vocab: 'vocab.txt.gz', seed: 0 });
 * await p.fit({ images, captions }, { epochs: 10, batchSize: 128, lr: 5e-4 });
 * await p.save('models/my-clip');            // model.safetensors + config.json + vocab.txt.gz
 * const clip = await Clip.load('models/my-clip/model.safetensors');
 * ```
 * @category Pretraining
 */
export class ClipPretrainer implements Disposable {
  /** The architecture being trained. */
  readonly config: ClipConfig;
  /** The tokenizer captions go through. */
  readonly tokenizer: ClipTokenizer;
  /** The seed given at creation. */
  readonly seed: number;
  #native: NativePretrainer | null;
  #vocabBytes: Buffer;
  #fits = 0;
  #busy = false;

  private constructor(native: NativePretrainer, tokenizer: ClipTokenizer, vocabBytes: Buffer, seed: number) {
    this.#native = native;
    this.config = callNativeSync(() => native.config);
    this.tokenizer = tokenizer;
    this.#vocabBytes = vocabBytes;
    this.seed = seed;
  }

  /**
   * A freshly initialised model (OpenAI's initialisation, drawn from `seed`). `config.text.vocabSize`, if given,
   * must equal the vocabulary's size (`ERR_MISMATCH` otherwise); heads must be max(1, width/64) per tower.
   */
  static async create(config: PretrainConfig, options: PretrainerOptions): Promise<ClipPretrainer> {
    checkConfig(config);
    check(options !== null && typeof options === 'object', 'ClipPretrainer.create: options { vocab } are required');
    const { vocab, seed = 0, device = 'cpu' } = options;
    check(typeof vocab === 'string' && vocab.length > 0, 'ClipPretrainer.create: options.vocab must be the path of a vocabulary file');
    check(Number.isInteger(seed) && seed >= 0 && seed <= 0xffffffff, `seed must be an integer from 0 to 4294967295, got ${String(seed)}`);
    check(typeof device === 'string', 'device must be a string');
    const tokenizer = ClipTokenizer.fromFile(vocab);
    const vocabBytes = await readFile(vocab);
    const vocabSize = config.text.vocabSize ?? tokenizer.vocabSize;
    if (vocabSize !== tokenizer.vocabSize) {
      throw new IpclipError('ERR_MISMATCH', `config.text.vocabSize is ${vocabSize} but the vocabulary ${vocab} has ${tokenizer.vocabSize} ids`);
    }
    const full: ClipConfig = { embedDim: config.embedDim, vision: { ...config.vision }, text: { ...config.text, vocabSize } };
    const native = callNativeSync(() => loadNative().createPretrainer(full, { seed, device }));
    return new ClipPretrainer(native, tokenizer, vocabBytes, seed);
  }

  #live(what: string): NativePretrainer {
    if (!this.#native) throw new IpclipError('ERR_DISPOSED', `${what}: this pretrainer has been disposed`);
    return this.#native;
  }

  /**
   * Runs one native call after every earlier one on this pretrainer has settled (the package's one concurrency
   * model, as {@link Clip}): no worker thread waits on the native lock. Rejects `ERR_DISPOSED` when disposed by
   * the time it starts.
   */
  #call<T>(what: string, fn: (native: NativePretrainer) => Promise<T>): Promise<T> {
    return queueOf(this).run(() => {
      const native = this.#live(what);
      return callNative(() => fn(native));
    });
  }

  /** Optimiser steps taken so far (all fits). */
  get steps(): number {
    return callNativeSync(() => this.#live('steps').steps);
  }

  /** Token rows `[N, contextLength]` for captions; over-long captions reject with `ERR_TEXT_TOO_LONG`. */
  tokenize(texts: readonly string[]): Tensor<Int32Array> {
    return this.tokenizer.tokenize(texts, { contextLength: this.config.text.contextLength });
  }

  /** One optimiser step on a prepared batch: images `[B,3,S,S]` (normalised) and their captions. */
  async step(images: ImageTensor, captions: readonly string[], opts: { lr: number; weightDecay?: number; gradClip?: number }): Promise<PretrainStepStats> {
    this.#live('step');
    check(Array.isArray(captions), 'step: captions must be an array of strings');
    check(opts !== null && typeof opts === 'object', 'step: options { lr } are required');
    check(images !== null && typeof images === 'object' && images.data instanceof Float32Array && Array.isArray(images.shape),
      'step: images must be a tensor { data: Float32Array, shape: [B,3,S,S] }');
    const ids = this.tokenize(captions);
    return this.#call('step', (native) => native.step(images.data, [...images.shape], ids.data, [...ids.shape],
      { lr: opts.lr, weightDecay: opts.weightDecay ?? 0.1, gradClip: opts.gradClip ?? 0 }));
  }

  /**
   * Trains on `data` for `epochs` with a warm-up + cosine schedule. Images are checked (decoded) once up front,
   * then read by the shared batch loader: each use is the `train` transform (a random resized crop in `cropScale`,
   * a random flip) and a random one of the image's captions. Data order,
   * crops and caption choices come from the pretrainer's seed (and the number of earlier fits), so the same seed
   * and data give the same weights.
   */
  async fit(data: PretrainData, options: FitOptions): Promise<FitResult> {
    this.#live('fit');
    if (this.#busy) throw new IpclipError('ERR_INVALID_ARGUMENT', 'fit: this pretrainer is already training');
    this.#busy = true;
    try {
      return await this.#fit(data, options);
    } finally {
      this.#busy = false;
    }
  }

  async #fit(data: PretrainData, options: FitOptions): Promise<FitResult> {
    this.#live('fit');
    check(data !== null && typeof data === 'object' && Array.isArray(data.images) && Array.isArray(data.captions),
      'fit: data must be { images: ImageInput[], captions: (string | string[])[] }');
    const n = data.images.length;
    if (n === 0) throw new IpclipError('ERR_EMPTY_INPUT', 'fit: no images given');
    check(data.captions.length === n, `fit: ${n} images but ${data.captions.length} captions`);
    check(options !== null && typeof options === 'object', 'fit: options { epochs, batchSize } are required');
    const { epochs, lr = 5e-4, minLr = 0, weightDecay = 0.1, gradClip = 0, cropScale = [0.6, 1], flip = true, onProgress, signal } = options;
    assertPositiveInteger(epochs, 'epochs', 100_000);
    assertPositiveInteger(options.batchSize, 'batchSize', 65_536);
    check(options.batchSize >= 2, 'batchSize must be at least 2 (a contrastive loss needs negatives)');
    check(n >= 2, 'fit needs at least 2 image–caption pairs');
    for (const [v, what] of [[lr, 'lr'], [minLr, 'minLr'], [weightDecay, 'weightDecay'], [gradClip, 'gradClip']] as const) {
      check(typeof v === 'number' && Number.isFinite(v) && v >= 0, `${what} must be a finite number >= 0, got ${String(v)}`);
    }
    check(Array.isArray(cropScale) && cropScale.length === 2 && cropScale[0] > 0 && cropScale[0] <= cropScale[1] && cropScale[1] <= 1,
      'cropScale must be [min, max] with 0 < min <= max <= 1');
    check(onProgress === undefined || typeof onProgress === 'function', 'onProgress must be a function');

    // Captions: validated and tokenized once, so a bad caption fails before any training.
    const alternatives = data.captions.map((c, i) => {
      const list = typeof c === 'string' ? [c] : c;
      check(Array.isArray(list) && list.length > 0 && list.every((s) => typeof s === 'string'),
        `fit: caption ${i} must be a string or a non-empty array of strings`);
      return this.tokenize(list);
    });
    const batchSize = Math.min(options.batchSize, n);
    const perEpoch = Math.floor(n / batchSize);
    const total = perEpoch * epochs;
    const warmup = options.warmup ?? Math.round(total * 0.05);
    check(Number.isInteger(warmup) && warmup >= 0 && warmup <= total, `warmup must be an integer from 0 to ${total} steps, got ${String(warmup)}`);

    // Every image is decoded once here, so that a bad one fails before any training; the loader then reads the
    // originals (in-memory decoded images as lossless PNG bytes).
    const samples: Sample[] = [];
    for (let i = 0; i < n; i++) {
      const input = data.images[i]!;
      const img = await decodeImage(input);
      checkRawImage(img, `image #${i}`);
      samples.push(typeof input === 'string' ? { path: input, label: 0 }
        : input instanceof Uint8Array ? { buffer: input, label: 0 } : { buffer: await encodePng(img), label: 0 });
    }

    const S = this.config.vision.imageSize;
    const ctx = this.config.text.contextLength;
    const rng = new Rng(this.seed).fork(`fit-${this.#fits++}`);
    // The shared loader and train transform (lib/data/loader.ts, lib/image/transforms.ts): each epoch a new order,
    // each sample a random resized crop in this fit's range and a random flip, prepared in worker threads ahead of
    // the native step. Its draws depend only on (seed, epoch, sample), like the IP-CLIP streams'.
    const loader = new BatchLoader(DomainDataset.fromSamples(samples, ['image'], { domain: 'pretraining' }), {
      batchSize, size: S, seed: rng.fork('loader').seed, shuffle: true, dropLast: true,
      transform: { augment: 'train', cropScale, flip },
      ...(options.workers !== undefined ? { workers: options.workers } : {}),
    });
    const captionIds = (epoch: number, indices: readonly number[]) => {
      const ids = new Int32Array(indices.length * ctx);
      indices.forEach((i, b) => {
        const alt = alternatives[i]!;
        const k = alt.shape[0] === 1 ? 0 : rng.fork(`caption/${epoch}/${i}`).int(alt.shape[0]);
        ids.set(alt.data.subarray(k * ctx, (k + 1) * ctx), b * ctx);
      });
      return ids;
    };

    const started = performance.now();
    const history: FitResult['history'] = [];
    let step = 0;
    let aborted = false;
    try {
      outer: for (let epoch = 0; epoch < epochs; epoch++) {
        for await (const batch of loader.epoch(epoch)) {
          if (signal?.aborted) { aborted = true; break outer; }
          const rate = cosineWarmupLr(step, total, { lr, warmup, minLr });
          const ids = captionIds(epoch, batch.indices);
          const stats = await this.#call('fit', (native) => native.step(batch.images.data, [...batch.images.shape], ids, [batchSize, ctx],
            { lr: rate, weightDecay, gradClip }));
          step++;
          history.push({ loss: stats.loss, accuracy: stats.accuracy, lr: rate });
          onProgress?.({ ...stats, step, totalSteps: total, epoch, lr: rate, seconds: (performance.now() - started) / 1000 });
        }
      }
    } finally {
      await loader.close();
    }
    return { steps: step, seconds: (performance.now() - started) / 1000, aborted, history };
  }

  /** L2-normalised image embeddings `[N, D]` (CLIP's test preprocessing: resize, centre crop). */
  async encodeImages(images: ImageInput[] | ImageTensor): Promise<Tensor> {
    this.#live('encodeImages');
    const batch = Array.isArray(images) ? await preprocess(images, { size: this.config.vision.imageSize }) : images;
    return this.#call('encodeImages', (native) => native.encodeImage(batch.data, [...batch.shape]));
  }

  /** L2-normalised text embeddings `[N, D]`. */
  async encodeTexts(texts: readonly string[]): Promise<Tensor> {
    this.#live('encodeTexts');
    const ids = this.tokenize(texts);
    return this.#call('encodeTexts', (native) => native.encodeText(ids.data, [...ids.shape]));
  }

  /** Every parameter under its OpenAI name, as float32 tensors (a copy). */
  async state(): Promise<Record<string, Tensor>> {
    return this.#call('state', (native) => native.state());
  }

  /**
   * Writes `dir/model.safetensors` (float32, OpenAI names), `dir/config.json` (OpenAI's model config) and
   * `dir/vocab.txt.gz` (the vocabulary, gzip), each atomically, so `Clip.load(dir + '/model.safetensors')` finds
   * the vocabulary beside the weights. Rejects with `ERR_IO` when a file cannot be written.
   */
  async save(dir: string, options: SaveOptions = {}): Promise<void> {
    check(typeof dir === 'string' && dir.length > 0, 'save: dir must be a non-empty path');
    const metadata = options.metadata ?? {};
    check(metadata !== null && typeof metadata === 'object' && Object.values(metadata).every((v) => typeof v === 'string'),
      'save: metadata must map names to strings');
    const state = await this.state();
    try {
      await mkdir(dir, { recursive: true });
    } catch (err) {
      throw new IpclipError('ERR_IO', `cannot create ${dir}: ${(err as Error).message}`, { cause: err });
    }
    const tensors: Record<string, TensorToWrite> = {};
    for (const [name, t] of Object.entries(state)) tensors[name] = { data: t.data, shape: t.shape };
    await writeSafetensors(join(dir, 'model.safetensors'), tensors,
      { format: 'pt', ipclip: 'pretrained', seed: String(this.seed), steps: String(this.steps), ...metadata });
    const vocab = this.#vocabBytes[0] === 0x1f && this.#vocabBytes[1] === 0x8b ? this.#vocabBytes : gzipSync(this.#vocabBytes);
    await writeFileAtomic(join(dir, 'vocab.txt.gz'), vocab);
    await writeFileAtomic(join(dir, 'config.json'), JSON.stringify(openAiConfigJson(this.config), null, 2) + '\n');
  }

  /** Frees the native model and optimiser state; later calls reject with `ERR_DISPOSED`. */
  dispose(): void {
    this.#native?.dispose();
    this.#native = null;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
