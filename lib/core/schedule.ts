/**
 * The two pieces every learning-rate schedule of the package is made of, once: a linear warm-up and a cosine
 * annealing. The IP-CLIP presets ({@link learningRate}) and the pretraining schedule ({@link cosineWarmupLr})
 * are compositions of these.
 */

/** Linear ramp from `from` (at `t = 0`) to `to` (at `t = steps`): `from + (to − from)·t/steps`. */
export function linearWarmup(t: number, steps: number, from: number, to: number): number {
  return from + ((to - from) * t) / steps;
}

/**
 * Cosine annealing from `from` (at `t = 0`) to `to` (at `t = span`): `to + ½(from − to)(1 + cos(πt/span))`.
 * Not clamped: past `span` it rises again (the release's cyclic schedule relies on that).
 */
export function cosineAnneal(t: number, span: number, from: number, to = 0): number {
  return to + 0.5 * (from - to) * (1 + Math.cos((Math.PI * t) / span));
}
