/**
 * Evaluation metrics: accuracy, macro-F1, confusion matrices, exact binomial tail tests, the project's
 * protection metrics (method §7) and the ownership-verification evidence (method §5).
 */
import { IpclipError, check } from '../core/errors.js';

/**
 * Top-1 accuracy: the share of positions where `pred[i] === labels[i]`.
 * @throws IpclipError `ERR_EMPTY_INPUT` for no predictions, `ERR_INVALID_ARGUMENT` for different lengths.
 * @category Evaluation
 */
export function accuracy(pred: ArrayLike<number>, labels: ArrayLike<number>): number {
  checkPair(pred, labels);
  let correct = 0;
  for (let i = 0; i < labels.length; i++) if (pred[i] === labels[i]) correct++;
  return correct / labels.length;
}

/**
 * Counts `m[t][p]`: how often true class `t` was predicted as `p`.
 * @throws IpclipError `ERR_INVALID_ARGUMENT` for a class index outside `[0, numClasses)`.
 * @category Evaluation
 */
export function confusionMatrix(pred: ArrayLike<number>, labels: ArrayLike<number>, numClasses: number): number[][] {
  checkPair(pred, labels);
  check(Number.isInteger(numClasses) && numClasses > 0, `numClasses must be a positive integer, got ${numClasses}`);
  const m = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
  for (let i = 0; i < labels.length; i++) {
    const t = labels[i];
    const p = pred[i];
    check(Number.isInteger(t) && t >= 0 && t < numClasses, `label ${t} at ${i} is not in [0, ${numClasses})`);
    check(Number.isInteger(p) && p >= 0 && p < numClasses, `prediction ${p} at ${i} is not in [0, ${numClasses})`);
    m[t][p]++;
  }
  return m;
}

/**
 * Macro-averaged F1. Each class's F1 is `2·TP / (2·TP + FP + FN)`; the mean is taken over the classes
 * that occur in `labels` or in `pred` (as scikit-learn does by default), so classes absent from both —
 * e.g. a test subset without some class — neither count as 0 nor as 1.
 * @category Evaluation
 */
export function macroF1(pred: ArrayLike<number>, labels: ArrayLike<number>, numClasses: number): number {
  const m = confusionMatrix(pred, labels, numClasses);
  let sum = 0;
  let present = 0;
  for (let c = 0; c < numClasses; c++) {
    const tp = m[c][c];
    let fn = 0;
    let fp = 0;
    for (let k = 0; k < numClasses; k++) {
      if (k === c) continue;
      fn += m[c][k];
      fp += m[k][c];
    }
    if (tp + fn + fp === 0) continue;
    sum += (2 * tp) / (2 * tp + fp + fn);
    present++;
  }
  return sum / present;
}

/**
 * One-sided exact binomial test: `P(X ≥ successes)` for `X ~ Binomial(trials, p)`, summed in log space so
 * that very small p-values (down to about 1e-300) keep their precision.
 * @category Evaluation
 */
export function binomialTestGreater(successes: number, trials: number, p: number): number {
  checkBinomial(successes, trials, p);
  return binomialTail(successes, trials, trials, p);
}

/**
 * One-sided exact binomial test: `P(X ≤ successes)` for `X ~ Binomial(trials, p)` (log-space sum).
 * @category Evaluation
 */
export function binomialTestLess(successes: number, trials: number, p: number): number {
  checkBinomial(successes, trials, p);
  return binomialTail(0, successes, trials, p);
}

/**
 * Retention, suppression and their balance (method §7), plus the raw accuracy drops.
 * @category Evaluation
 */
export interface ProtectionMetrics {
  /** R_A = min(1, Acc_A / Acc_A^ref). */
  retention: number;
  /** S_U = mean over U sets of clip((Acc_U^ref − Acc_U) / (Acc_U^ref − chance), 0, 1). */
  suppression: number;
  /** P = 2·R·S / (R + S), 0 when both are 0. */
  protection: number;
  /** D_A = Acc_A^ref − Acc_A. */
  dropA: number;
  /** Mean over U sets of Acc_U^ref − Acc_U. */
  dropU: number;
}

