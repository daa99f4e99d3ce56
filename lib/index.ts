/**
 * ipclip: IP-CLIP for Node. CLIP on libtorch with its tokenizer and preprocessing, the data pipeline, and the
 * protection method on top. This is the package entry (`import … from 'ipclip'`): every public name is listed
 * here, by subsystem. The command line is the subpath `ipclip/cli`; the tools that make data, reports and the
 * shipped model are `ipclip/tools`.
 *
 * @packageDocumentation
 * @module ipclip
 */

// --- Errors, tensors, runtime ----------------------------------------------------------------------------------------
export { IpclipError, type IpclipErrorCode } from './core/errors.js';
export type { Tensor, FloatTensor, ImageTensor } from './core/tensor.js';
export { releaseCpuCache, runtimeInfo, setThreads } from './native/load.js';
export type { RuntimeInfo } from './native/types.js';
export type { ProgressEvent, LongCallOptions } from './core/progress.js';

// --- CLIP -------------------------------------------------------------------------------------------------------------
// The model, its tokenizer, similarity, weights files.
export {
  Clip,
  type ClipLoadOptions, type ClipImages, type TokenIds, type EncodeImageOptions, type ImageEncoding,
  type EncodeTextOptions, type ClassifyOptions, type Prediction, type RankedLabel, LOCAL_MODELS,
  type ClipActivation, type ClipConfig, type ClipDtype, type ClipInfo, type ClipLinear,
} from './clip/clip.js';
export { clipLogits, softmaxRows } from './clip/similarity.js';
export { ClipTokenizer, type TokenizeOptions, type TokenBatch } from './clip/tokenizer/tokenizer.js';
export {
  readSafetensors, writeSafetensors,
  type SafetensorsContent, type SafetensorsTensor, type SafetensorsDtype, type TensorData, type TensorToWrite,
} from './io/safetensors.js';
export { convertToSafetensors, type ConversionResult, type ConvertOptions } from './io/convert.js';

// --- Images -----------------------------------------------------------------------------------------------------------
// Decoding and CLIP preprocessing; the augmentations are chosen by name (TransformSpec).
export { decodeImage, CLIP_MEAN, CLIP_STD, DEFAULT_MAX_PIXELS, type ImageInput, type RawImage, type DecodeOptions } from './image/decode.js';
export { preprocess, type PreprocessOptions } from './image/preprocess.js';
export type { AugmentKind, TransformSpec } from './image/transforms.js';

// --- Data -------------------------------------------------------------------------------------------------------------
// Datasets of domain folders, their deterministic splits, batch loading.
export {
  DomainDataset, BadImagesError, SPLIT_PRESETS, SPLIT_RULE, IMAGE_EXTENSIONS, splitKey,
  type Sample, type DatasetSizes, type SplitName, type SplitInfo, type OnBadImage, type BadImage, type FolderOptions,
} from './data/dataset.js';
export { BatchLoader, type Batch, type Draw, type LoaderOptions, type TransformChoice } from './data/loader.js';

// --- Prompt model -----------------------------------------------------------------------------------------------------
// The learned prompt, its enhancer, banks and optimiser state over a frozen CLIP.
export {
  PromptModel, BANK_SIZE,
  type PromptOptions, type PromptLoadOptions, type PromptPrediction, type PromptClassifyOptions,
} from './ipclip/prompt-model.js';

// --- Protected classifier ---------------------------------------------------------------------------------------------
// A trained prompt and its CLIP as one object: load a run, classify images, folders and globs.
export {
  ProtectedClassifier, RUN_FILES,
  type ProtectedClassifierOptions, type ProtectedClassifyOptions, type FilePrediction,
} from './ipclip/protected-classifier.js';
export type { LossTerms } from './native/types.js';
export { LOSS_TERMS, type LossTermName } from './ipclip/loss-terms.js';

// --- Training ---------------------------------------------------------------------------------------------------------
export {
  SCENARIOS, PROTECTION_SCENARIOS, SCENARIO_DESCRIPTORS, type Scenario, type ProtectionScenario, type ScenarioDescriptor,
  type ResolvedScenario, type StreamSpec, type StreamPlan, type UnauthorizedSource, type ScenarioLoss, type LossWeights,
  type EvaluationSpec, type EvaluationSetRule,
} from './ipclip/scenario.js';
export { learningRate, PRESETS, type Preset, type ScheduleOptions } from './ipclip/schedule.js';
export {
  IPTrainer, CHECKPOINT_FILE, BEST_FILE,
  type TrainerOptions, type ResolvedTrainerOptions, type TrainingData, type TrainBatch, type StepTerms, type TrainProgress, type TrainResult,
  type ValidationData, type EarlyStoppingOptions, type EpochEndInfo, type EpochEndAction,
} from './ipclip/trainer/trainer.js';
export {
  DataParallel, distributedFromEnv, resolveDistributed, shardRange, type DistributedBackend, type DistributedOptions, type ResolvedDistributed,
} from './ipclip/trainer/distributed.js';
export type { Pairing } from './ipclip/trainer/streams.js';
export {
  DEFAULT_DISGUISE, blendDisguise, disguiseDraws, withDisguisedUnauthorized,
  type DisguiseOptions, type ResolvedDisguise, type DisguiseDraw,
} from './ipclip/trainer/disguise.js';
// --- Evaluation -------------------------------------------------------------------------------------------------------
export {
  Evaluator, AUTHORIZED_SET,
  type EvalSet, type EvaluatorOptions, type SetResult, type EvaluationReport, type OwnershipReport,
} from './ipclip/evaluator.js';
export {
  runProtectionBenchmark, DEFAULT_RECIPE, DEFAULT_TARGETS,
  type BenchmarkOptions, type BenchmarkRecipe, type BenchmarkTargets, type BenchmarkProgress, type BenchmarkResult,
  type BenchmarkRun, type BenchmarkSetScore, type BenchmarkCheck, type BenchmarkScenarioSummary, type Spread,
} from './ipclip/benchmark.js';
// --- Attacks ----------------------------------------------------------------------------------------------------------
export {
  runAttacks, mergeAttackSeeds, resolveBudgets, recoveredFraction, ATTACK_FAMILIES, DEFAULT_BUDGETS, SELECTION_RULE, RECOVERY_REFERENCE,
  adain, fourierSwap, histogramMatch, styleTarget, disguise, STYLE_METHODS,
  type AttackFamily, type AttackBudgets, type AttackRow, type AttackReport, type AttackProgress, type AttackAccuracy,
  type RunAttacksOptions, type SplitPair, type StyleMethod, type StyleTarget, type AttackRowSpread, type SeedSpread,
} from './ipclip/attacks/index.js';
export {
  accuracy, confusionMatrix, macroF1, protectionMetrics, ownershipEvidence, binomialTestGreater, binomialTestLess,
  type ProtectionMetrics, type OwnershipEvidence, type Tally,
} from './ipclip/metrics.js';

// --- Checkpoints ------------------------------------------------------------------------------------------------------
export {
  readCheckpoint,
  type CheckpointContent, type CheckpointMeta, type TrainingMeta, type EpochRecord, type EpochValidation, type EpochAccumulator, type RunRecord,
} from './ipclip/checkpoint.js';
export {
  importReleaseCheckpoint, readReleaseCheckpoint,
  type ImportReleaseOptions, type ImportedRelease, type ReleaseCheckpoint,
} from './ipclip/release.js';
