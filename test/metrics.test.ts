import { describe, it, expect } from 'vitest';
import {
  accuracy, binomialTestGreater, binomialTestLess, confusionMatrix, macroF1, ownershipEvidence, protectionMetrics,
} from '../lib/ipclip/metrics.js';

/** Direct binomial pmf with exact integer binomial coefficients (independent of the log-space code). */
function pmf(i: number, n: number, p: number): number {
  let c = 1n;
  for (let k = 1; k <= i; k++) c = (c * BigInt(n - k + 1)) / BigInt(k);
  return Number(c) * p ** i * (1 - p) ** (n - i);
}
function directSum(lo: number, hi: number, n: number, p: number): number {
  let s = 0;
  for (let i = lo; i <= hi; i++) s += pmf(i, n, p);
  return s;
}

describe('classification metrics', () => {
  // labels [0,0,0,1,1,2], preds [0,0,1,1,2,2]:
  // class 0: TP 2, FP 0, FN 1 → F1 4/5; class 1: TP 1, FP 1, FN 1 → 1/2; class 2: TP 1, FP 1, FN 0 → 2/3.
  const labels = [0, 0, 0, 1, 1, 2];
  const pred = [0, 0, 1, 1, 2, 2];

  it('computes accuracy and the confusion matrix', () => {
    expect(accuracy(pred, labels)).toBeCloseTo(4 / 6, 12);
    expect(accuracy(Int32Array.from(labels), labels)).toBe(1);
    expect(confusionMatrix(pred, labels, 3)).toEqual([[2, 1, 0], [0, 1, 1], [0, 0, 1]]);
  });

  it('averages F1 over classes present in labels or predictions', () => {
    const expected = (4 / 5 + 1 / 2 + 2 / 3) / 3;
    expect(macroF1(pred, labels, 3)).toBeCloseTo(expected, 12);
    // A fourth class absent from both does not change the mean.
    expect(macroF1(pred, labels, 4)).toBeCloseTo(expected, 12);
    // A class only predicted (never true) counts with F1 0: class 3 here.
    expect(macroF1([0, 3], [0, 0], 4)).toBeCloseTo((2 / 3 + 0) / 2, 12);
  });

  it('rejects bad input with codes', () => {
    expect(() => accuracy([], [])).toThrow(expect.objectContaining({ code: 'ERR_EMPTY_INPUT' }));
    expect(() => accuracy([1], [1, 2])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(() => confusionMatrix([3], [0], 3)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  });
});

describe('binomial tails', () => {
  it('matches hand values for n=10, p=0.5', () => {
    // P(X ≥ 8) = (C(10,8)+C(10,9)+C(10,10)) / 2^10 = 56/1024.
    expect(binomialTestGreater(8, 10, 0.5)).toBeCloseTo(56 / 1024, 14);
    expect(binomialTestLess(2, 10, 0.5)).toBeCloseTo(56 / 1024, 14);
    expect(binomialTestGreater(0, 10, 0.5)).toBeCloseTo(1, 14);
    expect(binomialTestGreater(10, 10, 0.5)).toBeCloseTo(1 / 1024, 16);
  });

  it('matches direct sums for small n and several p', () => {
    for (const n of [1, 7, 25, 40]) {
      for (const p of [0.05, 0.2, 1 / 3, 0.9]) {
        for (let k = 0; k <= n; k += Math.max(1, Math.floor(n / 6))) {
          const ge = directSum(k, n, n, p);
          const le = directSum(0, k, n, p);
          expect(Math.abs(binomialTestGreater(k, n, p) - ge)).toBeLessThan(1e-12 + 1e-10 * ge);
          expect(Math.abs(binomialTestLess(k, n, p) - le)).toBeLessThan(1e-12 + 1e-10 * le);
        }
      }
    }
  });

  it('keeps precision for tiny tails and large n', () => {
    // All 1000 successes at p = 1/2: 2^-1000, far below what a linear-space sum of pmfs would keep.
    expect(binomialTestGreater(1000, 1000, 0.5) / 2 ** -1000).toBeCloseTo(1, 9);
    // Complementary tails add to one.
    const n = 5000;
    const p = 0.1;
    for (const k of [400, 500, 560]) expect(binomialTestGreater(k, n, p) + binomialTestLess(k - 1, n, p)).toBeCloseTo(1, 10);
    // Degenerate probabilities.
    expect(binomialTestGreater(1, 5, 0)).toBe(0);
    expect(binomialTestLess(4, 5, 1)).toBe(0);
    expect(binomialTestGreater(5, 5, 1)).toBe(1);
    expect(() => binomialTestGreater(6, 5, 0.5)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  });
});

describe('protection metrics (method §7)', () => {
  it('computes R_A, S_U, P and drops on worked numbers', () => {
    // R = 0.72/0.80 = 0.9; S = mean((0.7−0.1)/(0.7−0.1), (0.6−0.4)/(0.6−0.1)) = mean(1, 0.4) = 0.7;
    // P = 2·0.9·0.7/1.6 = 0.7875; dropA = 0.08; dropU = mean(0.6, 0.2) = 0.4.
    const m = protectionMetrics({ acc: 0.72, ref: 0.8 }, [{ acc: 0.1, ref: 0.7 }, { acc: 0.4, ref: 0.6 }], 0.1);
    expect(m.retention).toBeCloseTo(0.9, 12);
    expect(m.suppression).toBeCloseTo(0.7, 12);
    expect(m.protection).toBeCloseTo(0.7875, 12);
    expect(m.dropA).toBeCloseTo(0.08, 12);
    expect(m.dropU).toBeCloseTo(0.4, 12);
  });

  it('caps and clips, and guards the divisions', () => {
    // Better than the reference on A caps at 1; below chance on U clips at 1; above the reference clips at 0.
    const m = protectionMetrics({ acc: 0.9, ref: 0.8 }, [{ acc: 0.01, ref: 0.5 }, { acc: 0.6, ref: 0.5 }], 0.1);
    expect(m.retention).toBe(1);
    expect(m.suppression).toBeCloseTo(0.5, 12);
    expect(m.protection).toBeCloseTo(2 / 3, 12);
    // Reference at chance on U: 1 if the protected model is at/below chance, else 0. Reference 0 on A: R = 1.
    expect(protectionMetrics({ acc: 0, ref: 0 }, [{ acc: 0.1, ref: 0.1 }], 0.1).suppression).toBe(1);
    expect(protectionMetrics({ acc: 0.5, ref: 0.5 }, [{ acc: 0.2, ref: 0.05 }], 0.1).suppression).toBe(0);
    expect(protectionMetrics({ acc: 0, ref: 0.5 }, [{ acc: 0.5, ref: 0.5 }], 0.1).protection).toBe(0);
    expect(() => protectionMetrics({ acc: 1, ref: 1 }, [], 0.1)).toThrow(expect.objectContaining({ code: 'ERR_EMPTY_INPUT' }));
    expect(() => protectionMetrics({ acc: 1.5, ref: 1 }, [{ acc: 0, ref: 1 }], 0.1)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(() => protectionMetrics({ acc: NaN, ref: 1 }, [{ acc: 0, ref: 1 }], 0.1)).toThrow(expect.objectContaining({ code: 'ERR_NON_FINITE' }));
  });
});

describe('ownership evidence', () => {
  it('supports ownership when clean is above chance and watermarked is not', () => {
    const e = ownershipEvidence({ correct: 80, n: 100 }, { correct: 22, n: 100 }, 5);
    expect(e.chance).toBeCloseTo(0.2, 15);
    expect(e.cleanAccuracy).toBeCloseTo(0.8, 15);
    expect(e.watermarkedAccuracy).toBeCloseTo(0.22, 15);
    expect(e.pValueCleanAboveChance).toBeCloseTo(directSum(80, 100, 100, 0.2), 15);
    expect(e.pValueWatermarkedAboveChance).toBeCloseTo(directSum(22, 100, 100, 0.2), 10);
    expect(e.supported).toBe(true);
    expect(e.verdict).toMatch(/^ownership supported/);
  });

  it('refuses when the watermarked inputs still work or clean is at chance', () => {
    expect(ownershipEvidence({ correct: 80, n: 100 }, { correct: 70, n: 100 }, 5).supported).toBe(false);
    const atChance = ownershipEvidence({ correct: 21, n: 100 }, { correct: 20, n: 100 }, 5);
    expect(atChance.supported).toBe(false);
    expect(atChance.verdict).toMatch(/clean accuracy is not significantly above chance/);
    expect(() => ownershipEvidence({ correct: 1, n: 0 }, { correct: 0, n: 1 }, 5)).toThrow(expect.objectContaining({ code: 'ERR_EMPTY_INPUT' }));
  });
});
