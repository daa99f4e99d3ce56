/**
 * ipclip: IP-CLIP for Node. CLIP on libtorch, its tokenizer and preprocessing, the data pipeline, and the
 * protection method on top. This is the package entry: everything public is exported here, by area.
 *
 * @packageDocumentation
 */

// --- Errors and plain tensors --------------------------------------------------------------------------------------
export { IpclipError, check, type IpclipErrorCode } from './errors.js';
export { numel, type Tensor, type FloatTensor, type ImageTensor } from './tensor.js';
export { Rng, hashString } from './rng.js';

// --- Native runtime -------------------------------------------------------------------------------------------------
export {
  addonPath, loadNative, runtimeInfo, setThreads, wrapNativeError,
  type NativeAddon, type NativeClipModel, type NativeImageOutput, type NativeLoadOptions, type NativeSafetensors,
  type RuntimeInfo,
} from './native.js';

// --- CLIP -------------------------------------------------------------------------------------------------------------
export * from './clip.js';
export * from './safetensors.js';

// --- Tokenizer --------------------------------------------------------------------------------------------------------
export * from './tokenizer.js';
export { learnMerges, writeOpenAiVocab, type LearnMergesOptions } from './bpe-train.js';

// --- Images: decoding, preprocessing, augmentation ------------------------------------------------------------------
export * from './image.js';
export * from './preprocess.js';
export * from './augment.js';
export * from './transforms.js';

// --- Data: datasets, batch loading, synthetic domains ---------------------------------------------------------------
export * from './data.js';
export { BatchLoader, cycle, cyclePosition, cycledDraws, type Batch, type Draw, type LoaderOptions, type TransformChoice } from './loader.js';
export * from './synth.js';

// --- Metrics --------------------------------------------------------------------------------------------------------
export * from './metrics.js';

// --- IP-CLIP (prompt models, training, protection): exported below by their modules --------------------------------
export {
  IPPrompt, BANK_SIZE, BANK_NAMES, argmaxRows, contextSize, promptText, isPromptParameter,
  type PromptOptions, type PromptLoadOptions, type PromptPrediction, type LossTerms,
  type NativePromptModel, type NativeStepOptions, type NativeStepResult, type NativeOptimizerState, type NativeScenario,
} from './prompt.js';
export {
  IPTrainer, CHECKPOINT_FILE,
  type TrainerOptions, type TrainingData, type TrainBatch, type StepTerms, type TrainProgress, type TrainResult,
} from './trainer.js';
export { learningRate, WARMUP_START_LR, OFFICIAL_COSINE_T, type Preset, type ScheduleOptions } from './schedule.js';
export {
  SCENARIOS, trainingStreams, bankStreams, withoutRandomCrop, isScenario, checkScenario,
  PROTECTION_SCENARIOS, referenceStreams, referenceFits, isProtectionScenario,
  type Scenario, type StreamPlan, type UnauthorizedSource, type ProtectionScenario,
} from './scenarios.js';
export { PAIRINGS, resolvePairing, StreamSchedule, type Pairing, type StepDraws } from './streams.js';
export {
  Evaluator, AUTHORIZED_SET, refuseTrainingImages,
  type EvalSet, type EvaluatorOptions, type SetResult, type EvaluationReport, type OwnershipReport,
} from './evaluator.js';
export {
  readCheckpoint, writeCheckpoint, parseMeta, CHECKPOINT_FORMAT, METADATA_KEY,
  type CheckpointMeta, type CheckpointContent, type TrainingMeta, type EpochRecord, type EpochAccumulator,
  runRecordOf, runDifference, type RunRecord,
} from './checkpoint.js';
export { importReleaseCheckpoint, readReleaseCheckpoint, type ImportReleaseOptions, type ImportedRelease, type ReleaseCheckpoint } from './release.js';

// --- The project's own small CLIP: contrastive pretraining (issue 4) ------------------------------------------------
export {
  ClipPretrainer, cosineWarmupLr,
  type PretrainConfig, type PretrainerOptions, type PretrainData, type SaveOptions as PretrainSaveOptions,
  type FitOptions as PretrainFitOptions, type FitProgress as PretrainProgress, type FitResult as PretrainResult,
} from './pretrain.js';
export type { PretrainStepStats, NativePretrainer } from './native.js';

// --- Command line, demo and report (issue 4) -----------------------------------------------------------------------
export { main as cliMain } from './cli.js';
export { runDemo, type DemoResult, type DemoOptions } from './demo.js';
export { renderReport, writeReport, type ReportData } from './report.js';
export { ProgressBar } from './progress.js';
