// The attack suite: the style transforms against properties checkable by hand (AdaIN's output has the target's
// per-channel mean and std; the Fourier swap keeps the phase and takes the target's low-band amplitude; histogram
// matching reproduces the target's histogram), the native step's attack terms against values computed here from
// the step's own logits, and a reduced run of every attack family on a small SynthDomains with the shipped CLIP
// that must move what each attack moves.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Clip } from '../lib/clip/clip.js';
import { Rng } from '../lib/core/rng.js';
import { DomainDataset } from '../lib/data/dataset.js';
import {
  adain, amplitude, bandHalfWidth, channelStats, dft2, fourierSwap, histogramMatch, inLowBand, levelHistogram,
  recoveredFraction, resolveBudgets, runAttacks, styleTarget, disguise, type AttackReport,
} from '../lib/ipclip/attacks/index.js';
import { stratifiedPick } from '../lib/ipclip/attacks/common.js';
import { PromptModel } from '../lib/ipclip/prompt-model.js';
import { IPTrainer } from '../lib/ipclip/trainer/trainer.js';
import { generateSynthDomains } from '../lib/tools/synth/synth.js';

const SHIPPED = join(import.meta.dirname, '..', 'models', 'synth-clip', 'model.safetensors');

function randomImage(rng: Rng, hw: number, lo = 0.1, hi = 0.9): Float32Array {
  return Float32Array.from({ length: 3 * hw }, () => rng.uniform(lo, hi));
}

