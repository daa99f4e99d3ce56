/**
 * {@link Clip}: a CLIP model running natively (libtorch), with its tokenizer and preprocessing.
 */
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { IpclipError, check } from '../core/errors.js';
import { isRawImage, type ImageInput } from '../image/decode.js';
import { loadNative } from '../native/load.js';
import { callNative, callNativeSync } from '../native/errors.js';
import type { ClipConfig, ClipDtype, ClipInfo, ClipLinear, NativeClipModel, NativeImageOutput } from '../native/types.js';
import { preprocess as preprocessImages } from '../image/preprocess.js';
import { type FloatTensor, type ImageTensor, type Tensor, numel } from '../core/tensor.js';
import { ClipTokenizer } from './tokenizer/tokenizer.js';
import { clipLogits, softmaxRows } from './similarity.js';
import { queueOf } from '../core/queue.js';
import { assertIntegerInRange } from '../core/is.js';
import { packageRoot } from '../core/fs.js';
import { checkLongCall, throwIfAborted, type LongCallOptions } from '../core/progress.js';
import { checkTopK, predictionOf, type Prediction } from './prediction.js';

export type { Prediction, RankedLabel } from './prediction.js';

export type { ClipActivation, ClipConfig, ClipDtype, ClipInfo, ClipLinear } from '../native/types.js';

/**
 * Options of {@link Clip.load}.
 * @category CLIP
 */
export interface ClipLoadOptions {
  /** `'cpu'` (default), `'cuda'` or `'cuda:N'`. */
  device?: string;
  /**
   * Compute dtype (default `'float32'`). `float16` needs CUDA; `bfloat16` works on CPU and CUDA; `float64` (CPU
   * only) returns `Float64Array` results and is meant for exactness checks. In half precision, `logit_scale`,
   * the LayerNorm parameters and the embedding tables stay fp32 (LayerNorm is computed in fp32). `'auto'` (not the
   * default) is `bfloat16` on a CPU with AVX512-BF16 or AMX and `float32` elsewhere (without bf16 hardware,
   * libtorch's bf16 products are a slow scalar fallback); `info.dtype` tells which.
   */
  dtype?: ClipDtype | 'auto';
  /**
   * The engine of the towers' linear layers on the CPU in float32 and bfloat16 (default `'auto'`: oneDNN on AVX-512 CPUs,
   * OpenBLAS otherwise); `info.linear` tells which runs. See {@link ClipLinear}.
   */
  linear?: ClipLinear;
  /**
   * A tokenizer vocabulary: OpenAI's `bpe_simple_vocab_16e6.txt.gz`, or a Hugging Face `vocab.json` (with
   * `merges.txt` beside it) or folder. Without it, a vocabulary beside the weights is used if there is one.
   */
  vocab?: string;
  /** libtorch intra-op threads (a process-wide setting). */
  threads?: number;
}

/**
 * Images for {@link Clip.encodeImage}: a preprocessed tensor `[N,3,S,S]`, or images to preprocess.
 * @category CLIP
 */
export type ClipImages = ImageTensor | ImageInput | ImageInput[];

/**
 * Token ids for {@link Clip.encodeText}: `[N, ctx]`, ctx at most the model's context length.
 * @category CLIP
 */
export type TokenIds = Tensor<Int32Array> | Tensor<BigInt64Array>;

/**
 * Options of {@link Clip.encodeImage}.
 * @category CLIP
 */
export interface EncodeImageOptions extends LongCallOptions {
  /**
   * Images per native call (default: all in one). Images given as files are decoded batch by batch, so memory
   * holds one batch of pixels; `onProgress` reports after each batch and `signal` is checked between them.
   */
  batchSize?: number;
  /** Also return the residual stream after every vision block, `[layers, N, tokens, width]`. */
  returnLayers?: boolean;
  /** Also return each block's per-token mean and std, `[layers, N, 2, width]` (IP-CLIP, method §1). */
  returnStats?: boolean;
}

/**
 * The result of {@link Clip.encodeImage} with `returnLayers` or `returnStats`.
 * @category CLIP
 */
export interface ImageEncoding {
  /** `[N, D]`, not normalised. */
  embeds: FloatTensor;
  layers?: FloatTensor;
  stats?: FloatTensor;
}

/**
 * Options of {@link Clip.encodeText}.
 * @category CLIP
 */
