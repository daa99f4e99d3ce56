/**
 * The shapes of the raw native addon (`build/Release/ipclip.node`), kept by hand in step with
 * native/binding/*.cpp: types only, no code. How the addon is found and loaded is in `load.ts`; how its errors
 * become {@link IpclipError}s is in `errors.ts`. Public code uses the classes built on top ({@link Clip},
 * {@link PromptModel}); the few types users see (the CLIP config and info, loss terms) are re-exported by them.
 */
import type { FloatTensor, Tensor } from '../core/tensor.js';

// ---------------------------------------------------------------------------------------------------------------
// Types of the raw binding (kept by hand in step with native/binding/*.cpp)

/**
 * The MLP nonlinearity of a tower: `quick_gelu` (x·σ(1.702x), OpenAI's CLIP) or `gelu` (the exact erf GELU,
 * most LAION/OpenCLIP models). Read from Hugging Face's `hidden_act` or open_clip's `quick_gelu`.
 * @category CLIP
 */
export type ClipActivation = 'quick_gelu' | 'gelu';

/**
 * Architecture of a loaded CLIP, inferred from its weights.
 * @category CLIP
 */
export interface ClipConfig {
  /** Joint embedding dimension D. */
  embedDim: number;
  /** `activation` is always reported; as input (`Clip.random`) it defaults to `quick_gelu`. */
  vision: { width: number; layers: number; heads: number; patchSize: number; imageSize: number; activation?: ClipActivation };
  text: { width: number; layers: number; heads: number; contextLength: number; vocabSize: number; activation?: ClipActivation };
}

/**
 * Where a loaded CLIP came from and how it runs.
 * @category CLIP
 */
export interface ClipInfo {
  /** `'openai-safetensors'`, `'huggingface'`, `'torchscript'`, or `'random'` for {@link Clip.random}. */
  format: string;
  /** A short hash of the weights (identifies the model in checkpoints). */
  fingerprint: string;
  /** `'cpu'` or `'cuda:N'`. */
  device: string;
  /** Compute dtype: `'float32'`, `'float16'`, `'bfloat16'` or `'float64'` (what `'auto'` chose, when asked). */
  dtype: string;
  /**
   * The engine of the towers' linear layers: `'onednn'` (float32 on the CPU with `linear: 'onednn'`, or `'auto'` on
   * an AVX-512 CPU), `'blas'` (libtorch's ordinary CPU path, OpenBLAS in Debian's libtorch) or `'cublas'` (CUDA).
   */
  linear: 'onednn' | 'blas' | 'cublas';
  /** Bytes of parameters held natively. */
  bytes: number;
  /** The path it was loaded from. */
  source: string;
  /** exp(logit_scale) of the checkpoint: the factor on cosine similarities in CLIP's logits. */
  logitScale: number;
  /**
   * CUDA only: whether matrix products and convolutions may round inputs to TF32. Loading a `float32` model on
   * CUDA switches TF32 off process-wide (cuBLAS and cuDNN), so this is `false` for it.
   */
  tf32?: boolean;
}

/**
 * Compute dtypes a model can be loaded in. `float64` (CPU only) is for exactness checks and reference
 * computations: results then come back as `Float64Array`, and an IP prompt on such a model runs in float64 too.
 * @category CLIP
 */
export type ClipDtype = 'float32' | 'float16' | 'bfloat16' | 'float64';

/**
 * The engine of the towers' linear layers on the CPU in float32: `'onednn'` (libtorch's oneDNN inner product),
 * `'blas'` (OpenBLAS) or `'auto'` (oneDNN on CPUs with AVX-512, OpenBLAS otherwise). The same function to fp32
 * round-off; float64, half precision and CUDA always take libtorch's ordinary path.
 * @category CLIP
 */
export type ClipLinear = 'auto' | 'onednn' | 'blas';

/** Options of the raw `loadClip`. */
export interface NativeLoadOptions {
  device?: string;
  /** `'auto'`: bfloat16 on a CPU with AVX512-BF16 or AMX, float32 otherwise. */
  dtype?: ClipDtype | 'auto';
  linear?: ClipLinear;
  threads?: number;
}

