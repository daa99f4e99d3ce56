/**
 * {@link Evaluator}: accuracy and macro-F1 of a protected prompt on test sets (method §6), zero-shot CLIP on the
 * same images, the project's protection metrics against an unprotected reference (method §7), and the
 * ownership-verification evidence (method §5).
 */
import * as path from 'node:path';
import type { RunRecord } from './checkpoint.js';
import type { Clip } from '../clip/clip.js';
import { SPLIT_RULE, inTrainingSplit, type BadImage, type DomainDataset, type SplitInfo } from '../data/dataset.js';
import { IpclipError, check } from '../core/errors.js';
import { sameNames } from '../core/is.js';
import { argmaxRows, clipLogits } from '../clip/similarity.js';
import { BatchLoader, type Draw } from '../data/loader.js';
import { shardRange, type DataParallel } from './trainer/distributed.js';
import {
  accuracy, macroF1, ownershipEvidence, protectionMetrics, type OwnershipEvidence, type ProtectionMetrics,
} from './metrics.js';
import type { PromptModel } from './prompt-model.js';
import type { ImageTensor } from '../core/tensor.js';
import { checkLongCall, throwIfAborted, type LongCallOptions } from '../core/progress.js';

/** What {@link Evaluator}'s private `run` reports progress to. */
interface Ticker {
  signal: AbortSignal | undefined;
  /** `n` more images scored. */
  tick(n: number): void;
}

/** A ticker over `total` images for `opts` (none without options). */
function ticker(opts: LongCallOptions, total: number): Ticker {
  checkLongCall('evaluate', opts);
  let done = 0;
  return { signal: opts.signal, tick: (n) => { done += n; opts.onProgress?.({ done, total }); } };
}

function setLength(set: EvalSet): number {
  const d = isDataset(set) ? set : (set as { dataset?: unknown } | null)?.dataset;
  return isDataset(d) ? d.length : 0;
}

/**
 * A test set: a dataset (test transform), optionally watermarked (the ownership / authorization key).
 * @category Evaluation
 */
export type EvalSet = DomainDataset | { dataset: DomainDataset; watermark?: boolean };

/**
 * Options of {@link Evaluator}.
 * @category Evaluation
 */
export interface EvaluatorOptions {
  /** Images per forward pass (default 32). */
  batchSize?: number;
  /** Also report zero-shot CLIP per set (default true). */
  zeroShot?: boolean;
  /** Zero-shot prompt template, `{}` replaced by the class name (`_` as spaces). Default `'a photo of a {}.'`. */
  template?: string;
  /** Loader worker threads (default: the loader's). */
  workers?: number;
  /**
   * Data parallelism: every rank of the job evaluates its contiguous shard of each set and the predictions are
   * all-gathered, so every rank gets the whole report (each rank makes the same calls; lib/ipclip/trainer/distributed.ts).
   */
  group?: DataParallel;
}

/**
 * Scores of one model on one set.
 * @category Evaluation
 */
export interface SetResult {
  accuracy: number;
  macroF1: number;
  n: number;
  correct: number;
}

/**
 * What {@link Evaluator.evaluate} returns.
 * @category Evaluation
 */
export interface EvaluationReport {
  /** The protected prompt per set: `authorized` and the names of the unauthorized sets. */
  sets: Record<string, SetResult>;
  authorized: string;
  unauthorized: string[];
  /** Method §7 metrics from the reference's accuracies; null without a reference. */
  metrics: ProtectionMetrics | null;
  /** The reference prompt per set; null without a reference. */
  reference: Record<string, SetResult> | null;
  /** Zero-shot CLIP accuracy per set; null when disabled. */
  zeroShot: Record<string, number> | null;
  /** 1 / number of classes. */
  chance: number;
  /** Images the sets' datasets left out (`onBadImage: 'skip'`). */
  skippedImages: BadImage[];
}

/**
 * What {@link Evaluator.evaluateOwnership} returns.
 * @category Evaluation
 */
export interface OwnershipReport {
  clean: SetResult;
  watermarked: SetResult;
  evidence: OwnershipEvidence;
}

/**
 * Name under which the authorized set is reported.
 * @category Evaluation
 */
export const AUTHORIZED_SET = 'authorized';

type Predictor = (images: ImageTensor) => Promise<Int32Array>;