/**
 * The project's protection metrics (method §7) from the protected model's accuracy (`acc`) and an
 * unprotected reference's (`ref`) on the authorized set `a` and each unauthorized set in `u`.
 *
 * Guards for divisions: when `a.ref` is 0 there is nothing to retain and R_A = 1; when an unauthorized
 * set's reference is not above chance (`ref ≤ chance`) its suppression term is 1 if the protected model
 * is at or below chance there and 0 otherwise.
 * @throws IpclipError `ERR_EMPTY_INPUT` for no U sets, `ERR_INVALID_ARGUMENT` for accuracies outside
 * [0, 1] or chance outside (0, 1).
 * @category Evaluation
 */
export function protectionMetrics(a: { acc: number; ref: number }, u: { acc: number; ref: number }[], chance: number): ProtectionMetrics {
  check(Array.isArray(u) && u.length > 0, 'protectionMetrics needs at least one unauthorized set', 'ERR_EMPTY_INPUT');
  check(typeof chance === 'number' && chance > 0 && chance < 1, `chance must be in (0, 1), got ${chance}`);
  for (const [name, v] of [['a', a], ...u.map((x, i) => [`u[${i}]`, x] as const)] as const) {
    checkUnit(v.acc, `${name}.acc`);
    checkUnit(v.ref, `${name}.ref`);
  }
  const retention = a.ref > 0 ? Math.min(1, a.acc / a.ref) : 1;
  let suppression = 0;
  let dropU = 0;
  for (const s of u) {
    const span = s.ref - chance;
    suppression += span > 0 ? Math.min(1, Math.max(0, (s.ref - s.acc) / span)) : s.acc <= chance ? 1 : 0;
    dropU += s.ref - s.acc;
  }
  suppression /= u.length;
  dropU /= u.length;
  const protection = retention + suppression > 0 ? (2 * retention * suppression) / (retention + suppression) : 0;
  return { retention, suppression, protection, dropA: a.ref - a.acc, dropU };
}

/**
 * Counts of correct predictions on one test set.
 * @category Evaluation
 */
export interface Tally {
  correct: number;
  n: number;
}

/**
 * The ownership-verification report: accuracies, chance level, p-values and a verdict sentence.
 * @category Evaluation
 */
export interface OwnershipEvidence {
  cleanAccuracy: number;
  watermarkedAccuracy: number;
  chance: number;
  /** P(X ≥ clean.correct) under chance-level guessing: small means clean accuracy is above chance. */
  pValueCleanAboveChance: number;
  /** P(X ≥ watermarked.correct) under chance-level guessing: large means no evidence of working. */
  pValueWatermarkedAboveChance: number;
  /** True when clean is significantly above chance and watermarked is not (at `alpha`). */
  supported: boolean;
  verdict: string;
}

/**
 * Ownership evidence (method §5): the owner's model should be accurate on clean inputs and near chance
 * (1/numClasses) on watermarked ones. Ownership is supported when the clean accuracy is above chance with
 * p < alpha (default 0.01) and the watermarked accuracy is not (p ≥ alpha).
 * @category Evaluation
 */
