/**
 * Importing the authors' release checkpoints: Dassl's `model.pth.tar-N` (a `torch.save` of
 * `{ state_dict, epoch, optimizer, scheduler, val_result }`, read by the addon's torch-free restricted unpickler:
 * no Python, nothing executed) or the same `state_dict` as safetensors.
 *
 * The release's prompt-learner names are ours (method §8). Its extra buffers `token_prefix` [C, 1, Wt] and
 * `token_suffix` [C, ctx − 1 − n_ctx, Wt] are the frozen token embeddings of the class prompts: they are not
 * loaded but checked against the ones this CLIP and class list give, which tells a wrong CLIP from a wrong
 * class list. `style_mapping_tokens.*` (unused by the method) are ignored.
 */
import { open } from 'node:fs/promises';
import type { Clip } from '../clip/clip.js';
import { isIgnoredReleaseName } from './checkpoint.js';
import { IpclipError, check } from '../core/errors.js';
import { loadNative } from '../native/load.js';
import { callNative } from '../native/errors.js';
import type { NativeTorchCheckpoint } from '../native/types.js';
import { PromptModel, contextSize, promptText } from './prompt-model.js';
import { bfloat16ToFloat, halfToFloat, readSafetensors, type TensorData } from '../io/safetensors.js';
import type { Tensor } from '../core/tensor.js';

/**
 * A release checkpoint as read from disk, before it is matched to a CLIP.
 * @category Checkpoints
 */
export interface ReleaseCheckpoint {
  /** `'torch'` (a torch.save file) or `'safetensors'`. */
  format: 'torch' | 'safetensors';
  /** The prompt learner's state dict, float32, release names (token buffers included). */
  state: Record<string, Tensor>;
  /** Plain top-level values of a Dassl file (`epoch`, `val_result`, …); empty for safetensors. */
  info: Record<string, number | string | boolean | null>;
  /** Dassl's epoch counter, when the file has one. */
  epoch?: number;
}

/**
 * Options of {@link importReleaseCheckpoint}.
 * @category Checkpoints
 */
export interface ImportReleaseOptions {
  /** The CLIP the release was trained on (checked through the stored token embeddings). */
  clip: Clip;
  /** The class names in the release's label order (its `classnames`). */
  classNames: readonly string[];
  /** Seed of the parts the release's prompt learner does not hold (the enhancement module); default 0. */
  seed?: number;
  textPath?: 'fast' | 'naive';
}

/**
 * What {@link importReleaseCheckpoint} returns.
 * @category Checkpoints
 */
export interface ImportedRelease {
  /** The prompt with the release's parameters, ready for `logits` / `classify` / `save`. */
  prompt: PromptModel;
  format: 'torch' | 'safetensors';
  epoch?: number;
  /** Names found and not loaded (`style_mapping_tokens.*`; the checked token buffers are not listed). */
  ignored: string[];
}

const ZIP_MAGIC = 0x04034b50;

/**
 * Reads a release checkpoint: a torch.save file (zip format; the legacy pre-1.6 format is refused with a clear
 * message) or a safetensors state dict. A Dassl file's tensors come from its `state_dict`; a plain
 * `torch.save(state_dict)` works too. Optimizer and scheduler state are not returned.
 * @throws IpclipError `ERR_FILE_NOT_FOUND`, `ERR_BAD_FILE` (corrupt, truncated or hostile file: a refused
 * global or opcode, bad offsets, sizes beyond the file), `ERR_BAD_WEIGHTS` (no state dict, non-float tensors).
 * @category Checkpoints
 */