/** The raw result of `ClipModel.encodeImage`. */
export interface NativeImageOutput {
  embeds: FloatTensor;
  layers?: FloatTensor;
  stats?: FloatTensor;
}

/** The raw bound CLIP (native/binding/ClipModel.cpp). Its methods run on libuv worker threads. */
export interface NativeClipModel {
  readonly config: ClipConfig;
  readonly info: ClipInfo;
  encodeImage(data: Float32Array, shape: number[], opts?: { layers?: boolean; stats?: boolean }): Promise<NativeImageOutput>;
  encodeText(ids: Int32Array | BigInt64Array, shape: number[]): Promise<FloatTensor>;
  dispose(): void;
}

/**
 * Safetensors dtypes the native reader accepts.
 * @category CLIP
 */
export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** The raw result of `readSafetensors`: tensors as little-endian bytes. */
export interface NativeSafetensors {
  tensors: Record<string, { dtype: SafetensorsDtype; shape: number[]; data: Buffer }>;
  metadata: Record<string, string>;
}

/**
 * What libtorch this addon runs on.
 * @category Errors, tensors, runtime
 */
export interface RuntimeInfo {
  torchVersion: string;
  cudaAvailable: boolean;
  cudaDevices: number;
  /** libtorch's intra-op thread count. */
  threads: number;
  /** The CPU as `/proc/cpuinfo` describes it (what `dtype: 'auto'`, `linear: 'auto'` and the bench's peak read). */
  cpu: { model: string; mhz: number; avx2: boolean; avx512f: boolean; avx512bf16: boolean; amxBf16: boolean; onednn: boolean;
    /** Physical cores this process may run on (SMT siblings once); the default thread count. 0: unknown. */
    physicalCores: number };
  /**
   * The caching allocator of CPU tensors (blocks of ≥ 1 MiB kept after free for reuse, so a model's repeated
   * forwards do not fault in fresh pages each time). `IPCLIP_CPU_CACHE_MB` (read when the addon first loads)
   * sets `capBytes`, the most kept while idle; 0 leaves libtorch's default allocator (`installed: false`).
   */
  cpuCache: { installed: boolean; capBytes: number; cachedBytes: number; liveBytes: number; hits: number; misses: number };
}

/** Everything the addon exports. Optional members arrive with later native areas (prompt, pretrainer). */
export interface NativeAddon {
  loadClip(path: string, opts?: NativeLoadOptions): Promise<NativeClipModel>;
  /** A CLIP of the given architecture with OpenAI-style random initialisation (benchmarks, tests). */
  createRandomClip(config: ClipConfig, opts?: { seed?: number; device?: string; dtype?: ClipDtype | 'auto'; linear?: ClipLinear }): Promise<NativeClipModel>;
  readSafetensors(path: string): Promise<NativeSafetensors>;
  runtimeInfo(): RuntimeInfo;
  setThreads(n: number): void;
  /** Frees the CPU cache's idle blocks now (see {@link RuntimeInfo.cpuCache}). */
  releaseCpuCache(): void;
  /** The bound class (for `instanceof` checks); models are made by `loadClip`. */
  ClipModel: abstract new (...args: never[]) => NativeClipModel;
  /** An IP-CLIP prompt over a loaded CLIP: class token ids [C, contextLength] (synchronous, cheap). */
  createPrompt: CreatePrompt;
  /** A contrastive pretrainer of a fresh, randomly initialised CLIP (native/binding/Pretrainer.cpp). */
  createPretrainer(config: ClipConfig, opts: { seed: number; device: string }): NativePretrainer;
  /**
   * Median milliseconds of an n×n float32 matrix product with the addon's libtorch (the bench's peak): `'blas'`
   * (default) is torch::mm, `'onednn'` the towers' oneDNN linear with its layout conversions.
   */
  benchMatmul(n: number, repeats?: number, kernel?: 'blas' | 'onednn'): Promise<number>;
  /**
   * PIL-exact antialiased bicubic resize of 8-bit RGB pixels (native/binding/Resample.cpp) on a worker thread.
   * `data` is read in place: it must not be changed or transferred until the promise settles. `threads` (1–64;
   * default: up to 4 for images of 1.4 MP or more, else 1) never changes the result.
   */
  resizeBicubic(data: Uint8Array, width: number, height: number, outWidth: number, outHeight: number, threads?: number): Promise<Buffer>;
  /** A torch.save file through the torch-free restricted unpickler (native/binding/TorchReader.cpp). */
  readTorchCheckpoint(path: string): Promise<NativeTorchCheckpoint>;
  /** The parameters and buffers of a TorchScript archive (libtorch's loader: a trusted file), one path element each. */
  readTorchScriptArchive(path: string): Promise<NativeTorchCheckpoint>;
  /** Rows of a CLIP's token embedding: ids [N, T] → [N, T, Wt] float32. */
  tokenEmbeddings(clip: NativeClipModel, ids: Int32Array, shape: number[]): Promise<Tensor>;
  /** Joins a data-parallel job (native/binding/ProcessGroup.cpp): resolves once every rank has joined. */
  createProcessGroup(opts: NativeProcessGroupOptions): Promise<NativeProcessGroup>;
  /** The backends this build has (`gloo` with the gloo headers at build time, `nccl` with a CUDA libtorch). */
  readonly distributedBackends: readonly string[];
}