export function ownershipEvidence(clean: Tally, watermarked: Tally, numClasses: number, opts: { alpha?: number } = {}): OwnershipEvidence {
  check(Number.isInteger(numClasses) && numClasses >= 2, `numClasses must be an integer ≥ 2, got ${numClasses}`);
  const alpha = opts.alpha ?? 0.01;
  check(alpha > 0 && alpha < 1, `alpha must be in (0, 1), got ${alpha}`);
  for (const [name, t] of [['clean', clean], ['watermarked', watermarked]] as const) {
    check(t !== null && typeof t === 'object', `${name} must be { correct, n }`);
    check(Number.isInteger(t.n) && t.n > 0, `${name}.n must be a positive integer, got ${t.n}`, t.n === 0 ? 'ERR_EMPTY_INPUT' : 'ERR_INVALID_ARGUMENT');
    check(Number.isInteger(t.correct) && t.correct >= 0 && t.correct <= t.n, `${name}.correct must be an integer in [0, ${t.n}], got ${t.correct}`);
  }
  const chance = 1 / numClasses;
  const cleanAccuracy = clean.correct / clean.n;
  const watermarkedAccuracy = watermarked.correct / watermarked.n;
  const pClean = binomialTestGreater(clean.correct, clean.n, chance);
  const pMarked = binomialTestGreater(watermarked.correct, watermarked.n, chance);
  const cleanAbove = pClean < alpha;
  const markedAbove = pMarked < alpha;
  const supported = cleanAbove && !markedAbove;
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const facts = `clean ${pct(cleanAccuracy)} (p=${pClean.toExponential(2)}), watermarked ${pct(watermarkedAccuracy)} ` +
    `(p=${pMarked.toExponential(2)}), chance ${pct(chance)}, alpha ${alpha}`;
  let verdict: string;
  if (supported) verdict = `ownership supported: accurate on clean inputs and not above chance on watermarked inputs; ${facts}`;
  else if (!cleanAbove) verdict = `not supported: clean accuracy is not significantly above chance; ${facts}`;
  else verdict = `not supported: watermarked accuracy is significantly above chance (the model still works on them); ${facts}`;
  return { cleanAccuracy, watermarkedAccuracy, chance, pValueCleanAboveChance: pClean, pValueWatermarkedAboveChance: pMarked, supported, verdict };
}

/** `Σ_{i=lo..hi} C(n,i) p^i (1−p)^(n−i)` by log-sum-exp of exact log terms, clamped to [0, 1]. */
function binomialTail(lo: number, hi: number, n: number, p: number): number {
  lo = Math.max(0, lo);
  hi = Math.min(n, hi);
  if (lo > hi) return 0;
  // Degenerate p: all mass sits on 0 or on n (avoids 0·log 0).
  if (p === 0) return lo === 0 ? 1 : 0;
  if (p === 1) return hi === n ? 1 : 0;
  const lp = Math.log(p);
  const lq = Math.log1p(-p);
  const lnN = logGamma(n + 1);
  const logs: number[] = [];
  let max = -Infinity;
  for (let i = lo; i <= hi; i++) {
    const t = lnN - logGamma(i + 1) - logGamma(n - i + 1) + i * lp + (n - i) * lq;
    logs.push(t);
    if (t > max) max = t;
  }
  let sum = 0;
  for (const t of logs) sum += Math.exp(t - max);
  return Math.min(1, Math.max(0, Math.exp(max + Math.log(sum))));
}

// Lanczos approximation (g = 7, 9 terms), relative error about 1e-15 for positive arguments.
const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
  12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

/** ln Γ(x) for x ≥ 1 (all this module needs: log factorials). Small integers use exact products. */
function logGamma(x: number): number {
  if (Number.isInteger(x) && x <= 20) {
    let f = 1;
    for (let i = 2; i < x; i++) f *= i;
    return Math.log(f);
  }
  const z = x - 1;
  let a = LANCZOS[0];
  const t = z + 7.5;
  for (let i = 1; i < 9; i++) a += LANCZOS[i] / (z + i);
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

function checkBinomial(successes: number, trials: number, p: number): void {
  check(Number.isInteger(trials) && trials >= 0, `trials must be a non-negative integer, got ${trials}`);
  check(Number.isInteger(successes) && successes >= 0 && successes <= trials, `successes must be an integer in [0, ${trials}], got ${successes}`);
  check(typeof p === 'number' && p >= 0 && p <= 1, `p must be in [0, 1], got ${p}`);
}

function checkPair(pred: ArrayLike<number>, labels: ArrayLike<number>): void {
  check(pred != null && typeof pred.length === 'number' && labels != null && typeof labels.length === 'number',
    'pred and labels must be arrays');
  check(pred.length === labels.length, `pred has ${pred.length} entries but labels has ${labels.length}`);
  if (labels.length === 0) throw new IpclipError('ERR_EMPTY_INPUT', 'no predictions to score');
}

function checkUnit(v: number, name: string): void {
  if (typeof v === 'number' && !Number.isFinite(v)) throw new IpclipError('ERR_NON_FINITE', `${name} is ${v}`);
  check(typeof v === 'number' && v >= 0 && v <= 1, `${name} must be an accuracy in [0, 1], got ${v}`);
}
