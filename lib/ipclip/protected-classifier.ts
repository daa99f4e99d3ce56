/**
 * {@link ProtectedClassifier}: a protected (IP-CLIP) classifier as one thing to load and call: the trained
 * prompt and the frozen CLIP it was trained on, found, paired and checked by fingerprint.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Clip, LOCAL_MODELS, type ClipDtype, type ClipImages, type ClipLinear } from '../clip/clip.js';
import type { Prediction } from '../clip/prediction.js';
import { IpclipError, check } from '../core/errors.js';
import { throwIfAborted, type LongCallOptions } from '../core/progress.js';
import { listImageFiles } from '../data/files.js';
import type { ImageTensor } from '../core/tensor.js';
import { readCheckpoint, type CheckpointMeta } from './checkpoint.js';
import { PromptModel, type PromptClassifyOptions } from './prompt-model.js';

/**
 * The files a run folder is searched for, in this order: the final prompt, then the training checkpoint.
 * @category Protected classifier
 */
export const RUN_FILES: readonly string[] = ['prompt.safetensors', 'last.safetensors'];

/**
 * Options of {@link ProtectedClassifier.load}.
 * @category Protected classifier
 */
export interface ProtectedClassifierOptions {
  /**
   * The CLIP the prompt was trained on: a loaded {@link Clip} (left to you to dispose), or the path or local name
   * of its weights (loaded here, disposed with the classifier). Default: the shipped model whose fingerprint the
   * prompt records. Either way the fingerprint must be the prompt's (`ERR_MISMATCH` names both).
   */
  clip?: Clip | string;
  /** Where a CLIP loaded here runs (`'cpu'`, `'cuda'`, `'cuda:N'`); the other four as in `Clip.load`. */
  device?: string;
  dtype?: ClipDtype | 'auto';
  linear?: ClipLinear;
  vocab?: string;
  threads?: number;
  /** Class names, for the release's state without metadata; checked against the file's otherwise. */
  classNames?: string[];
}

/**
 * Options of {@link ProtectedClassifier.classify} and {@link ProtectedClassifier.classifyStream}.
 * @category Protected classifier
 */
export interface ProtectedClassifyOptions extends LongCallOptions {
  /** Images per forward pass (default 32). */
  batchSize?: number;
  /** How many classes each prediction's `top` lists (default: all). */
  topK?: number;
}

/**
 * One result of {@link ProtectedClassifier.classifyStream}: the file and its prediction.
 * @category Protected classifier
 */
export interface FilePrediction {
  file: string;
  prediction: Prediction;
}

/** The prompt file of `runDirOrFile`: the file itself, or a run folder's `prompt.safetensors` / `last.safetensors`. */
export function resolvePromptFile(runDirOrFile: string): string {
  check(typeof runDirOrFile === 'string' && runDirOrFile.length > 0, 'ProtectedClassifier.load: expected a run folder or a prompt file');
  if (!existsSync(runDirOrFile)) throw new IpclipError('ERR_FILE_NOT_FOUND', `no such run folder or prompt file: ${runDirOrFile}`);
  if (!statSync(runDirOrFile).isDirectory()) return runDirOrFile;
  for (const name of RUN_FILES) {
    const f = join(runDirOrFile, name);
    if (existsSync(f)) return f;
  }
  throw new IpclipError('ERR_FILE_NOT_FOUND', `${runDirOrFile} is a folder without ${RUN_FILES.join(' or ')} (not a training run folder)`);
}

/**
 * A protected classifier: an IP prompt on the frozen CLIP it was trained on, loaded as one object.
 *
 * ```ts
 * using classifier = await ProtectedClassifier.load('runs/photo-sketch');   // finds its prompt and its CLIP
 * const [p] = await classifier.classify(['photo.png'], { topK: 3 });       // { label, index, score, top, scores }
 * for await (const { file, prediction } of classifier.classifyStream('images/')) console.log(file, prediction.label);
 * ```
 * @category Protected classifier
 */
export class ProtectedClassifier implements Disposable {
  readonly #ownsClip: boolean;

  private constructor(
    /** The prompt file that was loaded. */
    readonly file: string,
    /** The frozen CLIP. */
    readonly clip: Clip,
    /** The trained prompt. */
    readonly prompt: PromptModel,
    /** The file's metadata (absent for the release's state). */
    readonly meta: CheckpointMeta | undefined,
    ownsClip: boolean,
  ) {
    this.#ownsClip = ownsClip;
  }