/**
 * Evaluates protected prompts.
 *
 * ```ts
 * const report = await new Evaluator(clip).evaluate(prompt, { authorized: testA, unauthorized: { clipart: testC }, reference });
 * report.sets.clipart.accuracy; report.metrics?.protection;
 * ```
 * @category Evaluation
 */
export class Evaluator {
  private readonly batchSize: number;
  private readonly withZeroShot: boolean;
  private readonly template: string;
  private readonly workers?: number;
  private readonly group?: DataParallel;

  /** @throws IpclipError `ERR_INVALID_ARGUMENT` for bad options. */
  constructor(readonly clip: Clip, opts: EvaluatorOptions = {}) {
    check(opts !== null && typeof opts === 'object', 'Evaluator: options must be an object');
    this.batchSize = opts.batchSize ?? 32;
    check(Number.isInteger(this.batchSize) && this.batchSize > 0, `Evaluator: batchSize must be a positive integer, got ${this.batchSize}`);
    this.withZeroShot = opts.zeroShot ?? true;
    this.template = opts.template ?? 'a photo of a {}.';
    check(typeof this.template === 'string' && this.template.includes('{}'), 'Evaluator: template must contain {}');
    this.workers = opts.workers;
    if (opts.group !== undefined) this.group = opts.group;
  }

  /**
   * Accuracy and macro-F1 of `prompt` (its own instance prompts) on the authorized set and every unauthorized
   * set; zero-shot CLIP on each; with `reference`, the reference prompt on each and the method §7 metrics.
   * `options.onProgress` counts images over all sets (each image is scored by every model in one pass);
   * `options.signal` stops between batches with `ERR_ABORTED` (no report).
   * @throws IpclipError `ERR_MISMATCH` (a set or the reference with other class names), `ERR_EMPTY_INPUT`,
   * `ERR_INVALID_ARGUMENT`, `ERR_ABORTED`, loader and native errors.
   */
  async evaluate(prompt: PromptModel, sets: {
    authorized: EvalSet; unauthorized: Record<string, EvalSet> | EvalSet; reference?: PromptModel;
    /** The prompt's run record (`readCheckpoint(file).meta.run`): sets holding its training images are refused. */
    run?: RunRecord;
  }, options: LongCallOptions = {}): Promise<EvaluationReport> {
    check(sets !== null && typeof sets === 'object', 'evaluate: expected { authorized, unauthorized, reference? }');
    check(options !== null && typeof options === 'object', 'evaluate: options must be an object');
    const uSets: Record<string, EvalSet> = isEvalSet(sets.unauthorized) ? { unauthorized: sets.unauthorized } : { ...sets.unauthorized };
    const uNames = Object.keys(uSets);
    if (uNames.length === 0) throw new IpclipError('ERR_EMPTY_INPUT', 'evaluate: no unauthorized sets given');
    check(!uNames.includes(AUTHORIZED_SET), `evaluate: '${AUTHORIZED_SET}' is reserved for the authorized set`);
    const reference = sets.reference;
    if (reference) checkSameClasses(reference.classNames, prompt.classNames, 'the reference prompt');
    const named: [string, EvalSet][] = [[AUTHORIZED_SET, sets.authorized], ...uNames.map((n) => [n, uSets[n]!] as [string, EvalSet])];
    if (sets.run !== undefined) for (const [name, set] of named) refuseTrainingImages(sets.run, name, set);
    const progress = ticker(options, named.reduce((n, [, set]) => n + setLength(set), 0));
    throwIfAborted(progress.signal, 'evaluate');
    const zs = this.withZeroShot ? await this.zeroShotPredictor(prompt.classNames) : null;
    const all: [string, EvalSet][] = [[AUTHORIZED_SET, sets.authorized], ...uNames.map((n) => [n, uSets[n]!] as [string, EvalSet])];
    const report: EvaluationReport = {
      sets: {}, authorized: AUTHORIZED_SET, unauthorized: uNames, metrics: null,
      reference: reference ? {} : null, zeroShot: zs ? {} : null, chance: 1 / prompt.numClasses, skippedImages: [],
    };
    const seen = new Set<string>();
    for (const [, set] of named) {
      const d = isDataset(set) ? set : (set as { dataset?: unknown } | null)?.dataset;
      for (const b of isDataset(d) ? d.skipped ?? [] : []) if (!seen.has(b.path)) { seen.add(b.path); report.skippedImages.push(b); }
    }
    for (const [name, set] of all) {
      const models: Predictor[] = [(x) => prompt.predict(x)];
      if (reference) models.push((x) => reference.predict(x));
      if (zs) models.push(zs);
      const { results } = await this.run(set, prompt.classNames, models, progress);
      report.sets[name] = results[0]!;
      if (reference) report.reference![name] = results[1]!;
      if (zs) report.zeroShot![name] = results[results.length - 1]!.accuracy;
    }
    if (reference) {
      const ref = report.reference!;
      report.metrics = protectionMetrics(
        { acc: report.sets[AUTHORIZED_SET]!.accuracy, ref: ref[AUTHORIZED_SET]!.accuracy },
        uNames.map((n) => ({ acc: report.sets[n]!.accuracy, ref: ref[n]!.accuracy })),
        report.chance);
    }
    return report;
  }