export async function readReleaseCheckpoint(file: string): Promise<ReleaseCheckpoint> {
  check(typeof file === 'string' && file.length > 0, 'readReleaseCheckpoint: file must be a non-empty path');
  const head = Buffer.alloc(4);
  try {
    const fh = await open(file, 'r');
    try {
      await fh.read(head, 0, 4, 0);
    } finally {
      await fh.close();
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new IpclipError('ERR_FILE_NOT_FOUND', `${file}: no such file`);
    if (code !== 'EISDIR') throw new IpclipError('ERR_BAD_FILE', `${file}: cannot read (${(err as Error).message})`, { cause: err });
    // A directory: the native reader gives the uniform message.
  }
  // A torch.save file starts with a zip header, the legacy format with a pickle (0x80); anything else is read as
  // safetensors, whose reader names the problem.
  if (head.readUInt32LE(0) === ZIP_MAGIC || head[0] === 0x80) return fromTorch(file, await callNative(() => loadNative().readTorchCheckpoint(file)));
  const raw = await readSafetensors(file);
  const state: Record<string, Tensor> = Object.create(null) as Record<string, Tensor>;
  for (const [name, t] of Object.entries(raw.tensors)) state[name] = floatTensor(name, t.dtype, t.shape, t.data, file);
  return { format: 'safetensors', state, info: {} };
}

function fromTorch(file: string, raw: NativeTorchCheckpoint): ReleaseCheckpoint {
  // Dassl: { state_dict: {...}, epoch, ... }; or a bare state dict at the root.
  const nested = raw.tensors.some((t) => t.path[0] === 'state_dict' && t.path.length >= 2);
  const picked = raw.tensors.filter((t) => (nested ? t.path[0] === 'state_dict' && t.path.length >= 2 : t.path.length === 1));
  if (picked.length === 0) {
    throw new IpclipError('ERR_BAD_WEIGHTS', `${file}: no state_dict of tensors (expected Dassl's { state_dict, epoch, … } or a state dict)`);
  }
  let names = picked.map((t) => (nested ? t.path.slice(1) : t.path).join('.'));
  if (names.every((n) => n.startsWith('module.'))) names = names.map((n) => n.slice('module.'.length));  // DataParallel
  const state: Record<string, Tensor> = Object.create(null) as Record<string, Tensor>;
  picked.forEach((t, i) => {
    const name = names[i]!;
    if (name in state) throw new IpclipError('ERR_BAD_WEIGHTS', `${file}: tensor '${name}' appears twice`);
    state[name] = floatTensor(name, t.dtype, t.shape, t.data, file);
  });
  const info: Record<string, number | string | boolean | null> = Object.create(null) as Record<string, number | string | boolean | null>;
  for (const s of raw.scalars) if (s.path.length === 1) info[s.path[0]!] = s.value;
  const epoch = info.epoch;
  return { format: 'torch', state, info, ...(typeof epoch === 'number' && Number.isSafeInteger(epoch) ? { epoch } : {}) };
}

function floatTensor(name: string, dtype: string, shape: number[], data: Buffer | TensorData, file: string): Tensor {
  if (data instanceof Buffer) {
    // Raw little-endian bytes from the torch reader: copy into an own (aligned) buffer before viewing it.
    const own = new Uint8Array(data.length);
    own.set(data);
    if (dtype === 'F32') return { data: new Float32Array(own.buffer), shape: [...shape] };
    if (dtype === 'F64') return { data: Float32Array.from(new Float64Array(own.buffer)), shape: [...shape] };
    if (dtype === 'F16' || dtype === 'BF16') {
      const conv = dtype === 'F16' ? halfToFloat : bfloat16ToFloat;
      const u16 = new Uint16Array(own.buffer);
      return { data: Float32Array.from(u16, conv), shape: [...shape] };
    }
  } else if (data instanceof Float32Array) {
    return { data, shape: [...shape] };  // safetensors: F16/BF16 already widened
  } else if (data instanceof Float64Array) {
    return { data: Float32Array.from(data), shape: [...shape] };
  }
  throw new IpclipError('ERR_BAD_WEIGHTS', `${file}: tensor '${name}' has dtype ${dtype}, expected a floating-point type`);
}

/**
 * Imports a release checkpoint (`model.pth.tar-N` or its state dict as safetensors) as an {@link PromptModel} on
 * `clip` for `classNames`. The stored `token_prefix` (the SOT embedding) and `token_suffix` (class name, '.',
 * EOT, padding) are compared with this CLIP's token embeddings of the same prompts.
 * @throws IpclipError `ERR_MISMATCH` whose message says whether the CLIP (SOT / padding embeddings, widths,
 * prompt length) or the class list (count, names, order) differs; `ERR_BAD_WEIGHTS` (missing token buffers or
 * prompt parameters, unknown tensors); the errors of {@link readReleaseCheckpoint}.
 * @category Checkpoints
 */
export async function importReleaseCheckpoint(file: string, opts: ImportReleaseOptions): Promise<ImportedRelease> {
  check(opts !== null && typeof opts === 'object', 'importReleaseCheckpoint: options { clip, classNames } are required');
  const { clip, classNames } = opts;
  check(clip !== null && typeof clip === 'object' && typeof clip.config === 'object', 'importReleaseCheckpoint: clip must be a loaded Clip');
  check(Array.isArray(classNames) && classNames.length > 0 && classNames.every((c) => typeof c === 'string'),
    'importReleaseCheckpoint: classNames must be a non-empty array of strings');
  const release = await readReleaseCheckpoint(file);
  const prefix = release.state.token_prefix;
  const suffix = release.state.token_suffix;
  if (!prefix || !suffix) {
    throw new IpclipError('ERR_BAD_WEIGHTS', `${file}: no token_prefix / token_suffix: not the release's prompt learner state`);
  }
  const state: Record<string, Tensor> = Object.create(null) as Record<string, Tensor>;
  const ignored: string[] = [];
  for (const [name, t] of Object.entries(release.state)) {
    if (name === 'token_prefix' || name === 'token_suffix') continue;
    if (isIgnoredReleaseName(name)) ignored.push(name);
    else state[name] = t;
  }
  // PromptModel.create checks the class names (distinct, non-empty, fit the context) before the comparison.
  const prompt = await PromptModel.create(clip, classNames, { seed: opts.seed ?? 0, ...(opts.textPath ? { textPath: opts.textPath } : {}) });
  try {
    await checkTokenBuffers(file, clip, classNames, prefix, suffix);
    await prompt.setState(state);
  } catch (err) {
    prompt.dispose();
    throw err;
  }
  return { prompt, format: release.format, ...(release.epoch !== undefined ? { epoch: release.epoch } : {}), ignored };
}

/**
 * The release's frozen prompt embeddings against this CLIP's: rows that do not depend on the class (SOT, and
 * the padding after EOT) decide "another CLIP"; when they agree, differing class rows mean another class list.
 */
async function checkTokenBuffers(file: string, clip: Clip, classNames: readonly string[], prefix: Tensor, suffix: Tensor): Promise<void> {
  const cfg = clip.config;
  const W = cfg.text.width;
  const ctx = cfg.text.contextLength;
  const nCtx = contextSize(cfg.vision.layers);
  const S = ctx - 1 - nCtx;
  const C = classNames.length;
  const clipMismatch = (why: string) => new IpclipError('ERR_MISMATCH',
    `${file} was trained on another CLIP than the one given: ${why}`);
  const classMismatch = (why: string) => new IpclipError('ERR_MISMATCH',
    `${file} was trained for another class list than the one given: ${why}`);

  const [pc, p1, pw] = prefix.shape;
  const [sc, ss, sw] = suffix.shape;
  if (prefix.shape.length !== 3 || suffix.shape.length !== 3 || p1 !== 1 || pc !== sc || pw !== sw) {
    throw new IpclipError('ERR_BAD_WEIGHTS', `${file}: token_prefix [${prefix.shape}] and token_suffix [${suffix.shape}] do not form [C,1,W] / [C,S,W]`);
  }
  if (pw !== W) throw clipMismatch(`its token embeddings are ${pw} wide, this CLIP's text width is ${W}`);
  if (ss !== S) {
    throw clipMismatch(`its prompts have ${ss} tokens after the context, this CLIP gives ${S} ` +
      `(context length ${ctx}, n_ctx ${nCtx} from ${cfg.vision.layers} vision layers)`);
  }

  const tokenizer = clip.tokenizer;
  if (!tokenizer) throw new IpclipError('ERR_INVALID_ARGUMENT', 'importReleaseCheckpoint: the CLIP needs a tokenizer (load it with `vocab`)');
  const ids = new Int32Array(C * ctx);
  classNames.forEach((name, c) => ids.set(tokenizer.tokenize(promptText(name, nCtx), { contextLength: ctx }).data, c * ctx));
  const native = clip.nativeModel;
  const emb = await callNative(() => loadNative().tokenEmbeddings(native, ids, [C, ctx]));  // [C, ctx, W]
  const ours = (c: number, pos: number) => emb.data.subarray((c * ctx + pos) * W, (c * ctx + pos + 1) * W);
  const theirs = (c: number, pos: number) => (pos === 0
    ? prefix.data.subarray(c * W, (c + 1) * W)
    : suffix.data.subarray((c * S + pos - 1 - nCtx) * W, (c * S + pos - nCtx) * W));

  // Both sides are float32 copies of the same embedding table: equal up to the CLIP's own compute dtype.
  let scale = 0;
  for (const v of emb.data) scale = Math.max(scale, Math.abs(v));
  const dtype = clip.info.dtype;
  const tol = 1e-7 + scale * (dtype === 'bfloat16' ? 2 ** -8 : dtype === 'float16' ? 2 ** -11 : 1e-6);
  const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
    let m = 0;
    for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
    return m;
  };

  // Class-independent rows: SOT of every stored class, and the last position (padding, unless a class name
  // fills the whole context) against our padding row.
  const eot = Math.max(...Array.from({ length: C }, (_, c) => lastNonZero(ids.subarray(c * ctx, (c + 1) * ctx))));
  const padRef = eot < ctx - 1 ? ours(0, ctx - 1) : null;
  const fileClasses = pc!;
  for (let c = 0; c < fileClasses; c++) {
    const d = maxDiff(theirs(c, 0), ours(0, 0));
    if (d > tol) throw clipMismatch(`the start-of-text embedding differs (max |Δ| = ${d.toExponential(2)})`);
  }
  if (padRef) {
    for (let c = 0; c < fileClasses; c++) {
      const d = maxDiff(theirs(c, ctx - 1), padRef);
      if (d > tol) throw clipMismatch(`the padding-token embedding differs (max |Δ| = ${d.toExponential(2)})`);
    }
  }
  if (fileClasses !== C) throw classMismatch(`it has ${fileClasses} classes, ${C} were given`);
  const same = (i: number, j: number) => {
    for (let pos = 1 + nCtx; pos < ctx; pos++) if (maxDiff(theirs(i, pos), ours(j, pos)) > tol) return false;
    return true;
  };
  const wrong = Array.from({ length: C }, (_, c) => c).filter((c) => !same(c, c));
  if (wrong.length === 0) return;
  // Which given name does each stored class prompt match? A permutation means the same classes in another order.
  const match = Array.from({ length: C }, (_, i) => Array.from({ length: C }, (_, j) => j).find((j) => same(i, j)));
  if (match.every((j) => j !== undefined) && new Set(match).size === C) {
    throw classMismatch(`the same classes in another order; the checkpoint's order is [${match.map((j) => classNames[j!]).join(', ')}]`);
  }
  const shown = wrong.slice(0, 5).map((c) => `${c} ('${classNames[c]}')`).join(', ');
  throw classMismatch(`the class-name embeddings at position${wrong.length > 1 ? 's' : ''} ${shown}${wrong.length > 5 ? ', …' : ''} do not match the given names`);
}

function lastNonZero(row: Int32Array): number {
  for (let i = row.length - 1; i >= 0; i--) if (row[i] !== 0) return i;
  return 0;
}
