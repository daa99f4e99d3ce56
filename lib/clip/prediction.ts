/**
 * The one prediction shape of every classifier in the package ({@link Clip.classify}, `PromptModel.classify`,
 * `ProtectedClassifier`): the best label with its index and probability, the `topK` best labels in order, and
 * every label's probability in label order.
 */
import { check } from '../core/errors.js';

/**
 * One label with its index in the label list and its probability.
 * @category CLIP
 */
export interface RankedLabel {
  label: string;
  /** Position of `label` in the classifier's labels (class names). */
  index: number;
  /** Softmax probability. */
  score: number;
}

/**
 * One image's prediction: the most likely label (`label`, `index`, `score`), the `topK` most likely labels best
 * first (`top[0]` is the prediction itself; ties keep label order), and `scores`, the probability of every label
 * in label order (so `scores[i]` belongs to `labels[i]`).
 * @category CLIP
 */
export interface Prediction extends RankedLabel {
  top: RankedLabel[];
  scores: number[];
}

/** Checks a `topK` option: undefined (every label) or a positive integer. */
export function checkTopK(what: string, topK: unknown): void {
  check(topK === undefined || (Number.isSafeInteger(topK) && (topK as number) >= 1), `${what}: topK must be a positive integer, got ${String(topK)}`);
}

/** The prediction of one row of probabilities over `labels`, keeping the `topK` best (default: all). */
export function predictionOf(probs: ArrayLike<number>, labels: readonly string[], topK = labels.length): Prediction {
  const scores = Array.from(probs, Number);
  const order = scores.map((_, i) => i).sort((a, b) => scores[b]! - scores[a]! || a - b);
  const top = order.slice(0, Math.min(topK, labels.length)).map((i) => ({ label: labels[i]!, index: i, score: scores[i]! }));
  const best = top[0]!;
  return { label: best.label, index: best.index, score: best.score, top, scores };
}