export interface EncodeTextOptions {
  /** Cut texts longer than the context (last id EOT) instead of rejecting with `ERR_TEXT_TOO_LONG`. */
  truncate?: boolean;
}

/**
 * Options of {@link Clip.classify}.
 * @category CLIP
 */
export interface ClassifyOptions extends LongCallOptions {
  /** Prompt template; `{}` is replaced by the label. Default `'a photo of a {}.'`. */
  template?: string;
  /** Truncate over-long prompts instead of rejecting. */
  truncate?: boolean;
  /** How many labels each prediction's `top` lists (default: all). */
  topK?: number;
  /** Images per native call (default 32). */
  batchSize?: number;
}

/**
 * Names {@link Clip.load} resolves to a model shipped in this package (`models/<name>/`), never downloaded.
 * @category CLIP
 */
export const LOCAL_MODELS: Readonly<Record<string, string>> = Object.freeze({
  'synth-clip': 'models/synth-clip/model.safetensors',
});

/** A bare model name (no folder, no extension) rather than a path. */
function isModelName(s: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(s);
}

/**
 * The weights `path` names: an existing file or folder as given, else a {@link LOCAL_MODELS} name. An unknown
 * name is `ERR_NOT_FOUND` listing the known ones; an unknown path is left to the loader (`ERR_FILE_NOT_FOUND`).
 */
export function resolveModelPath(path: string): string {
  if (existsSync(path) || !isModelName(path)) return path;
  const rel = LOCAL_MODELS[path];
  if (rel === undefined || !Object.hasOwn(LOCAL_MODELS, path)) {
    throw new IpclipError('ERR_NOT_FOUND', `no model named '${path}' (known names: ${Object.keys(LOCAL_MODELS).join(', ')}; ` +
      'or give the path of a weights file or folder). ipclip never downloads models.');
  }
  return join(packageRoot(), rel);
}

/** Vocabulary files looked for beside the weights, in this order. */
export const VOCAB_FILE_NAMES: readonly string[] = ['vocab.txt.gz', 'bpe_simple_vocab_16e6.txt.gz'];

/** Every `dtype` {@link Clip.load} and {@link Clip.random} take (the CLI's `--dtype` offers the same). */
export const CLIP_DTYPES = ['float32', 'bfloat16', 'float16', 'float64', 'auto'] as const;

/** The dtype and linear-engine options of {@link Clip.load} and {@link Clip.random}, checked before any work. */
function checkDtypeAndLinear(where: string, dtype: unknown, linear: unknown): void {
  check((CLIP_DTYPES as readonly unknown[]).includes(dtype),
    `${where}: unsupported dtype ${JSON.stringify(dtype)} (use ${CLIP_DTYPES.map((d) => `'${d}'`).join(', ')})`);
  check(linear === 'auto' || linear === 'onednn' || linear === 'blas',
    `${where}: unsupported linear ${JSON.stringify(linear)} (use 'auto', 'onednn' or 'blas')`);
}

function isImageTensor(x: unknown): x is ImageTensor {
  return typeof x === 'object' && x !== null && !isRawImage(x) && !(x instanceof Uint8Array)
    && 'shape' in x && 'data' in x;
}

function isTokenIds(x: unknown): x is TokenIds {
  return typeof x === 'object' && x !== null && !Array.isArray(x) && 'shape' in x && 'data' in x;
}

/** The vocabulary to use for weights at `path`: the explicit one, or one found beside the weights. */
function findVocab(path: string): string | undefined {
  let dir: string;
  try {
    dir = statSync(path).isDirectory() ? path : dirname(path);
  } catch {
    return undefined;
  }
  for (const name of VOCAB_FILE_NAMES) if (existsSync(join(dir, name))) return join(dir, name);
  if (existsSync(join(dir, 'vocab.json')) && existsSync(join(dir, 'merges.txt'))) return join(dir, 'vocab.json');
  return undefined;
}

