/**
 * The tools around the library (`import … from 'ipclip/tools'`): the SynthDomains generator, the HTML report
 * writer, the protection demo, the terminal progress bar, and the pretrainer and BPE learner that reproduce the
 * shipped model (models/synth-clip, see scripts/pretrain.mjs).
 *
 * @packageDocumentation
 * @module ipclip/tools
 */

// --- SynthDomains ---------------------------------------------------------------------------------------------------
// Four synthetic domains (photo, clipart, sketch, product) of ten drawn shapes, generated deterministically.
export {
  generateSynthDomains, renderSynthImage, renderContactSheet, captionFor, synthFileName,
  SYNTH_VERSION, SYNTH_CLASSES, SYNTH_DOMAINS, SYNTH_COLOURS, SYNTH_DOMAIN_WORDS,
  type SynthOptions, type SynthResult, type SynthManifest, type ContactSheetOptions,
} from './synth/synth.js';
export type { SynthDomain } from './synth/draw.js';
export { Rng } from '../core/rng.js';

// --- Report ---------------------------------------------------------------------------------------------------------
export {
  renderReport, writeReport, thumbnail,
  type ReportData, type ReportDomain, type DomainRole, type ReportPoint, type ReportRun, type ReportSample, type ReportMetrics,
} from './report/report.js';
export { renderBenchmarkPage, writeBenchmark } from './report/benchmark-page.js';
export { renderAttackPage, renderAttackSection, writeAttackReport } from './report/attack-section.js';

// --- Demo and progress ----------------------------------------------------------------------------------------------
export { runDemo, DEMO_DOMAINS, type DemoOptions, type DemoResult, type DemoSet } from './demo.js';
export { ProgressBar, type ProgressOptions, type ProgressInfo, type ProgressStream } from './progress.js';

// --- Pretraining ----------------------------------------------------------------------------------------------------
// Reproducing the shipped model: contrastive pretraining of a small CLIP and a BPE vocabulary.
export {
  ClipPretrainer, cosineWarmupLr,
  type PretrainConfig, type PretrainerOptions, type PretrainData, type SaveOptions as PretrainSaveOptions,
  type FitOptions as PretrainFitOptions, type FitProgress as PretrainProgress, type FitResult as PretrainResult,
} from '../pretrain/pretrainer.js';
export type { PretrainStepStats } from '../native/types.js';
export { learnMerges, writeOpenAiVocab, type LearnMergesOptions } from '../clip/tokenizer/train.js';
// The atomic, fsync'ed file write the library uses, and the ownership watermark as the training streams apply it,
// for scripts that write models and evaluate them (scripts/pretrain.mjs).
export { writeFileAtomic, type FileContent } from '../core/fs.js';
export { watermark } from '../image/augment.js';
