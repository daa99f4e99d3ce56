/**
 * The raw native addon (`build/Release/ipclip.node`): its hand-written TypeScript types, how it is found and
 * loaded, and how its errors become {@link IpclipError}s. Public code uses the classes built on top
 * ({@link Clip}); this module is for them and for tools that need the raw binding.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IpclipError, type IpclipErrorCode } from './errors.js';
import type { Tensor } from './tensor.js';

// ---------------------------------------------------------------------------------------------------------------
// Types of the raw binding (kept by hand in step with native/binding/*.cpp)

/** Architecture of a loaded CLIP, inferred from its weights. */
export interface ClipConfig {
  /** Joint embedding dimension D. */
  embedDim: number;
  vision: { width: number; layers: number; heads: number; patchSize: number; imageSize: number };
  text: { width: number; layers: number; heads: number; contextLength: number; vocabSize: number };
}

/** Where a loaded CLIP came from and how it runs. */
export interface ClipInfo {
  /** `'openai-safetensors'`, `'huggingface'`, `'torchscript'`, or `'random'` for {@link Clip.random}. */
  format: string;
  /** A short hash of the weights (identifies the model in checkpoints). */
  fingerprint: string;
  /** `'cpu'` or `'cuda:N'`. */
  device: string;
  /** Compute dtype: `'float32'`, `'float16'` or `'bfloat16'`. */
  dtype: string;
  /** Bytes of parameters held natively. */
  bytes: number;
  /** The path it was loaded from. */
  source: string;
  /** exp(logit_scale) of the checkpoint: the factor on cosine similarities in CLIP's logits. */
  logitScale: number;
}

/** Compute dtypes a model can be loaded in. */
export type ClipDtype = 'float32' | 'float16' | 'bfloat16';

/** Options of the raw `loadClip`. */
export interface NativeLoadOptions {
  device?: string;
  dtype?: ClipDtype;
  threads?: number;
}

/** The raw result of `ClipModel.encodeImage`. */
export interface NativeImageOutput {
  embeds: Tensor;
  layers?: Tensor;
  stats?: Tensor;
}

/** The raw bound CLIP (native/binding/ClipModel.cpp). Its methods run on libuv worker threads. */
export interface NativeClipModel {
  readonly config: ClipConfig;
  readonly info: ClipInfo;
  encodeImage(data: Float32Array, shape: number[], opts?: { layers?: boolean; stats?: boolean }): Promise<NativeImageOutput>;
  encodeText(ids: Int32Array | BigInt64Array, shape: number[]): Promise<Tensor>;
  dispose(): void;
}

/** Safetensors dtypes the native reader accepts. */
export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** The raw result of `readSafetensors`: tensors as little-endian bytes. */
export interface NativeSafetensors {
  tensors: Record<string, { dtype: SafetensorsDtype; shape: number[]; data: Buffer }>;
  metadata: Record<string, string>;
}

/** What libtorch this addon runs on. */
export interface RuntimeInfo {
  torchVersion: string;
  cudaAvailable: boolean;
  cudaDevices: number;
  /** libtorch's intra-op thread count. */
  threads: number;
}

/** Everything the addon exports. Optional members arrive with later native areas (prompt, pretrainer). */
export interface NativeAddon {
  loadClip(path: string, opts?: NativeLoadOptions): Promise<NativeClipModel>;
  /** A CLIP of the given architecture with OpenAI-style random initialisation (benchmarks, tests). */
  createRandomClip(config: ClipConfig, opts?: { seed?: number; device?: string; dtype?: ClipDtype }): Promise<NativeClipModel>;
  readSafetensors(path: string): Promise<NativeSafetensors>;
  runtimeInfo(): RuntimeInfo;
  setThreads(n: number): void;
  /** The bound class (for `instanceof` checks); models are made by `loadClip`. */
  ClipModel: abstract new (...args: never[]) => NativeClipModel;
  // Prompt models and the pretrainer: native/binding/PromptModel.cpp, Pretrainer.cpp (typed by their modules).
  createPrompt?: (...args: never[]) => unknown;
  Pretrainer?: unknown;
}

