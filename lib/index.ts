/**
 * ipclip: IP-CLIP for Node. CLIP on libtorch, its tokenizer and preprocessing, the data pipeline, and the
 * protection method on top. This is the package entry: everything public is exported here, by area.
 *
 * @packageDocumentation
 */

// --- Errors and plain tensors --------------------------------------------------------------------------------------
export { IpclipError, check, type IpclipErrorCode } from './core/errors.js';
export { numel, type Tensor, type FloatTensor, type ImageTensor } from './core/tensor.js';
export { Rng, hashString } from './core/rng.js';

// --- Native runtime -------------------------------------------------------------------------------------------------
export { addonPath, loadNative, runtimeInfo, setThreads } from './native/load.js';
export { wrapNativeError } from './native/errors.js';
export type { NativeAddon, NativeClipModel, NativeImageOutput, NativeLoadOptions, NativeSafetensors, RuntimeInfo } from './native/types.js';

// --- CLIP -------------------------------------------------------------------------------------------------------------
export * from './clip/clip.js';
export { clipLogits, softmaxRows, argmaxRows } from './clip/similarity.js';
export * from './io/safetensors.js';

// --- Tokenizer --------------------------------------------------------------------------------------------------------
export * from './clip/tokenizer/tokenizer.js';
export { learnMerges, writeOpenAiVocab, type LearnMergesOptions } from './clip/tokenizer/train.js';

// --- Images: decoding, preprocessing, augmentation ------------------------------------------------------------------
export * from './image/decode.js';
export * from './image/preprocess.js';
export * from './image/augment.js';
export * from './image/transforms.js';

// --- Data: datasets, batch loading, synthetic domains ---------------------------------------------------------------
export * from './data/dataset.js';
export { BatchLoader, cycle, cyclePosition, cycledDraws, type Batch, type Draw, type LoaderOptions, type TransformChoice } from './data/loader.js';
export * from './tools/synth/synth.js';

// --- Metrics --------------------------------------------------------------------------------------------------------
export * from './ipclip/metrics.js';

// --- IP-CLIP (prompt models, training, protection): exported below by their modules --------------------------------
export {
  PromptModel, BANK_SIZE, contextSize, promptText, isPromptParameter,
  type PromptOptions, type PromptLoadOptions, type PromptPrediction, type LossTerms,
  type NativePromptModel, type NativeStepOptions, type NativeStepResult, type NativeOptimizerState, type NativeLossWeights,
} from './ipclip/prompt-model.js';
export {
  IPTrainer, CHECKPOINT_FILE,
  type TrainerOptions, type TrainingData, type TrainBatch, type StepTerms, type TrainProgress, type TrainResult,
} from './ipclip/trainer/trainer.js';
export { learningRate, WARMUP_START_LR, OFFICIAL_COSINE_T, type Preset, type ScheduleOptions } from './ipclip/schedule.js';
export {
  SCENARIOS, trainingStreams, bankStreams, withoutRandomCrop, isScenario, checkScenario,
  PROTECTION_SCENARIOS, referenceStreams, referenceFits, isProtectionScenario,
  type Scenario, type StreamPlan, type UnauthorizedSource, type ProtectionScenario,
} from './ipclip/scenario.js';
export { PAIRINGS, resolvePairing, StreamSchedule, type Pairing, type StepDraws } from './ipclip/trainer/streams.js';
export {
  Evaluator, AUTHORIZED_SET, refuseTrainingImages,
  type EvalSet, type EvaluatorOptions, type SetResult, type EvaluationReport, type OwnershipReport,
} from './ipclip/evaluator.js';
export {
  readCheckpoint, writeCheckpoint, parseMeta, CHECKPOINT_FORMAT, METADATA_KEY,
  type CheckpointMeta, type CheckpointContent, type TrainingMeta, type EpochRecord, type EpochAccumulator,
  runRecordOf, runDifference, type RunRecord,
} from './ipclip/checkpoint.js';
export { importReleaseCheckpoint, readReleaseCheckpoint, type ImportReleaseOptions, type ImportedRelease, type ReleaseCheckpoint } from './ipclip/release.js';

// --- The project's own small CLIP: contrastive pretraining (issue 4) ------------------------------------------------
export {
  ClipPretrainer, cosineWarmupLr,
  type PretrainConfig, type PretrainerOptions, type PretrainData, type SaveOptions as PretrainSaveOptions,
  type FitOptions as PretrainFitOptions, type FitProgress as PretrainProgress, type FitResult as PretrainResult,
} from './pretrain/pretrainer.js';
export type { PretrainStepStats, NativePretrainer } from './native/types.js';

// --- Command line, demo and report (issue 4) -----------------------------------------------------------------------
export { main as cliMain } from './cli/main.js';
export { runDemo, type DemoResult, type DemoOptions } from './tools/demo.js';
export { renderReport, writeReport, type ReportData } from './tools/report/report.js';
export { ProgressBar } from './tools/progress.js';