describe('style transforms', () => {
  it('AdaIN gives each channel the target mean and std', () => {
    const rng = new Rng(1);
    const hw = 12 * 12;
    const img = randomImage(rng, hw);
    const target = { mean: [0.2, 0.5, 0.7], std: [0.05, 0.1, 0.2] };
    const out = adain(img, hw, target);
    const s = channelStats(out, hw);
    for (let c = 0; c < 3; c++) {
      expect(s.mean[c]).toBeCloseTo(target.mean[c]!, 10);
      expect(s.std[c]).toBeCloseTo(target.std[c]!, 10);
    }
    // An affine map per channel: the ordering of pixels inside a channel is kept.
    expect(Math.sign(out[5]! - out[9]!)).toBe(Math.sign(img[5]! - img[9]!));
  });

  it('the 2-D DFT matches the definition and inverts', () => {
    const h = 4;
    const w = 6;
    const rng = new Rng(2);
    const x = Float64Array.from({ length: h * w }, () => rng.uniform(-1, 1));
    const f = dft2(x, new Float64Array(h * w), h, w);
    // F(1, 2) by the definition Σ x[y,x] e^{−2πi(ky·y/h + kx·x/w)}.
    let re = 0;
    let im = 0;
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < w; xx++) {
        const a = -2 * Math.PI * ((1 * y) / h + (2 * xx) / w);
        re += x[y * w + xx]! * Math.cos(a);
        im += x[y * w + xx]! * Math.sin(a);
      }
    }
    expect(f.re[1 * w + 2]).toBeCloseTo(re, 10);
    expect(f.im[1 * w + 2]).toBeCloseTo(im, 10);
    const back = dft2(f.re, f.im, h, w, true);
    for (let i = 0; i < h * w; i++) expect(back.re[i]).toBeCloseTo(x[i]!, 10);
  });

  it('the Fourier swap keeps the phase everywhere and takes the target amplitude in the low band only', () => {
    const h = 16;
    const w = 16;
    const hw = h * w;
    const rng = new Rng(3);
    const img = randomImage(rng, hw);
    const tgt = randomImage(rng, hw, 0.3, 0.6);
    const targetAmp = amplitude(tgt, h, w);
    const b = bandHalfWidth(h, w, 0.15);
    expect(b).toBe(2);
    const out = fourierSwap(img, h, w, targetAmp, b);
    const outAmp = amplitude(out, h, w);
    const ownAmp = amplitude(img, h, w);
    let inBand = 0;
    for (let c = 0; c < 3; c++) {
      const fi = dft2(Float64Array.from(img.subarray(c * hw, (c + 1) * hw)), new Float64Array(hw), h, w);
      const fo = dft2(out.slice(c * hw, (c + 1) * hw), new Float64Array(hw), h, w);
      for (let ky = 0; ky < h; ky++) {
        for (let kx = 0; kx < w; kx++) {
          const i = ky * w + kx;
          // Same phase: the two spectra are parallel (cross product 0, dot product positive).
          expect(fi.re[i]! * fo.im[i]! - fi.im[i]! * fo.re[i]!).toBeCloseTo(0, 6);
          expect(fi.re[i]! * fo.re[i]! + fi.im[i]! * fo.im[i]!).toBeGreaterThan(0);
          const want = inLowBand(ky, kx, h, w, b) ? targetAmp[c * hw + i]! : ownAmp[c * hw + i]!;
          expect(outAmp[c * hw + i]).toBeCloseTo(want, 6);
          if (c === 0 && inLowBand(ky, kx, h, w, b)) inBand++;
        }
      }
    }
    expect(inBand).toBe(25); // signed frequencies −2..2 on both axes
    // DC carries the mean: the output's channel means are the target's.
    const s = channelStats(out, hw);
    const t = channelStats(tgt, hw);
    for (let c = 0; c < 3; c++) expect(s.mean[c]).toBeCloseTo(t.mean[c]!, 10);
  });

  it('histogram matching reproduces the target histogram for a source with one pixel per level', () => {
    const hw = 256;
    // Source: channel c holds every level once, in a scrambled order.
    const order = new Rng(4).shuffle(Array.from({ length: 256 }, (_, i) => i));
    const img = new Float32Array(3 * hw);
    for (let c = 0; c < 3; c++) for (let i = 0; i < hw; i++) img[c * hw + i] = order[i]! / 255;
    // Target: 256 pixels per channel on a few levels (hand-set counts).
    const target = new Float64Array(3 * 256);
    const counts: [number, number][] = [[10, 64], [100, 96], [200, 32], [250, 64]];
    for (let c = 0; c < 3; c++) for (const [level, n] of counts) target[c * 256 + level] = n;
    const out = histogramMatch(img, hw, target);
    const hist = levelHistogram(out, hw);
    for (let c = 0; c < 3; c++) for (let l = 0; l < 256; l++) expect(hist[c * 256 + l]).toBe(target[c * 256 + l]);
    // Monotone: a brighter source pixel never maps to a darker level.
    const i0 = order.indexOf(20);
    const i1 = order.indexOf(200);
    expect(out[i1]!).toBeGreaterThanOrEqual(out[i0]!);
  });

  it('styleTarget pools k images, and disguise clamps to valid pixels and keeps the shape', () => {
    const rng = new Rng(5);
    const s = 8;
    const k = 3;
    const norm = (n: number) => ({ data: Float32Array.from({ length: n * 3 * s * s }, () => rng.uniform(-1.5, 1.5)), shape: [n, 3, s, s] });
    const auth = norm(k);
    const u = norm(2);
    for (const m of ['adain', 'fourier', 'histogram'] as const) {
      const out = disguise(u, styleTarget(m, auth, { beta: 0.2 }));
      expect(out.shape).toEqual([2, 3, s, s]);
      // Every value is a normalised pixel of [0, 1]: channel 0's range is [(0 − μ)/σ, (1 − μ)/σ].
      for (let i = 0; i < s * s; i++) {
        expect(out.data[i]!).toBeGreaterThanOrEqual((0 - 0.48145466) / 0.26862954 - 1e-5);
        expect(out.data[i]!).toBeLessThanOrEqual((1 - 0.48145466) / 0.26862954 + 1e-5);
      }
    }
    expect(() => styleTarget('fourier', auth, { beta: 0.6 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  });
});

describe('suite arithmetic', () => {
  it('recovered is the share of the gap to the reference closed, null when there is no gap', () => {
    expect(recoveredFraction(0.1, 0.5, 0.9)).toBeCloseTo(0.5, 12);
    expect(recoveredFraction(0.1, 0.95, 0.9)).toBeCloseTo(1.0625, 12);
    expect(recoveredFraction(0.1, 0.05, 0.9)).toBeCloseTo(-0.0625, 12);
    expect(recoveredFraction(0.9, 0.95, 0.905)).toBeNull();
  });

  it('labelled fractions are class-balanced, at least the minimum, and drawn in the seeded order', () => {
    const labels = Int32Array.from({ length: 40 }, (_, i) => i % 4);
    const order = new Rng(6).shuffle(Array.from({ length: 40 }, (_, i) => i));
    const pick = stratifiedPick(labels, order, 0.2);
    expect(pick).toHaveLength(8);
    const per = [0, 0, 0, 0];
    for (const i of pick) per[labels[i]!]!++;
    expect(per).toEqual([2, 2, 2, 2]);
    expect(stratifiedPick(labels, order, 0.01, 2)).toHaveLength(2);
    expect(new Set(stratifiedPick(labels, order, 1)).size).toBe(40);
  });

  it('budgets are checked and name the bad one', () => {
    expect(resolveBudgets({}).targetFractions).toEqual([0.01, 0.05, 0.1]);
    expect(() => resolveBudgets({ sourceFraction: 0 })).toThrow(/sourceFraction/);
    expect(() => resolveBudgets({ styleK: [0] })).toThrow(/styleK/);
    expect(() => resolveBudgets({ batchSize: 1 })).toThrow(/batchSize/);
  });
});