/** What {@link NativeAddon.createProcessGroup} takes. */
export interface NativeProcessGroupOptions {
  backend: 'gloo' | 'nccl';
  rank: number;
  worldSize: number;
  masterAddr: string;
  masterPort: number;
  timeoutMs: number;
  /** torchrun's agent serves the store: every rank is a client, keys under `/worker/attempt_<attempt>`. */
  agentStore?: boolean;
  attempt?: number;
}

/**
 * One rank's process group (c10d: TCPStore + Gloo or NCCL). Every call is a collective: every rank makes the
 * same calls in the same order. Failures (a peer gone, the timeout) reject with `ERR_DISTRIBUTED`.
 */
export interface NativeProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly backend: string;
  /** The element-wise sum over ranks. */
  allReduce(values: Float64Array): Promise<Float64Array>;
  /** Every rank's values (the same length on every rank), in rank order. */
  allGather(values: Float64Array): Promise<Float64Array[]>;
  /** Rank `root`'s values (the same length on every rank). */
  broadcast(values: Float64Array, root: number): Promise<Float64Array>;
  barrier(): Promise<void>;
  /** Leaves the job; later calls reject. */
  close(): Promise<void>;
  dispose(): void;
}

/** The raw result of `readTorchCheckpoint`: every tensor and scalar leaf with its key path from the root. */
export interface NativeTorchCheckpoint {
  tensors: { path: string[]; dtype: SafetensorsDtype; shape: number[]; data: Buffer }[];
  scalars: { path: string[]; value: number | string | boolean | null }[];
}
// ---------------------------------------------------------------------------------------------------------------
// IP-CLIP prompt models (native/binding/PromptModel.cpp)

/**
 * The weight of each loss term beside CE_A (weight 1) in the total of method §4:
 * `CE_A + ceU·min(CE_U,5) + ceSelf·min(CE_self,5) + ceCross·min(CE_cross,5) + mse·min(MSE,5) + entropy·H + kl·KL`.
 * Finite numbers; lib/ipclip/scenario.ts holds each scenario's, and the native step takes them as they are.
 * @category Training
 */
export interface LossWeights {
  ceU: number;
  ceSelf: number;
  ceCross: number;
  mse: number;
  entropy: number;
  kl: number;
}

/**
 * The attack suite's loss weights (lib/ipclip/attacks; native/ipclip/losses.h): any of the six above (absent: 0)
 * and terms on the authorized batch alone, read with or without an unauthorized batch: CE_A's weight (default 1),
 * the mean prediction entropy, the batch-diversity term Σ_c p̄_c log p̄_c, and KL(q ‖ p) towards
 * {@link NativeStepOptions.distillTargets} (default 0).
 */
export interface AttackLossWeights extends Partial<LossWeights> {
  ceA?: number;
  entropyA?: number;
  diversityA?: number;
  distillA?: number;
}