  /**
   * Loads a run folder (its `prompt.safetensors`, else `last.safetensors`) or a prompt file, with its CLIP:
   * `options.clip`, or else the shipped model ({@link LOCAL_MODELS}) whose weights fingerprint the file records.
   * @throws IpclipError `ERR_FILE_NOT_FOUND` (no such run or file), `ERR_MISMATCH` (the CLIP's fingerprint is
   * not the prompt's; the message names both), `ERR_NOT_FOUND` (no CLIP given and no shipped model fits),
   * `ERR_INVALID_ARGUMENT` (a release state without metadata and no `clip` / `classNames`), and the errors of
   * {@link Clip.load} and {@link PromptModel.load}.
   */
  static async load(runDirOrFile: string, options: ProtectedClassifierOptions = {}): Promise<ProtectedClassifier> {
    check(options !== null && typeof options === 'object', 'ProtectedClassifier.load: options must be an object');
    const file = resolvePromptFile(runDirOrFile);
    const meta = (await readCheckpoint(file)).meta;
    const loadOpts = {
      ...(options.device !== undefined ? { device: options.device } : {}), ...(options.dtype !== undefined ? { dtype: options.dtype } : {}),
      ...(options.linear !== undefined ? { linear: options.linear } : {}), ...(options.vocab !== undefined ? { vocab: options.vocab } : {}),
      ...(options.threads !== undefined ? { threads: options.threads } : {}),
    };
    let clip: Clip;
    let owns = true;
    if (options.clip instanceof Clip) {
      clip = options.clip;
      owns = false;
    } else if (options.clip !== undefined) {
      check(typeof options.clip === 'string' && options.clip.length > 0, 'ProtectedClassifier.load: clip must be a Clip or a weights path');
      clip = await Clip.load(options.clip, loadOpts);
    } else {
      if (!meta) {
        throw new IpclipError('ERR_INVALID_ARGUMENT', `${file} has no ipclip metadata (the release's format), so its CLIP is unknown: pass { clip, classNames }`);
      }
      clip = await findShippedClip(meta, file, loadOpts);
    }
    try {
      if (meta && meta.clip.fingerprint !== clip.info.fingerprint) {
        throw new IpclipError('ERR_MISMATCH', `${file} was trained on the CLIP with weights fingerprint ${meta.clip.fingerprint}, ` +
          `but the CLIP given (${clip.info.source}) has fingerprint ${clip.info.fingerprint}: pass the CLIP it was trained on`);
      }
      const prompt = await PromptModel.load(clip, file, options.classNames ? { classNames: options.classNames } : {});
      return new ProtectedClassifier(file, clip, prompt, meta, owns);
    } catch (err) {
      if (owns) clip.dispose();
      throw err;
    }
  }

  /** The class names, in label order (`Prediction.index` indexes them). */
  get classNames(): readonly string[] {
    return this.prompt.classNames;
  }

  /** The training scenario recorded in the file (null without training metadata). */
  get scenario(): string | null {
    return this.meta?.training?.scenario ?? this.meta?.run?.scenario ?? null;
  }

  /**
   * Classifies images (paths, encoded bytes, decoded RGB, or a preprocessed tensor): one {@link Prediction}
   * per image, in order. `onProgress` reports after each batch; `signal` stops between batches with
   * `ERR_ABORTED` and no partial result.
   */
  async classify(images: ClipImages | ImageTensor, options: ProtectedClassifyOptions = {}): Promise<Prediction[]> {
    return this.prompt.classify(images as Parameters<PromptModel['classify']>[0], options as PromptClassifyOptions);
  }

  /**
   * Classifies the image files a folder (recursively), a glob pattern or a list of them names, yielding one
   * {@link FilePrediction} per file in a stable order (sorted paths). Files are listed first, then decoded
   * and classified `batchSize` at a time, so memory holds one batch of images whatever the folder's size.
   * `onProgress` counts files; `signal` stops between batches (the iterator rejects with `ERR_ABORTED`).
   */
  async *classifyStream(folderOrGlob: string | readonly string[], options: ProtectedClassifyOptions = {}): AsyncGenerator<FilePrediction> {
    check(options !== null && typeof options === 'object', 'classifyStream: options must be an object');
    const batchSize = options.batchSize ?? 32;
    check(Number.isSafeInteger(batchSize) && batchSize > 0, `classifyStream: batchSize must be a positive integer, got ${String(batchSize)}`);
    const files = await listImageFiles(folderOrGlob);
    const { onProgress, signal } = options;
    for (let i = 0; i < files.length; i += batchSize) {
      throwIfAborted(signal, 'classifyStream');
      const batch = files.slice(i, i + batchSize);
      const preds = await this.prompt.classify(batch, {
        batchSize, ...(options.topK !== undefined ? { topK: options.topK } : {}), ...(signal ? { signal } : {}),
      });
      onProgress?.({ done: i + batch.length, total: files.length });
      for (const [k, prediction] of preds.entries()) yield { file: batch[k]!, prediction };
    }
  }

  /** Frees the prompt, and the CLIP when it was loaded here (a `Clip` passed in is left to its owner). */
  dispose(): void {
    this.prompt.dispose();
    if (this.#ownsClip) this.clip.dispose();
  }

  /** Same as {@link dispose}, for `using classifier = await ProtectedClassifier.load(...)`. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** The shipped model whose fingerprint `meta` records, or `ERR_NOT_FOUND` listing what was tried. */
async function findShippedClip(meta: CheckpointMeta, file: string, opts: Parameters<typeof Clip.load>[1]): Promise<Clip> {
  const tried: string[] = [];
  for (const name of Object.keys(LOCAL_MODELS)) {
    let clip: Clip;
    try {
      clip = await Clip.load(name, opts);
    } catch {
      tried.push(`${name} (not loadable)`);
      continue;
    }
    if (clip.info.fingerprint === meta.clip.fingerprint) return clip;
    tried.push(`${name} (fingerprint ${clip.info.fingerprint})`);
    clip.dispose();
  }
  throw new IpclipError('ERR_NOT_FOUND', `${file} was trained on the CLIP with weights fingerprint ${meta.clip.fingerprint}, ` +
    `which is none of the shipped models (${tried.join(', ')}): pass { clip: <its weights> }`);
}