/**
 * A CLIP model (ViT image tower and text transformer, OpenAI's architecture) running in libtorch.
 *
 * ```ts
 * const clip = await Clip.load('ViT-B-16.safetensors', { vocab: 'bpe_simple_vocab_16e6.txt.gz' });
 * const ranked = await clip.classify(['cat.jpg'], ['cat', 'dog']);
 * clip.dispose();
 * ```
 *
 * Every heavy call returns a Promise computed on a libuv worker thread. Calls on one model run one after the other
 * (a queue in JS, so concurrent callers never tie up several worker threads; prompt models on this CLIP share the
 * queue). After {@link dispose}, calls reject
 * with `ERR_DISPOSED`.
 * @category CLIP
 */
export class Clip implements Disposable {
  /** The architecture, inferred from the weights. */
  readonly config: ClipConfig;
  /** Where the model came from and how it runs. */
  readonly info: ClipInfo;
  /** The tokenizer (from `vocab` or found beside the weights), or `null` when there is none. */
  readonly tokenizer: ClipTokenizer | null;
  /** exp(logit_scale): the factor on cosine similarities in {@link classify}. */
  readonly logitScale: number;

  #native: NativeClipModel | null;

  private constructor(native: NativeClipModel, tokenizer: ClipTokenizer | null) {
    this.#native = native;
    this.config = callNativeSync(() => native.config);
    this.info = callNativeSync(() => native.info);
    this.tokenizer = tokenizer;
    this.logitScale = this.info.logitScale;
  }

  /**
   * Loads a CLIP checkpoint, telling the format apart by content: an OpenAI-named `.safetensors` file, a Hugging
   * Face `CLIPModel` folder (`config.json` + `model.safetensors`), or an OpenAI TorchScript release (`.pt`).
   *
   * The tokenizer comes from `options.vocab`, else from a vocabulary beside the weights (in the weights' folder:
   * `vocab.txt.gz`, `bpe_simple_vocab_16e6.txt.gz`, or `vocab.json` + `merges.txt`), else there is none and text
   * must be given as token ids.
   *
   * `path` may also be the name of a model shipped in the package ({@link LOCAL_MODELS}: `'synth-clip'`); names
   * are looked up locally, nothing is ever downloaded.
   *
   * Rejects with `ERR_FILE_NOT_FOUND`, `ERR_NOT_FOUND` (an unknown model name), `ERR_BAD_FILE`, `ERR_BAD_WEIGHTS`,
   * `ERR_DEVICE` or `ERR_INVALID_ARGUMENT`.
   */
  static async load(path: string, options: ClipLoadOptions = {}): Promise<Clip> {
    check(typeof path === 'string' && path.length > 0, 'Clip.load: path must be a non-empty string');
    path = resolveModelPath(path);
    check(options !== null && typeof options === 'object', 'Clip.load: options must be an object');
    const { device = 'cpu', dtype = 'float32', vocab, threads, linear = 'auto' } = options;
    check(typeof device === 'string', `Clip.load: device must be a string such as 'cpu' or 'cuda:0'`);
    checkDtypeAndLinear('Clip.load', dtype, linear);
    if (threads !== undefined) assertIntegerInRange(threads, 'Clip.load: threads', 1, 1024);
    check(vocab === undefined || (typeof vocab === 'string' && vocab.length > 0), 'Clip.load: vocab must be a path');
    // The tokenizer first: a bad vocabulary fails fast, before seconds of weight loading.
    const vocabPath = vocab ?? findVocab(path);
    const tokenizer = vocabPath === undefined ? null : ClipTokenizer.fromFile(vocabPath);
    const native = await callNative(() => loadNative().loadClip(path, { device, dtype, linear, ...(threads ? { threads } : {}) }));
    return new Clip(native, tokenizer);
  }

  /**
   * A CLIP of the given architecture with OpenAI-style random weights (deterministic for a `seed`): for benchmarks
   * at real sizes and for tests, without a checkpoint. Its `logitScale` is OpenAI's initial 1/0.07.
   */
  static async random(config: ClipConfig, options: Omit<ClipLoadOptions, 'threads'> & { seed?: number } = {}): Promise<Clip> {
    check(config !== null && typeof config === 'object', 'Clip.random: config must be a ClipConfig');
    check(options !== null && typeof options === 'object', 'Clip.random: options must be an object');
    const { device = 'cpu', dtype = 'float32', vocab, seed = 0, linear = 'auto' } = options;
    checkDtypeAndLinear('Clip.random', dtype, linear);
    check(Number.isSafeInteger(seed) && seed >= 0, `Clip.random: seed must be a non-negative integer (got ${String(seed)})`);
    const tokenizer = vocab === undefined ? null : ClipTokenizer.fromFile(vocab);
    const native = await callNative(() => loadNative().createRandomClip(config, { seed, device, dtype, linear }));
    return new Clip(native, tokenizer);
  }