/** Options of the native training step. */
export interface NativeStepOptions {
  /** The entropy's numerics (paper's or the release's). Default `paper`. */
  preset?: 'paper' | 'official';
  /**
   * false: the unprotected reference's step, CE_A alone; no unauthorized batch is needed or read and the other
   * terms are reported as 0. Default true.
   */
  unauthorized?: boolean;
  /** Required unless `unauthorized` is false. */
  lossWeights?: LossWeights | AttackLossWeights;
  /**
   * Bound CE_U per unauthorized sample at this value, mean_b min(CE_b, bound), instead of min(mean_b CE_b, 5)
   * (beyond the paper; `TrainerOptions.clampPerSample`). Absent: the release's term.
   */
  ceUPerSample?: number;
  lr: number;
  weightDecay?: number;
  /** false: loss and gradients only, no Adam step. */
  update?: boolean;
  returnOutputs?: boolean;
  trainEnhancer?: boolean;
  /**
   * Copy this step's gradients to the host for {@link NativePromptModel.gradients} (default: only when `update`
   * is false). Training steps leave them on the device: no copy, no wait for a GPU.
   */
  keepGradients?: boolean;
  /** Soft targets `[B, C]` of the authorized batch for the `distillA` term (rows summing to 1). */
  distillTargets?: FloatTensor;
}

/**
 * The loss terms of one step, unclamped, and the total.
 * @category Prompt model
 */
export interface LossTerms {
  loss: number;
  ceA: number;
  ceU: number;
  ceSelf: number;
  ceCross: number;
  mse: number;
  kl: number;
  entropy: number;
}

/** What the native step returns. */
export interface NativeStepResult {
  terms: LossTerms;
  /** True when the loss or a gradient was not finite and the update was skipped. */
  skipped: boolean;
  outputs?: { zA: FloatTensor; zU: FloatTensor; zSelf: FloatTensor; zCross: FloatTensor; domainA: FloatTensor; domainU: FloatTensor };
}

/** The float16 dynamic loss scale: the factor, and the finite steps counted towards its next doubling. */
export interface LossScaleState {
  scale: number;
  goodSteps: number;
}

/** Adam's state: step count and moments keyed `exp_avg.<name>` / `exp_avg_sq.<name>`, and the loss scale. */
export interface NativeOptimizerState {
  step: number;
  tensors: Record<string, FloatTensor>;
  /** Always returned; optional on input (absent: the prompt's current scale is kept). */
  lossScale?: LossScaleState;
}

/** What the vision tower gives the prompt, per batch: `embeds` `[B,D]` (normalised), `stats` `[L,B,2,W]`. */
export interface NativeVisionFeatures {
  embeds: FloatTensor;
  stats: FloatTensor;
}

