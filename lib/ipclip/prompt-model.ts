/**
 * {@link PromptModel}: everything IP-CLIP learns and keeps on top of a frozen {@link Clip}: the IP prompt
 * (method §2), its enhancement module, its feature banks (method §3), and the optimiser and loss-scale state that
 * training resumes from. One name in every layer: this class, the binding class and the core class are all
 * `PromptModel`. The numerics run natively (native/binding/PromptModel.cpp);
 * this class builds the class prompts, checks inputs, and reads and writes checkpoints.
 */
import type { Clip } from '../clip/clip.js';
import { readCheckpoint, sameConfig, writeCheckpoint, type CheckpointMeta, CHECKPOINT_FORMAT } from './checkpoint.js';
import { IpclipError, check } from '../core/errors.js';
import type { ImageInput } from '../image/decode.js';
import { loadNative } from '../native/load.js';
import { callNative, callNativeSync } from '../native/errors.js';
import type { NativePromptModel } from '../native/types.js';
export type { LossTerms, NativeOptimizerState, NativePromptModel, NativeStepOptions, NativeStepResult } from '../native/types.js';
import { preprocess } from '../image/preprocess.js';
import { numel, type FloatTensor, type ImageTensor, type Tensor } from '../core/tensor.js';
import { argmaxRows, softmax } from '../clip/similarity.js';
import { checkTopK, predictionOf, type Prediction } from '../clip/prediction.js';
import { checkLongCall, throwIfAborted, type LongCallOptions } from '../core/progress.js';
import { sameNames } from '../core/is.js';
import { queueOf } from '../core/queue.js';

/**
 * Slots per class of each feature bank (method §3).
 * @category Prompt model
 */
export const BANK_SIZE = 5;

/**
 * Options of {@link PromptModel.create}.
 * @category Prompt model
 */
export interface PromptOptions {
  /** Seed of the parameter initialisation (default 0): the same seed gives the same parameters everywhere. */
  seed?: number;
  /**
   * `fast` (default): the text tower runs the shared SOT + context prefix once per image and cuts sequences after
   * the last EOT (method §2's exactness facts); `naive`: every class prompt in full. Same results.
   */
  textPath?: 'fast' | 'naive';
}

/**
 * Options of {@link PromptModel.load}.
 * @category Prompt model
 */
export interface PromptLoadOptions {
  /** Required for the release's state (no metadata); otherwise checked against the file's. */
  classNames?: string[];
  textPath?: 'fast' | 'naive';
  /** Seed for parameters the file lacks (release files without `attn_block.*`); default the file's or 0. */
  seed?: number;
}

/**
 * One image's prediction by a protected prompt: the package's one {@link Prediction} shape (`label`, `index` in
 * the class names, `score`, `top`, and `scores` in class order).
 * @deprecated Use {@link Prediction}; kept as an alias for code written before the shapes were merged.
 * @category Prompt model
 */
export type PromptPrediction = Prediction;

/**
 * Options of {@link PromptModel.classify}.
 * @category Prompt model
 */
export interface PromptClassifyOptions extends LongCallOptions {
  /** Images per forward pass (default 32); files are decoded one batch at a time. */
  batchSize?: number;
  /** How many classes each prediction's `top` lists (default: all). */
  topK?: number;
}

/** The text of the class prompt: n_ctx placeholders, then the class name with `_` as spaces, then a period. */
export function promptText(className: string, nCtx: number): string {
  return `${Array(nCtx).fill('X').join(' ')} ${className.replace(/_/g, ' ')}.`;
}

/** n_ctx for a CLIP with `layers` vision blocks: 2·L domain tokens + 4 image tokens (method §2). */
export function contextSize(layers: number): number {
  return 2 * layers + 4;
}

/**
 * The IP prompt: per-image class prompts built from the image's own style and content statistics, giving a
 * classifier that works on the authorized domain and fails elsewhere once trained ({@link IPTrainer}).
 *
 * ```ts
 * const prompt = await PromptModel.create(clip, ['cat', 'dog'], { seed: 1 });
 * const [p] = await prompt.classify(['cat.jpg']);   // { label, index, score, top, scores }
 * await prompt.save('prompt.safetensors');
 * ```
 * @category Prompt model
 */
export class PromptModel implements Disposable {
  /** Number of context tokens (2·layers + 4). */
  readonly nCtx: number;
  #native: NativePromptModel | null;

