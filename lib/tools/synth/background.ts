/**
 * Raw RGB backgrounds (photo textures, sketch paper), computed in JS from the seeded generator so they are
 * identical everywhere; sharp composites the SVG object on top.
 */
import type { Rng } from '../../core/rng.js';
import { clamp255, type Rgb } from './palette.js';

/** HSL (h in degrees, s and l in [0, 1]) to RGB. */
export function hsl(h: number, s: number, l: number): Rgb {
  const c = (1 - Math.abs(2 * l - 1)) * s;
  const hp = (((h % 360) + 360) % 360) / 60;
  const x = c * (1 - Math.abs((hp % 2) - 1));
  const [r, g, b] = hp < 1 ? [c, x, 0] : hp < 2 ? [x, c, 0] : hp < 3 ? [0, c, x] : hp < 4 ? [0, x, c] : hp < 5 ? [x, 0, c] : [c, 0, x];
  const m = l - c / 2;
  return [clamp255((r + m) * 255), clamp255((g + m) * 255), clamp255((b + m) * 255)];
}

/**
 * Smooth value noise in about [-1, 1] on a `size`×`size` grid: random values on a `cells`×`cells`
 * lattice, interpolated bilinearly with a smoothstep so there are no visible creases.
 */
export function valueNoise(rng: Rng, size: number, cells: number): Float32Array {
  const n = cells + 1;
  const lattice = new Float32Array(n * n);
  for (let i = 0; i < lattice.length; i++) lattice[i] = rng.uniform(-1, 1);
  const out = new Float32Array(size * size);
  for (let y = 0; y < size; y++) {
    const fy = (y / size) * cells;
    const y0 = Math.floor(fy);
    const ty = smooth(fy - y0);
    for (let x = 0; x < size; x++) {
      const fx = (x / size) * cells;
      const x0 = Math.floor(fx);
      const tx = smooth(fx - x0);
      const a = lattice[y0 * n + x0], b = lattice[y0 * n + x0 + 1];
      const c = lattice[(y0 + 1) * n + x0], d = lattice[(y0 + 1) * n + x0 + 1];
      out[y * size + x] = (a + (b - a) * tx) * (1 - ty) + (c + (d - c) * tx) * ty;
    }
  }
  return out;
}

function smooth(t: number): number {
  return t * t * (3 - 2 * t);
}

/**
 * A photo-like background: a linear gradient from `from` to `to` along a random direction, a two-octave
 * texture (`texture` = amplitude in grey levels) and per-channel sensor grain (`grain` = its std. dev.).
 */
export function photoBackground(rng: Rng, size: number, from: Rgb, to: Rgb, texture: number, grain: number): Buffer {
  const angle = rng.uniform(0, 2 * Math.PI);
  const dx = Math.cos(angle), dy = Math.sin(angle);
  const coarse = valueNoise(rng, size, rng.intBetween(2, 4));
  const fine = valueNoise(rng, size, rng.intBetween(8, 14));
  const tint: Rgb = [rng.uniform(0.7, 1.3), rng.uniform(0.7, 1.3), rng.uniform(0.7, 1.3)];
  const buf = Buffer.alloc(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const p = y * size + x;
      // Gradient position in [0, 1] along the direction, measured from the image centre.
      const t = Math.min(1, Math.max(0, 0.5 + ((x / size - 0.5) * dx + (y / size - 0.5) * dy)));
      const tex = texture * (0.65 * coarse[p] + 0.35 * fine[p]);
      for (let ch = 0; ch < 3; ch++) {
        const base = from[ch] + (to[ch] - from[ch]) * t;
        buf[p * 3 + ch] = clamp255(base + tex * tint[ch] + grain * rng.normal());
      }
    }
  }
  return buf;
}

/** Off-white paper with faint grey fibres: the same grain on all three channels so it stays neutral. */
export function paperBackground(rng: Rng, size: number, paper: Rgb, grain: number): Buffer {
  const blotch = valueNoise(rng, size, rng.intBetween(3, 6));
  const buf = Buffer.alloc(size * size * 3);
  for (let p = 0; p < size * size; p++) {
    const g = 3 * blotch[p] + grain * rng.normal();
    for (let ch = 0; ch < 3; ch++) buf[p * 3 + ch] = clamp255(paper[ch] + g);
  }
  return buf;
}