  /** Whether {@link dispose} was called. */
  get disposed(): boolean {
    return this.#native === null;
  }

  /**
   * The raw bound model, for other native areas (prompt models take it). Throws `ERR_DISPOSED`.
   * @internal
   */
  get nativeModel(): NativeClipModel {
    if (!this.#native) throw new IpclipError('ERR_DISPOSED', 'this CLIP model has been disposed');
    return this.#native;
  }

  /** Runs `fn` after every earlier call on this model has settled; rejects `ERR_DISPOSED` once disposed. */
  #enqueue<T>(what: string, fn: (native: NativeClipModel) => Promise<T>): Promise<T> {
    return queueOf(this).run(() => {
      const native = this.#native;
      if (!native) throw new IpclipError('ERR_DISPOSED', `${what}: this CLIP model has been disposed`);
      return callNative(() => fn(native));
    });
  }

  #checkLive(what: string): void {
    if (!this.#native) throw new IpclipError('ERR_DISPOSED', `${what}: this CLIP model has been disposed`);
  }

  /** Decodes and preprocesses images (paths or encoded bytes) into `[N,3,S,S]` at this model's input size. */
  async preprocess(inputs: ImageInput | ImageInput[]): Promise<ImageTensor> {
    this.#checkLive('preprocess');
    return preprocessImages(inputs, { size: this.config.vision.imageSize });
  }