  private constructor(
    /** The frozen CLIP the prompt runs on. */
    readonly clip: Clip,
    /** Class names, in label order. */
    readonly classNames: readonly string[],
    /** Seed of the initialisation. */
    readonly seed: number,
    /** Text-tower path. */
    readonly textPath: 'fast' | 'naive',
    native: NativePromptModel,
  ) {
    this.#native = native;
    this.nCtx = contextSize(clip.config.vision.layers);
  }

  /**
   * A freshly initialised prompt for `classNames` (seeded). Class prompts are tokenized with the CLIP's
   * tokenizer; a class name too long for the context length is an error naming it.
   * @throws IpclipError `ERR_INVALID_ARGUMENT` (no tokenizer, bad names or options, a name too long),
   * `ERR_EMPTY_INPUT` (no class names), `ERR_DISPOSED`, `ERR_ADDON_MISSING`.
   */
  static async create(clip: Clip, classNames: readonly string[], opts: PromptOptions = {}): Promise<PromptModel> {
    check(clip !== null && typeof clip === 'object' && typeof clip.config === 'object', 'PromptModel.create: clip must be a loaded Clip');
    check(Array.isArray(classNames), 'PromptModel.create: classNames must be an array of strings');
    if (classNames.length === 0) throw new IpclipError('ERR_EMPTY_INPUT', 'PromptModel.create: no class names given');
    check(classNames.every((c) => typeof c === 'string' && c.trim().length > 0), 'PromptModel.create: every class name must be a non-empty string');
    check(new Set(classNames).size === classNames.length, 'PromptModel.create: class names must be distinct');
    check(opts !== null && typeof opts === 'object', 'PromptModel.create: options must be an object');
    const seed = opts.seed ?? 0;
    check(Number.isSafeInteger(seed) && seed >= 0, `PromptModel.create: seed must be a non-negative integer, got ${String(seed)}`);
    const textPath = opts.textPath ?? 'fast';
    check(textPath === 'fast' || textPath === 'naive', `PromptModel.create: textPath must be 'fast' or 'naive', got ${String(textPath)}`);
    const tokenizer = clip.tokenizer;
    if (!tokenizer) {
      throw new IpclipError('ERR_INVALID_ARGUMENT',
        'PromptModel.create: this CLIP has no tokenizer; load it with `vocab` (e.g. bpe_simple_vocab_16e6.txt.gz) to build class prompts');
    }
    const nCtx = contextSize(clip.config.vision.layers);
    const ctx = clip.config.text.contextLength;
    const data = new Int32Array(classNames.length * ctx);
    classNames.forEach((name, c) => {
      let row: Int32Array;
      try {
        row = tokenizer.tokenize(promptText(name, nCtx), { contextLength: ctx }).data;
      } catch (err) {
        if (err instanceof IpclipError && err.code === 'ERR_TEXT_TOO_LONG') {
          throw new IpclipError('ERR_INVALID_ARGUMENT',
            `class name '${name}' is too long: ${nCtx} context tokens + its tokens + SOT, '.' and EOT exceed the context length ${ctx}`);
        }
        throw err;
      }
      data.set(row, c * ctx);
    });
    const addon = loadNative();
    const native = callNativeSync(() => addon.createPrompt(clip.nativeModel, data, [classNames.length, ctx], { nCtx, seed, textPath, bankSize: BANK_SIZE }));
    return new PromptModel(clip, Object.freeze([...classNames]), seed, textPath, native);
  }

  /**
   * Loads a prompt saved by {@link save} or by the trainer's checkpoints, or the authors' release state
   * converted to safetensors (same names; then `classNames` is required and `style_mapping_tokens.*` is ignored).
   * Banks and the enhancement module are restored when the file has them, so `IPTrainer.step` uses them.
   * @throws IpclipError `ERR_MISMATCH` (trained on another CLIP, other class names, shapes that do not fit this
   * CLIP), `ERR_INVALID_ARGUMENT` (release file without `classNames`), `ERR_BAD_WEIGHTS` (missing or unknown
   * parameters), `ERR_FILE_NOT_FOUND`, `ERR_BAD_FILE`.
   */
  static async load(clip: Clip, file: string, opts: PromptLoadOptions = {}): Promise<PromptModel> {
    check(opts !== null && typeof opts === 'object', 'PromptModel.load: options must be an object');
    const content = await readCheckpoint(file);
    const meta = content.meta;
    let classNames: readonly string[];
    if (meta) {
      checkMetaMatches(meta, clip, file);
      if (opts.classNames !== undefined) checkSameNames(opts.classNames, meta.classNames, file);
      classNames = meta.classNames;
    } else {
      check(opts.classNames !== undefined,
        `PromptModel.load: ${file} has no ipclip metadata (the release's format): pass classNames`);
      classNames = opts.classNames;
    }
    const prompt = await PromptModel.create(clip, classNames, { seed: opts.seed ?? meta?.seed ?? 0, textPath: opts.textPath });
    try {
      await prompt.loadState(content.state, file);
    } catch (err) {
      prompt.dispose();
      throw err;
    }
    return prompt;
  }