  /** Accuracy and macro-F1 of `prompt` on one set (`onProgress` in images, `signal` between batches). */
  async evaluateSet(prompt: PromptModel, set: EvalSet, options: LongCallOptions = {}): Promise<SetResult> {
    return (await this.run(set, prompt.classNames, [(x) => prompt.predict(x)], ticker(options, setLength(set)))).results[0]!;
  }

  /** Zero-shot CLIP on one set, with the template and `classNames` (`_` as spaces). */
  async zeroShot(set: EvalSet, classNames: readonly string[], options: LongCallOptions = {}): Promise<SetResult> {
    const progress = ticker(options, setLength(set));
    return (await this.run(set, classNames, [await this.zeroShotPredictor(classNames)], progress)).results[0]!;
  }

  /**
   * Ownership evidence (method §5): the prompt on the clean test set and on the same images watermarked, with a
   * one-sided binomial test of each against chance ({@link ownershipEvidence}; `alpha` default 0.01).
   */
  async evaluateOwnership(prompt: PromptModel, cleanTest: DomainDataset, opts: { watermark?: boolean; alpha?: number } & LongCallOptions = {}): Promise<OwnershipReport> {
    check(opts.watermark !== false, 'evaluateOwnership compares clean with watermarked images: watermark cannot be false');
    const progress = ticker(opts, 2 * setLength(cleanTest));
    const clean = (await this.run({ dataset: cleanTest, watermark: false }, prompt.classNames, [(x) => prompt.predict(x)], progress)).results[0]!;
    const watermarked = (await this.run({ dataset: cleanTest, watermark: true }, prompt.classNames, [(x) => prompt.predict(x)], progress)).results[0]!;
    const evidence = ownershipEvidence(
      { correct: clean.correct, n: clean.n }, { correct: watermarked.correct, n: watermarked.n }, prompt.numClasses,
      opts.alpha !== undefined ? { alpha: opts.alpha } : {});
    return { clean, watermarked, evidence };
  }

  /** Runs every model over the set's batches (each image decoded once) and scores them. */
  private async run(set: EvalSet, classNames: readonly string[], models: Predictor[], progress: Ticker): Promise<{ results: SetResult[] }> {
    const { dataset, watermark } = isDataset(set) ? { dataset: set, watermark: false } : set;
    check(dataset !== null && typeof dataset === 'object' && Array.isArray(dataset.samples), 'evaluate: each set must be a DomainDataset or { dataset, watermark }');
    if (dataset.length === 0) throw new IpclipError('ERR_EMPTY_INPUT', `evaluate: the set '${dataset.domain}' has no samples`);
    checkSameClasses(dataset.classNames, classNames, `the set '${dataset.domain}'`);
    const loader = new BatchLoader(dataset, {
      batchSize: this.batchSize, size: this.clip.config.vision.imageSize, seed: 0, shuffle: false,
      transform: { augment: 'test', watermark: watermark === true },
      ...(this.workers !== undefined ? { workers: this.workers } : {}),
    });
    const preds: Int32Array[] = models.map(() => new Int32Array(dataset.length));
    const labels = new Int32Array(dataset.length);
    // Over ranks: this rank's shard [from, to) of the set, then every rank's predictions in rank order.
    const [from, to] = this.group ? shardRange(dataset.length, this.group.rank, this.group.worldSize) : [0, dataset.length];
    let at = from;
    try {
      if (to > from) for await (const b of loader.batches(shardBatches(from, to, this.batchSize))) {
        throwIfAborted(progress.signal, 'evaluate');
        labels.set(b.labels, at);
        for (const [i, m] of models.entries()) preds[i]!.set(await m(b.images), at);
        at += b.labels.length;
        progress.tick(b.labels.length);
      }
    } finally {
      await loader.close();
    }
    if (this.group) {
      for (const [i, p] of preds.entries()) preds[i] = await this.group.gatherShards(p.subarray(from, to), dataset.length);
      labels.set(Int32Array.from(dataset.samples, (s) => s.label));
    }
    const results = preds.map((p) => {
      const acc = accuracy(p, labels);
      return { accuracy: acc, macroF1: macroF1(p, labels, classNames.length), n: labels.length, correct: Math.round(acc * labels.length) };
    });
    return { results };
  }