  /** Validates a preprocessed batch against this model's input shape. */
  #checkImageTensor(t: ImageTensor): void {
    const s = this.config.vision.imageSize;
    const expected = `[N,3,${s},${s}]`;
    check(t.data instanceof Float32Array, `encodeImage: image tensor data must be a Float32Array of shape ${expected}`);
    check(Array.isArray(t.shape) && t.shape.length === 4 && t.shape[1] === 3 && t.shape[2] === s && t.shape[3] === s
      && Number.isInteger(t.shape[0]) && t.shape[0]! >= 0,
      `encodeImage: images must have shape ${expected}, got [${String(t.shape)}]`);
    if (t.shape[0] === 0) throw new IpclipError('ERR_EMPTY_INPUT', 'encodeImage: the batch is empty');
    check(t.data.length === numel(t.shape),
      `encodeImage: data has ${t.data.length} values but shape [${t.shape}] needs ${numel(t.shape)}`);
    // NaN/Inf values are the core's to refuse (ERR_NON_FINITE, native/clip/model.cpp), off the event loop.
  }

  /**
   * Image embeddings `[N, D]` (not normalised, as OpenAI's `encode_image`). `images` is a preprocessed tensor or
   * images to preprocess (paths, encoded bytes, decoded RGB). With `returnLayers` / `returnStats` the result is an
   * {@link ImageEncoding} with the per-layer data too.
   */
  encodeImage(images: ClipImages, options?: EncodeImageOptions & { returnLayers?: false; returnStats?: false }): Promise<FloatTensor>;
  encodeImage(images: ClipImages, options: EncodeImageOptions & ({ returnLayers: true } | { returnStats: true })): Promise<ImageEncoding>;
  encodeImage(images: ClipImages, options?: EncodeImageOptions): Promise<FloatTensor | ImageEncoding>;
  async encodeImage(images: ClipImages, options: EncodeImageOptions = {}): Promise<FloatTensor | ImageEncoding> {
    this.#checkLive('encodeImage');
    check(options !== null && typeof options === 'object', 'encodeImage: options must be an object');
    checkLongCall('encodeImage', options);
    const { batchSize, onProgress, signal } = options;
    check(batchSize === undefined || (Number.isSafeInteger(batchSize) && batchSize > 0), `encodeImage: batchSize must be a positive integer, got ${String(batchSize)}`);
    const layers = options.returnLayers === true;
    const stats = options.returnStats === true;
    const parts: NativeImageOutput[] = [];
    const total = isImageTensor(images) ? images.shape?.[0] ?? 0 : Array.isArray(images) ? images.length : 1;
    let done = 0;
    for (const batch of this.#imageBatches(images, batchSize)) {
      throwIfAborted(signal, 'encodeImage');
      // A tensor is handed on at once (no await): the call takes its place in the queue in call order. Files are
      // decoded only now, after the abort check, so a stopped call leaves no decoding behind.
      const t = typeof batch === 'function' ? await batch() : batch;
      this.#checkImageTensor(t);
      throwIfAborted(signal, 'encodeImage');
      parts.push(await this.#enqueue('encodeImage', (n) => n.encodeImage(t.data, [...t.shape], { layers, stats })));
      done += t.shape[0]!;
      onProgress?.({ done, total: Math.max(total, done) });
    }
    if (parts.length === 0) throw new IpclipError('ERR_EMPTY_INPUT', 'encodeImage: the batch is empty');
    const embeds = concatAxis(parts.map((o) => o.embeds), 0);
    if (!layers && !stats) return embeds;
    return {
      embeds,
      ...(layers ? { layers: concatAxis(parts.map((o) => o.layers!), 1) } : {}),
      ...(stats ? { stats: concatAxis(parts.map((o) => o.stats!), 1) } : {}),
    };
  }

  /** The batches of `images` (preprocessed lazily, one at a time), `batchSize` images each (default: one batch). */
  *#imageBatches(images: ClipImages, batchSize: number | undefined): Generator<ImageTensor | (() => Promise<ImageTensor>)> {
    if (isImageTensor(images)) {
      const n = Array.isArray(images.shape) ? images.shape[0] : undefined;
      if (batchSize === undefined || !Number.isInteger(n) || n! <= batchSize || images.shape.length !== 4) {
        yield images;
        return;
      }
      this.#checkImageTensor(images);
      const plane = numel(images.shape.slice(1));
      for (let i = 0; i < n!; i += batchSize) {
        const m = Math.min(batchSize, n! - i);
        yield { data: images.data.subarray(i * plane, (i + m) * plane), shape: [m, ...images.shape.slice(1)] };
      }
      return;
    }
    const list = Array.isArray(images) ? images : [images as ImageInput];
    if (list.length === 0) throw new IpclipError('ERR_EMPTY_INPUT', 'encodeImage: no images given');
    const step = batchSize ?? list.length;
    for (let i = 0; i < list.length; i += step) yield () => this.preprocess(list.slice(i, i + step));
  }

  /** Token ids `[N, contextLength]` for texts; needs a tokenizer. */
  tokenize(texts: string | readonly string[], options: EncodeTextOptions = {}): Tensor<Int32Array> {
    if (!this.tokenizer) {
      throw new IpclipError('ERR_INVALID_ARGUMENT',
        'this CLIP has no tokenizer: pass `vocab` to Clip.load (e.g. bpe_simple_vocab_16e6.txt.gz) or give token ids');
    }
    return this.tokenizer.tokenize(texts, { contextLength: this.config.text.contextLength, truncate: options.truncate ?? false });
  }

  /**
   * Text embeddings `[N, D]` (not normalised, as OpenAI's `encode_text`) of texts (tokenized with
   * {@link tokenizer}) or of token ids `[N, ctx]` (ctx ≤ the context length; rows padded with 0 after EOT).
   * Over-long texts reject with `ERR_TEXT_TOO_LONG` unless `truncate`.
   */
  async encodeText(texts: string | readonly string[] | TokenIds, options: EncodeTextOptions = {}): Promise<FloatTensor> {
    this.#checkLive('encodeText');
    const ids = typeof texts === 'string' || Array.isArray(texts) ? this.tokenize(texts as string[], options) : texts;
    check(isTokenIds(ids), 'encodeText: expected a string, an array of strings or token ids { data, shape: [N, ctx] }');
    const { contextLength, vocabSize } = this.config.text;
    check(ids.data instanceof Int32Array || ids.data instanceof BigInt64Array, 'encodeText: token ids must be an Int32Array or BigInt64Array');
    check(Array.isArray(ids.shape) && ids.shape.length === 2 && Number.isInteger(ids.shape[0]) && ids.shape[0]! >= 0,
      `encodeText: token ids must have shape [N, ctx] with ctx <= ${contextLength}, got [${String(ids.shape)}]`);
    if (ids.shape[0] === 0) throw new IpclipError('ERR_EMPTY_INPUT', 'encodeText: the batch is empty');
    const ctx = ids.shape[1]!;
    if (Number.isInteger(ctx) && ctx > contextLength) {
      throw new IpclipError('ERR_TEXT_TOO_LONG', `encodeText: rows of ${ctx} tokens exceed the context length ${contextLength}`);
    }
    check(Number.isInteger(ctx) && ctx >= 2, `encodeText: token ids must have shape [N, ctx] with 2 <= ctx <= ${contextLength}`);
    check(ids.data.length === numel(ids.shape), `encodeText: data has ${ids.data.length} ids but shape [${ids.shape}] needs ${numel(ids.shape)}`);
    for (let i = 0; i < ids.data.length; i++) {
      const v = Number(ids.data[i]);
      check(v >= 0 && v < vocabSize, `encodeText: token id ${v} at ${i} is outside [0, ${vocabSize})`);
    }
    return this.#enqueue('encodeText', (n) => n.encodeText(ids.data, [...ids.shape]));
  }

  /**
   * Zero-shot classification: one {@link Prediction} per image, over `labels` (`index` is the label's position
   * in `labels`; `top` lists the `topK` most likely, default all). Probabilities are the softmax of
   * `logitScale · cos(image, text)` with text = `template` filled with the label. Images go through the vision
   * tower `batchSize` at a time (default 32), with `onProgress` after each batch and `signal` checked between.
   */
  async classify(images: ClipImages, labels: readonly string[], options: ClassifyOptions = {}): Promise<Prediction[]> {
    this.#checkLive('classify');
    check(options !== null && typeof options === 'object', 'classify: options must be an object');
    check(Array.isArray(labels), 'classify: labels must be an array of strings');
    if (labels.length === 0) throw new IpclipError('ERR_EMPTY_INPUT', 'classify: no labels given');
    check(labels.every((l) => typeof l === 'string'), 'classify: every label must be a string');
    check(new Set(labels).size === labels.length, 'classify: labels must be distinct');
    checkTopK('classify', options.topK);
    checkLongCall('classify', options);
    const template = options.template ?? 'a photo of a {}.';
    check(typeof template === 'string' && template.includes('{}'), 'classify: template must be a string containing {}');
    const prompts = labels.map((l) => template.replaceAll('{}', l));
    const ids = this.tokenize(prompts, { truncate: options.truncate ?? false });
    throwIfAborted(options.signal, 'classify');
    const textEmbeds = await this.encodeText(ids);
    const imageEmbeds = await this.encodeImage(images, {
      batchSize: options.batchSize ?? 32,
      ...(options.onProgress ? { onProgress: options.onProgress } : {}), ...(options.signal ? { signal: options.signal } : {}),
    });
    const probs = softmaxRows(clipLogits(imageEmbeds, textEmbeds, this.logitScale));
    const m = labels.length;
    return Array.from({ length: imageEmbeds.shape[0]! }, (_, i) => predictionOf(probs.data.subarray(i * m, (i + 1) * m), labels, options.topK));
  }

  /**
   * Frees the native model. Work already running finishes (it holds its own reference); queued and later calls
   * reject with `ERR_DISPOSED`. Calling it twice is harmless.
   */
  dispose(): void {
    const native = this.#native;
    this.#native = null;
    native?.dispose();
  }

  /** Same as {@link dispose}, for `using clip = await Clip.load(...)`. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Concatenates tensors along `axis` (the batch axis: 0 for embeddings, 1 for `[L, N, …]` layer outputs). */
function concatAxis(parts: FloatTensor[], axis: number): FloatTensor {
  if (parts.length === 1) return parts[0]!;
  const shape = [...parts[0]!.shape];
  const outer = numel(shape.slice(0, axis));
  const inner = numel(shape.slice(axis + 1));
  const sizes = parts.map((p) => p.shape[axis]!);
  shape[axis] = sizes.reduce((a, b) => a + b, 0);
  const Ctor = parts[0]!.data.constructor as new (n: number) => FloatTensor['data'];
  const data = new Ctor(numel(shape));
  let at = 0;
  for (let o = 0; o < outer; o++) {
    parts.forEach((p, k) => {
      const len = sizes[k]! * inner;
      data.set(p.data.subarray(o * len, (o + 1) * len), at);
      at += len;
    });
  }
  return { data, shape } as FloatTensor;
}