  /** Number of classes. */
  get numClasses(): number {
    return this.classNames.length;
  }

  /** Whether {@link dispose} was called. */
  get disposed(): boolean {
    return this.#native === null;
  }

  /** The raw bound prompt model (for the trainer). Throws `ERR_DISPOSED`. @internal */
  get native(): NativePromptModel {
    if (!this.#native) throw new IpclipError('ERR_DISPOSED', 'this prompt has been disposed');
    return this.#native;
  }

  /**
   * Runs one native call on this prompt through its CLIP's queue (see {@link Clip}): after every earlier call on
   * the CLIP or any prompt model on it has settled, so no worker thread waits on the native locks. Rejects
   * `ERR_DISPOSED` when the prompt was disposed by the time the call starts. `fn` must not itself wait for
   * another queued call (it would wait for itself). For the trainer and other native users of the prompt.
   * @internal
   */
  exclusive<T>(what: string, fn: (native: NativePromptModel) => T | Promise<T>): Promise<T> {
    return queueOf(this.clip).run(() => {
      const native = this.#native;
      if (!native) throw new IpclipError('ERR_DISPOSED', `${what}: this prompt has been disposed`);
      return callNative(() => fn(native));
    });
  }

  /** Every tensor of the prompt: parameters, enhancement module, banks and bank confidences (release names). */
  async state(): Promise<Record<string, FloatTensor>> {
    return this.exclusive('state', (native) => native.state());
  }

  /**
   * Copies tensors in (release names). Shapes must match this prompt's; `ERR_MISMATCH` otherwise (a state of
   * another CLIP or another number of classes), `ERR_BAD_WEIGHTS` for unknown names.
   */
  async setState(state: Record<string, FloatTensor>): Promise<void> {
    await this.loadState(state, 'state');
  }

  private async loadState(state: Record<string, FloatTensor>, source: string): Promise<void> {
    check(state !== null && typeof state === 'object', 'setState: state must be an object of tensors');
    const current = await this.state();
    const names = Object.keys(state);
    for (const name of names) {
      const want = current[name];
      if (!want) {
        // The release's prompt learner saves its frozen token buffers: such a file is the authors' format.
        const hint = name === 'token_prefix' || name === 'token_suffix'
          ? ' (this looks like a checkpoint of the authors\' release: import it with importReleaseCheckpoint or `ipclip import-release`)'
          : '';
        throw new IpclipError('ERR_BAD_WEIGHTS', `${source}: unknown prompt tensor '${name}'${hint}`);
      }
      const got = state[name]!;
      if (got.shape.length !== want.shape.length || got.shape.some((d, i) => d !== want.shape[i])) {
        throw new IpclipError('ERR_MISMATCH', `${source}: tensor '${name}' has shape [${got.shape}] but this prompt ` +
          `(${this.numClasses} classes, this CLIP) needs [${want.shape}]: it was made for another CLIP or other classes`);
      }
    }
    const missing = Object.keys(current).filter((n) => isPromptParameter(n) && !(n in state));
    if (missing.length > 0) {
      throw new IpclipError('ERR_BAD_WEIGHTS', `${source}: missing prompt parameters ${missing.slice(0, 4).join(', ')}${missing.length > 4 ? ', …' : ''}`);
    }
    await this.exclusive('setState', (native) => native.setState(state));
  }

  /**
   * Logits `[N, C]` of preprocessed images `[N, 3, S, S]` with each image's own class prompts (no gradient);
   * with `domain` / `embeds` also the domain tokens `[N, L, Wt]` and image embeddings `[N, D]`.
   * @throws IpclipError `ERR_INVALID_ARGUMENT` (shape), `ERR_NON_FINITE`, `ERR_EMPTY_INPUT`, `ERR_DISPOSED`.
   */
  async logits(images: ImageTensor, opts: { domain?: boolean; embeds?: boolean } = {}): Promise<{ logits: FloatTensor; domain?: FloatTensor; embeds?: FloatTensor }> {
    checkImages(images, this.clip.config.vision.imageSize, 'logits');
    return this.exclusive('logits', (native) =>
      native.logits(images.data, [...images.shape], { domain: opts.domain === true, embeds: opts.embeds === true }));
  }

  /** Empties both feature banks (zero embeddings, confidence 0). */
  async resetBanks(): Promise<void> {
    await this.exclusive('resetBanks', (native) => native.resetBanks());
  }

  /**
   * One batch of bank construction with the current prompt (method §3): `authorized` (enters only when predicted
   * correctly; slot class = label) or `unauthorized` (every sample; slot class = prediction). Returns the logits.
   */
  async updateBanks(images: ImageTensor, labels: Int32Array, which: 'authorized' | 'unauthorized'): Promise<FloatTensor> {
    checkImages(images, this.clip.config.vision.imageSize, 'updateBanks');
    check(which === 'authorized' || which === 'unauthorized', `updateBanks: which must be 'authorized' or 'unauthorized', got ${String(which)}`);
    check(labels instanceof Int32Array && labels.length === images.shape[0], `updateBanks: needs an Int32Array of ${images.shape[0]} labels`);
    for (const l of labels) check(l >= 0 && l < this.numClasses, `updateBanks: label ${l} is not in [0, ${this.numClasses})`);
    return (await this.exclusive('updateBanks', (native) => native.bankUpdate(images.data, [...images.shape], labels, which))).logits;
  }

  /** The predicted class index of each image of a preprocessed batch. */
  async predict(images: ImageTensor): Promise<Int32Array> {
    const { logits } = await this.logits(images);
    return argmaxRows(logits);
  }

  /**
   * Classifies images with the protected prompt alone (test path of method §2): a preprocessed tensor, or images
   * (paths, encoded bytes, decoded RGB) that are preprocessed with CLIP's test transform, `batchSize` (32) at a
   * time. One {@link Prediction} per image; `onProgress` reports after each batch, `signal` stops between batches
   * (`ERR_ABORTED`, no partial result).
   */
  async classify(images: ImageTensor | ImageInput | ImageInput[], opts: PromptClassifyOptions = {}): Promise<Prediction[]> {
    check(opts !== null && typeof opts === 'object', 'classify: options must be an object');
    const batchSize = opts.batchSize ?? 32;
    check(Number.isInteger(batchSize) && batchSize > 0, `classify: batchSize must be a positive integer, got ${batchSize}`);
    checkTopK('classify', opts.topK);
    checkLongCall('classify', opts);
    const { onProgress, signal } = opts;
    const size = this.clip.config.vision.imageSize;
    const out: Prediction[] = [];
    let total = 0;
    const run = async (next: () => Promise<ImageTensor>) => {
      throwIfAborted(signal, 'classify');
      const t = await next();
      throwIfAborted(signal, 'classify');
      const { logits } = await this.logits(t);
      out.push(...predictions(logits, this.classNames, opts.topK));
      onProgress?.({ done: out.length, total });
    };
    if (isImageTensor(images)) {
      checkImageShape(images, size, 'classify'); // the values are checked batch by batch in logits()
      const n = images.shape[0]!;
      total = n;
      const plane = 3 * size * size;
      for (let i = 0; i < n; i += batchSize) {
        const m = Math.min(batchSize, n - i);
        await run(async () => ({ data: images.data.subarray(i * plane, (i + m) * plane), shape: [m, 3, size, size] }));
      }
      return out;
    }
    const list = Array.isArray(images) ? images : [images];
    if (list.length === 0) throw new IpclipError('ERR_EMPTY_INPUT', 'classify: no images given');
    total = list.length;
    for (let i = 0; i < list.length; i += batchSize) await run(() => preprocess(list.slice(i, i + batchSize), { size }));
    return out;
  }

  /**
   * The last training step's gradients of the total loss (release names), copied. Steps keep them only with
   * `update: false` or `keepGradients: true` (a training step leaves them on the device, uncopied); after any
   * other step this throws `ERR_INVALID_ARGUMENT`.
   */
  gradients(): Record<string, FloatTensor> {
    const native = this.native;
    return callNativeSync(() => native.gradients());
  }

  /**
   * Saves the prompt, enhancement module and banks as safetensors (release names) with metadata (class names,
   * the CLIP's architecture and fingerprint, seed), atomically.
   */
  async save(file: string): Promise<void> {
    check(typeof file === 'string' && file.length > 0, 'save: file must be a non-empty path');
    await writeCheckpoint(file, { state: await this.state(), meta: this.metadata() });
  }

  /** The metadata {@link save} writes (the trainer adds its `training` part). */
  metadata(): CheckpointMeta {
    return {
      format: CHECKPOINT_FORMAT,
      classNames: [...this.classNames],
      clip: { config: this.clip.config, fingerprint: this.clip.info.fingerprint },
      seed: this.seed,
      nCtx: this.nCtx,
    };
  }

  /** Frees the native prompt; later calls throw `ERR_DISPOSED`. Safe to call twice. */
  dispose(): void {
    const n = this.#native;
    this.#native = null;
    n?.dispose();
  }

  /** Same as {@link dispose}, for `using prompt = ...`. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** True for the trainable prompt parameters (not the enhancement module, not the banks). */
export function isPromptParameter(name: string): boolean {
  return name.startsWith('domain_tokens.') || name.startsWith('image_tokens.');
}

function predictions(logits: FloatTensor, classNames: readonly string[], topK?: number): Prediction[] {
  const [n, c] = logits.shape as [number, number];
  return Array.from({ length: n }, (_, i) => predictionOf(softmax(logits.data.subarray(i * c, (i + 1) * c)), classNames, topK));
}

function isImageTensor(x: unknown): x is ImageTensor {
  return typeof x === 'object' && x !== null && !(x instanceof Uint8Array) && 'shape' in x && 'data' in x && (x as ImageTensor).data instanceof Float32Array;
}

/**
 * Checks a preprocessed batch's shape `[N, 3, size, size]` and length (no values read).
 * @throws IpclipError `ERR_INVALID_ARGUMENT`, `ERR_EMPTY_INPUT`.
 */
function checkImageShape(images: ImageTensor, size: number, what: string): void {
  check(images !== null && typeof images === 'object' && images.data instanceof Float32Array,
    `${what}: images must be { data: Float32Array, shape: [N, 3, ${size}, ${size}] }`);
  const s = images.shape;
  check(Array.isArray(s) && s.length === 4 && s[1] === 3 && s[2] === size && s[3] === size && Number.isInteger(s[0]) && s[0]! >= 0,
    `${what}: images must have shape [N, 3, ${size}, ${size}], got [${String(s)}]`);
  if (s[0] === 0) throw new IpclipError('ERR_EMPTY_INPUT', `${what}: the batch is empty`);
  check(images.data.length === numel(s), `${what}: data has ${images.data.length} values but shape [${s}] needs ${numel(s)}`);
}

/**
 * Checks a preprocessed batch `[N, 3, size, size]` given to {@link PromptModel.logits} or
 * {@link PromptModel.updateBanks}: shape, length, and that every value is finite (the native core checks the
 * training step's values itself; these two calls are not on the training loop's path, which feeds the binding
 * loader batches directly).
 * @throws IpclipError `ERR_INVALID_ARGUMENT`, `ERR_EMPTY_INPUT`, `ERR_NON_FINITE`.
 */
function checkImages(images: ImageTensor, size: number, what: string): void {
  // Values (NaN, Inf) are the core's to check, off the event loop (native/clip/model.cpp).
  checkImageShape(images, size, what);
}

function checkMetaMatches(meta: CheckpointMeta, clip: Clip, file: string): void {
  if (!sameConfig(meta.clip.config, clip.config)) {
    throw new IpclipError('ERR_MISMATCH', `${file} was trained on another CLIP architecture ` +
      `(${JSON.stringify(meta.clip.config)}) than the one given (${JSON.stringify(clip.config)})`);
  }
  if (meta.clip.fingerprint !== clip.info.fingerprint) {
    throw new IpclipError('ERR_MISMATCH', `${file} was trained on CLIP weights with fingerprint ${meta.clip.fingerprint}, ` +
      `but this CLIP's is ${clip.info.fingerprint}`);
  }
}

function checkSameNames(given: readonly string[], stored: readonly string[], file: string): void {
  check(Array.isArray(given), 'classNames must be an array of strings');
  if (!sameNames(given, stored)) {
    throw new IpclipError('ERR_MISMATCH', `${file} was trained for classes [${stored.join(', ')}], not [${given.join(', ')}]`);
  }
}