// ---------------------------------------------------------------------------------------------------------------
// Loading

/** The package root: the nearest folder above this module holding package.json (works from lib/ and dist/). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new IpclipError('ERR_ADDON_MISSING', 'cannot find the ipclip package root (no package.json above lib/)');
    dir = up;
  }
}

/** Where the addon is loaded from: `$IPCLIP_ADDON` if set, else `<package>/build/Release/ipclip.node`. */
export function addonPath(): string {
  const override = process.env.IPCLIP_ADDON;
  if (override) return resolve(override);
  return join(packageRoot(), 'build', 'Release', 'ipclip.node');
}

const BUILD_HELP =
  'Build it with `npx ipclip build` (in a clone of the repository: `npm run build:native`). ' +
  'It needs cmake, a C++17 compiler and libtorch; on Debian/Ubuntu: ' +
  '`sudo apt-get install cmake g++ libtorch-dev libopenblas-dev`.';

let cached: NativeAddon | undefined;

/**
 * Loads the native addon once per process (or worker thread) and returns it.
 * Throws `ERR_ADDON_MISSING` (naming the build command) when it is not built or cannot be loaded.
 */
export function loadNative(): NativeAddon {
  if (cached) return cached;
  const path = addonPath();
  if (!existsSync(path)) {
    throw new IpclipError('ERR_ADDON_MISSING', `the ipclip native addon is not built (${path} is missing). ${BUILD_HELP}`);
  }
  try {
    cached = createRequire(import.meta.url)(path) as NativeAddon;
  } catch (err) {
    // Typically a libtorch shared library that moved or was uninstalled since the build.
    const why = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new IpclipError('ERR_ADDON_MISSING', `the ipclip native addon at ${path} cannot be loaded (${why}). ${BUILD_HELP}`, { cause: err });
  }
  return cached;
}

// ---------------------------------------------------------------------------------------------------------------
// Errors

const CODES: ReadonlySet<string> = new Set<IpclipErrorCode>([
  'ERR_INVALID_ARGUMENT', 'ERR_EMPTY_INPUT', 'ERR_FILE_NOT_FOUND', 'ERR_BAD_FILE', 'ERR_BAD_IMAGE', 'ERR_BAD_WEIGHTS',
  'ERR_MISMATCH', 'ERR_TEXT_TOO_LONG', 'ERR_NON_FINITE', 'ERR_DISPOSED', 'ERR_DEVICE', 'ERR_ADDON_MISSING', 'ERR_IO',
  'ERR_ABORTED', 'ERR_NATIVE',
]);

/**
 * Turns whatever the addon threw into an {@link IpclipError} with the same code and message (so callers can use
 * `instanceof IpclipError`). Errors without a known code become `ERR_NATIVE`; IpclipErrors pass through.
 */
export function wrapNativeError(err: unknown): IpclipError {
  if (err instanceof IpclipError) return err;
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return new IpclipError(typeof code === 'string' && CODES.has(code) ? (code as IpclipErrorCode) : 'ERR_NATIVE', err.message, { cause: err });
  }
  return new IpclipError('ERR_NATIVE', String(err));
}

/** Runs a native call (synchronous part and promise) and rethrows its failures through {@link wrapNativeError}. */
export async function callNative<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw wrapNativeError(err);
  }
}

/** Synchronous variant of {@link callNative} for getters and setters. */
export function callNativeSync<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw wrapNativeError(err);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Runtime helpers (public)

/** The libtorch version, CUDA availability and thread count of the loaded addon. */
export function runtimeInfo(): RuntimeInfo {
  return callNativeSync(() => loadNative().runtimeInfo());
}

/** Sets libtorch's intra-op thread count for the whole process (1–1024). */
export function setThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > 1024) {
    throw new IpclipError('ERR_INVALID_ARGUMENT', `threads must be an integer between 1 and 1024 (got ${String(n)})`);
  }
  callNativeSync(() => loadNative().setThreads(n));
}
