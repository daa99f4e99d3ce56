// Comparisons for tests that prove two computations are the same function (run both in float64), and the
// pieces of the fp32 tolerances that are derived rather than chosen.
import { expect } from 'vitest';

/** Agreement required of two float64 computations of the same function: 1e-10 of the tensor's scale. */
export const EXACT = 1e-10;

/** fp32 unit roundoff (half an ulp of 1): every fp32 operation is exact to a relative 2⁻²⁴. */
export const U32 = 2 ** -24;

/** bfloat16 unit roundoff (8 significant bits). */
export const U_BF16 = 2 ** -8;

/**
 * max|a − b| / max(|a|, |b|) over the whole tensor: relative to its scale, so entries near zero do not dominate.
 * The scale must be positive (a bound relative to 0 proves nothing): asserted.
 */
export function relToScale(a: ArrayLike<number>, b: ArrayLike<number>, what = 'tensor'): number {
  expect(a.length, `${what}: lengths`).toBe(b.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= diff)) diff = d; // NaN propagates
    scale = Math.max(scale, Math.abs(a[i]!), Math.abs(b[i]!));
  }
  expect(scale, `${what}: scale`).toBeGreaterThan(0);
  return diff / scale;
}

/** max|x|. */
export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

/** The loss weights of the spec's §4 table, per scenario family and preset (CE_A has weight 1 everywhere). */
export function lossWeights(scenario: string, preset: string): Record<string, number> {
  const specified = scenario === 'target-specified' || scenario === 'ownership';
  if (specified) return { ceA: 1, ceU: -1, ceSelf: preset === 'official' ? -1 : 1, ceCross: -1, mse: -0.1, entropy: 0.01, kl: -1 };
  return { ceA: 1, ceU: -1, ceSelf: 1, ceCross: -1, mse: -5, entropy: 1, kl: -5 };
}

/**
 * The scale of the total loss: Σ|w_i · term_i| (clamped terms at most 5). The total is a weighted sum whose
 * terms nearly cancel in some scenarios (official target-free: −0.03 from O(1) terms), so its rounding error is
 * a fraction of this sum, not of its own value: comparisons of the total use this scale.
 */
export function lossScale(terms: object, scenario: string, preset: string): number {
  const clamped = new Set(['ceU', 'ceSelf', 'ceCross', 'mse']);
  let s = 0;
  for (const [k, w] of Object.entries(lossWeights(scenario, preset))) {
    const t = (terms as Record<string, number | undefined>)[k];
    expect(Number.isFinite(t), k).toBe(true);
    s += Math.abs(w * (clamped.has(k) ? Math.min(t!, 5) : t!));
  }
  expect(s).toBeGreaterThan(0);
  return s;
}

/**
 * The fp32 error budget of a tower computation, relative to the scale of its result: ε = S·√n·u32.
 * Derivation: each of the S sequential stages is a reduction of at most n products (a matrix product's dot
 * products, a LayerNorm or token mean). An fp32 sum of n terms is exact to about √n·u32 of Σ|terms| (the
 * rounding errors of the partial sums are independent and add as a random walk; every summation order a BLAS
 * or vector width uses has this behaviour, while the worst case n·u32 needs every error to align). The stages'
 * relative errors add, and the normalisations between them (LayerNorm, the final L2 normalisation) keep each
 * stage's output at scale ~1, so Σ|terms| of each stage is of the order of its result's scale.
 */
export function fp32Budget(stages: number, n: number): number {
  return stages * Math.sqrt(n) * U32;
}

interface TowerConfig { vision: { layers: number; width: number }; text: { layers: number; width: number } }

/**
 * ε for a normalised CLIP embedding pair (image and text): 6 reductions per residual block (q/k/v projection,
 * scores, attention × values, output projection, MLP in, MLP out) in both towers, plus 4 (LayerNorms, the
 * projection, the L2 normalisation); the longest reduction is the MLP's, over 4·width.
 */
export function clipBudget(c: TowerConfig): number {
  const stages = 6 * (c.vision.layers + c.text.layers) + 4;
  return fp32Budget(stages, 4 * Math.max(c.vision.width, c.text.width));
}