  /** Zero-shot CLIP: argmax over classes of the cosine of image and text embeddings (lib/clip/similarity.ts). */
  private async zeroShotPredictor(classNames: readonly string[]): Promise<Predictor> {
    const texts = classNames.map((c) => this.template.replaceAll('{}', c.replace(/_/g, ' ')));
    const text = await this.clip.encodeText(texts);
    return async (images) => argmaxRows(clipLogits(await this.clip.encodeImage(images), text, 1));
  }
}

/**
 * Refuses (`ERR_MISMATCH`) a set holding images of the run's training splits: a folder dataset of a training
 * domain under the recorded root whose images fall in the recorded training key range ({@link inTrainingSplit}).
 */
export function refuseTrainingImages(run: RunRecord, name: string, set: EvalSet): void {
  check(run !== null && typeof run === 'object', 'evaluate: run must be a run record (readCheckpoint(file).meta.run)');
  const dataset = isDataset(set) ? set : (set as { dataset?: unknown } | null)?.dataset;
  if (!isDataset(dataset)) return; // reported by the evaluation itself
  if (!run.data || !dataset.root || path.resolve(dataset.root) !== run.data.resolved) return;
  const domains: [string, SplitInfo | null][] = [[run.authorized, run.split], [run.unauthorized ?? '', run.unauthorizedSplit]];
  for (const [domain, info] of domains) {
    if (info === null || domain === '' || dataset.domain !== domain) continue;
    if (info.version !== SPLIT_RULE.version) {
      throw new IpclipError('ERR_MISMATCH', `evaluate: the run's split of '${domain}' was cut with rule ${info.rule}/${info.version}; ` +
        `this version cuts ${SPLIT_RULE.name}/${SPLIT_RULE.version}, so its training images cannot be told apart`);
    }
    const hits = dataset.samples.filter((s) => typeof s.path === 'string' && inTrainingSplit(info, dataset.root, domain, s.path));
    if (hits.length > 0) {
      throw new IpclipError('ERR_MISMATCH', `evaluate: set '${name}' holds ${hits.length} of ${dataset.length} images from the run's ` +
        `training split of '${domain}' (e.g. ${hits[0]!.path}); score the run's test split (seed ${info.seed}, ` +
        `${info.sizes ? `sizes ${info.sizes.train}/${info.sizes.test}` : `trainFraction ${info.trainFraction}`})`);
    }
  }
}

function isDataset(x: unknown): x is DomainDataset {
  return typeof x === 'object' && x !== null && Array.isArray((x as DomainDataset).samples);
}

function isEvalSet(x: unknown): x is EvalSet {
  return isDataset(x) || (typeof x === 'object' && x !== null && isDataset((x as { dataset?: unknown }).dataset));
}

function checkSameClasses(a: readonly string[], b: readonly string[], what: string): void {
  if (!sameNames(a, b)) throw new IpclipError('ERR_MISMATCH', `${what} has classes [${a.join(', ')}] but the prompt has [${b.join(', ')}]`);
}

/** Batches of `batchSize` over the samples `[from, to)` of epoch 0 (an unshuffled loader: dataset order). */
function* shardBatches(from: number, to: number, batchSize: number): Generator<Draw[]> {
  for (let start = from; start < to; start += batchSize) {
    yield Array.from({ length: Math.min(batchSize, to - start) }, (_, k) => ({ epoch: 0, index: start + k }));
  }
}