/** The raw bound prompt model. Mutating calls are async: they queue behind running work on a worker thread. */
export interface NativePromptModel {
  readonly numClasses: number;
  readonly nCtx: number;
  readonly dims: { layers: number; visionWidth: number; textWidth: number; embedDim: number; imageSize: number };
  /** Updates skipped so far because of a non-finite loss or gradient. */
  readonly skippedSteps: number;
  state(): Promise<Record<string, FloatTensor>>;
  setState(state: Record<string, FloatTensor>): Promise<void>;
  logits(images: Float32Array, shape: number[], opts?: { domain?: boolean; embeds?: boolean }):
    Promise<{ logits: FloatTensor; domain?: FloatTensor; embeds?: FloatTensor }>;
  bankUpdate(images: Float32Array, shape: number[], labels: Int32Array, which: 'authorized' | 'unauthorized'): Promise<{ logits: FloatTensor }>;
  /**
   * Data-parallel bank construction: this rank's slice of a global batch (`null`: none) is all-gathered with
   * the other ranks' (rank order) and the bank takes the whole batch. A collective over the attached group.
   */
  bankUpdate(images: Float32Array | null, shape: number[] | null, labels: Int32Array, which: 'authorized' | 'unauthorized',
    opts: { gather: true }): Promise<{ logits: FloatTensor }>;
  /** Later steps all-reduce gradients, terms and the skip decision over `group` (null: one process again). */
  attachGroup(group: NativeProcessGroup | null): Promise<void>;
  /** Rank `root`'s prompt, enhancer and banks on every rank of the attached group (a collective). */
  broadcastState(root: number): Promise<void>;
  resetBanks(): Promise<void>;
  step(imagesA: Float32Array, shapeA: number[], labelsA: Int32Array, imagesU: Float32Array, shapeU: number[], labelsU: Int32Array,
    opts: NativeStepOptions): Promise<NativeStepResult>;
  /** The frozen vision tower alone: normalised embeddings `[B,D]` and per-layer token mean/std `[L,B,2,W]` (fp32, or fp64). */
  encodeVision(images: Float32Array, shape: number[]): Promise<NativeVisionFeatures>;
  /** {@link NativePromptModel.step} from {@link NativePromptModel.encodeVision}'s output (`featU` unused by `reference`). */
  stepFeatures(featA: NativeVisionFeatures, labelsA: Int32Array, featU: NativeVisionFeatures, labelsU: Int32Array,
    opts: NativeStepOptions): Promise<NativeStepResult>;
  /**
   * The feature cache: runs the frozen vision tower on `images` and keeps the features native-side, in `stream`'s
   * cache of `size` samples, at the samples `indices` (one per image). A first fill, or another size, allocates it.
   */
  cacheFeatures(stream: 'authorized' | 'unauthorized', size: number, indices: Int32Array, images: Float32Array, shape: number[]): Promise<void>;
  /** Frees both streams' cached features. */
  clearFeatures(): Promise<void>;
  /** Data parallelism: every rank's cached share of `stream` on every rank (a collective over the attached group). */
  shareFeatures(stream: 'authorized' | 'unauthorized'): Promise<void>;
  /**
   * {@link NativePromptModel.step} on cached features, gathered native-side: A's samples `indicesA` of the
   * authorized cache, U's `indicesU` of the unauthorized one (unread when `unauthorized` is false).
   * `ERR_INVALID_ARGUMENT` for a sample never cached.
   */
  stepCached(indicesA: Int32Array, labelsA: Int32Array, indicesU: Int32Array, labelsU: Int32Array, opts: NativeStepOptions): Promise<NativeStepResult>;
  /**
   * The last step's gradients (a synchronous copy of the host copies the step made). Throws
   * `ERR_INVALID_ARGUMENT` after a step that did not keep them (see {@link NativeStepOptions.keepGradients}).
   */
  gradients(): Record<string, FloatTensor>;
  optimizerState(): Promise<NativeOptimizerState>;
  setOptimizerState(s: NativeOptimizerState): Promise<void>;
  dispose(): void;
}

export type CreatePrompt = (clip: NativeClipModel, classTokens: Int32Array, shape: [number, number],
  opts: { nCtx: number; seed: number; textPath?: 'fast' | 'naive'; bankSize?: number }) => NativePromptModel;


// ---------------------------------------------------------------------------------------------------------------
// The CLIP pretrainer (native/binding/Pretrainer.cpp)

/**
 * What one optimiser step reports.
 * @category Pretraining
 */
export interface PretrainStepStats {
  /** Symmetric InfoNCE loss of the batch, before the update. */
  loss: number;
  /** Fraction of images whose best-scoring caption in the batch is one of theirs (identical captions count). */
  accuracy: number;
  /** exp(logit_scale) after the update: the factor on cosine similarities (starts at 1/0.07, at most 100). */
  logitScale: number;
}

/** The raw bound pretrainer (native/binding/Pretrainer.cpp). Its promises run on libuv worker threads. */
export interface NativePretrainer {
  readonly config: ClipConfig;
  readonly steps: number;
  step(images: Float32Array, imageShape: number[], ids: Int32Array, idsShape: number[],
    opts: { lr: number; weightDecay: number; gradClip?: number }): Promise<PretrainStepStats>;
  state(): Promise<Record<string, Tensor>>;
  encodeImage(images: Float32Array, shape: number[]): Promise<Tensor>;
  encodeText(ids: Int32Array, shape: number[]): Promise<Tensor>;
  dispose(): void;
}
