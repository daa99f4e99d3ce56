import { describe, it, expect } from 'vitest';
import type { RawImage } from '../lib/image/decode.js';
import { Rng } from '../lib/core/rng.js';
import {
  GEOMETRIC_FILL, RAND_AUGMENT_OPS, autoContrast, brightness, color, contrast, crop, cutout, equalize, hflip, identity,
  luma, posterize, randAugment, randomResizedCrop, randomResizedCropBox, rotate, sharpness, shearX, shearY, solarize,
  strongAugment, translateX, translateY, watermark,
} from '../lib/image/augment.js';
import { resizeShorterCenterCrop } from '../lib/image/preprocess.js';
import { applyTransform, authorizationMixture, toImageTensor, type TransformSpec } from '../lib/image/transforms.js';

type Px = [number, number, number];

/** An image from rows of pixels. */
function img(rows: Px[][]): RawImage {
  const height = rows.length, width = rows[0].length;
  const data = new Uint8Array(width * height * 3);
  rows.forEach((row, y) => row.forEach((p, x) => data.set(p, (y * width + x) * 3)));
  return { data, width, height };
}

/** An image whose three channels are given as separate arrays of equal length (one row). */
function channels(r: number[], g: number[], b: number[], width = r.length): RawImage {
  const data = new Uint8Array(r.length * 3);
  r.forEach((_, i) => data.set([r[i], g[i], b[i]], i * 3));
  return { data, width, height: r.length / width };
}

function pixels(im: RawImage): Px[][] {
  return Array.from({ length: im.height }, (_, y) => Array.from({ length: im.width }, (_, x) => {
    const i = (y * im.width + x) * 3;
    return [im.data[i], im.data[i + 1], im.data[i + 2]] as Px;
  }));
}

function channel(im: RawImage, c: number): number[] {
  return Array.from({ length: im.width * im.height }, (_, i) => im.data[i * 3 + c]);
}

/** A grey pixel. */
const g = (v: number): Px => [v, v, v];
const F = [...GEOMETRIC_FILL] as Px;

/** A 'textured' image: every pixel different, so geometric and colour ops visibly change it. */
function texture(w: number, h: number): RawImage {
  return img(Array.from({ length: h }, (_, y) => Array.from({ length: w }, (_, x) => [(x * 37 + y * 11) % 256, (x * 5 + y * 29) % 256, (x * y * 3 + 60) % 256] as Px)));
}

/** An Rng stand-in whose `int` returns fixed values, to place Cutout exactly. */
function fixedInts(...values: number[]): Rng {
  let i = 0;
  return { int: () => values[i++] } as unknown as Rng;
}

describe('watermark, flip, crop', () => {
  it('whitens every pixel with an even row or column; only (odd row, odd column) keep their values', () => {
    const src = img(Array.from({ length: 3 }, (_, y) => Array.from({ length: 5 }, (_, x) => g(10 * y + x))));
    const W = g(255);
    expect(pixels(watermark(src))).toEqual([
      [W, W, W, W, W],
      [W, g(11), W, g(13), W],
      [W, W, W, W, W],
    ]);
    expect(src.data[0]).toBe(0); // input untouched
  });

  it('mirrors left-right', () => {
    expect(pixels(hflip(img([[g(1), g(2), g(3)], [g(4), g(5), g(6)]])))).toEqual([[g(3), g(2), g(1)], [g(6), g(5), g(4)]]);
  });

  it('crops a rectangle and refuses one that leaves the image', () => {
    const src = img([[g(1), g(2), g(3)], [g(4), g(5), g(6)]]);
    expect(pixels(crop(src, 1, 0, 2, 2))).toEqual([[g(2), g(3)], [g(5), g(6)]]);
    expect(() => crop(src, 2, 0, 2, 1)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  });
});

describe('PIL colour operations', () => {
  it('posterize keeps the top bits', () => {
    const src = channels([183, 127, 16, 255], [0, 0, 0, 0], [1, 2, 3, 4]);
    expect(channel(posterize(src, 4), 0)).toEqual([176, 112, 16, 240]); // & 0b11110000
    expect(channel(posterize(src, 1), 0)).toEqual([128, 0, 0, 128]);
    expect(channel(posterize(src, 8), 0)).toEqual([183, 127, 16, 255]);
    expect(() => posterize(src, 0)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  });

  it('solarize inverts values at or above the threshold', () => {
    const src = channels([127, 128, 200, 0, 255], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]);
    expect(channel(solarize(src, 128), 0)).toEqual([127, 127, 55, 0, 0]);
    expect(channel(solarize(src, 256), 0)).toEqual([127, 128, 200, 0, 255]);
    expect(channel(solarize(src, 0), 1)).toEqual([255, 255, 255, 255, 255]);
  });

  it('brightness blends with black, truncating, and clips when extrapolating', () => {
    const src = channels([201, 255, 1], [100, 200, 171], [4, 8, 12]);
    const half = brightness(src, 0.5);
    expect(channel(half, 0)).toEqual([100, 127, 0]); // 100.5, 127.5, 0.5 truncated
    expect(channel(half, 2)).toEqual([2, 4, 6]);
    expect(channel(brightness(src, 1.5), 1)).toEqual([150, 255, 255]); // 150, 300, 256.5
    expect(channel(brightness(src, 1), 0)).toEqual([201, 255, 1]);
  });

  it('uses PIL\'s rounded fixed-point luma', () => {
    // 0.299·100 + 0.587·150 + 0.114·200 = 140.75 → 141 (PIL rounds); pure green 149.685 → 150.
    expect(luma(100, 150, 200)).toBe(141);
    expect(luma(0, 255, 0)).toBe(150);
    expect(luma(255, 0, 0)).toBe(76);
    expect(luma(77, 77, 77)).toBe(77);
  });

  it('color blends with the grey (L) image', () => {
    const src = img([[[100, 150, 200], [0, 255, 0]]]);
    expect(pixels(color(src, 0))).toEqual([[g(141), g(150)]]);
    // 141 + 0.5·(100 − 141) = 120.5, 141 + 0.5·9 = 145.5, 141 + 0.5·59 = 170.5; 150 ± 75 = 75, 202.5.
    expect(pixels(color(src, 0.5))).toEqual([[[120, 145, 170], [75, 202, 75]]]);
  });

  it('contrast blends with a uniform grey at int(mean luma + 0.5)', () => {
    const src = img([[g(0), g(255)]]); // mean 127.5 → 128
    expect(pixels(contrast(src, 0))).toEqual([[g(128), g(128)]]);
    expect(pixels(contrast(src, 0.5))).toEqual([[g(64), g(191)]]); // 128 − 64, 128 + 63.5
  });

  it('sharpness blends with the SMOOTH filter, leaving the border alone', () => {
    // R: 200 in the centre, 50 around: SMOOTH = (8·50 + 5·200)/13 = 107.69 → 108. G constant. B: centre 13,
    // neighbours 0 → 65/13 = 5.
    const p = (r: number, b: number): Px => [r, 100, b];
    const src = img([[p(50, 0), p(50, 0), p(50, 0)], [p(50, 0), p(200, 13), p(50, 0)], [p(50, 0), p(50, 0), p(50, 0)]]);
    const soft = sharpness(src, 0);
    expect(pixels(soft)[1][1]).toEqual([108, 100, 5]);
    expect(channel(soft, 0).filter((_, i) => i !== 4)).toEqual(Array(8).fill(50));
    expect(pixels(sharpness(src, 0.5))[1][1]).toEqual([154, 100, 9]); // 108 + 46, 5 + 4
    expect(pixels(sharpness(src, 2))[1][1]).toEqual([255, 100, 21]); // 292 clipped, 5 + 16
  });

  it('autocontrast stretches each channel from its lowest to its highest value', () => {
    const src = channels([50, 100, 150, 50], [7, 7, 7, 7], [20, 30, 40, 220]);
    const out = autoContrast(src);
    expect(channel(out, 0)).toEqual([0, 127, 255, 0]); // scale 2.55: 127.5 → 127
    expect(channel(out, 1)).toEqual([7, 7, 7, 7]); // a single value is left alone
    expect(channel(out, 2)).toEqual([0, 12, 25, 255]); // scale 1.275: 12.75, 25.5
  });

  it('equalize maps a known histogram through PIL\'s cumulative table', () => {
    // 768 pixels: R has 256 each of 50, 100, 150 → step = (768 − 256) // 256 = 2, n starts at 1:
    // 50 → 1//2 = 0, 100 → 257//2 = 128, 150 → 513//2 = 256 → clipped 255. G is constant: unchanged.
    const r = Array.from({ length: 768 }, (_, i) => [50, 100, 150][i % 3]);
    const src = channels(r, Array(768).fill(9), r.map((v) => 255 - v), 16);
    const out = equalize(src);
    expect(channel(out, 0).slice(0, 6)).toEqual([0, 128, 255, 0, 128, 255]);
    expect(new Set(channel(out, 1))).toEqual(new Set([9]));
    expect(channel(out, 2).slice(0, 3)).toEqual([255, 128, 0]); // 205, 155, 105
    // Under ~256 pixels the step is 0 and PIL leaves the image as it is.
    const small = channels([3, 90, 200], [1, 2, 3], [4, 5, 6]);
    expect(Array.from(equalize(small).data)).toEqual(Array.from(small.data));
  });
});

describe('PIL geometric operations (nearest, grey fill)', () => {
  const grid = (w: number, h: number) => img(Array.from({ length: h }, (_, y) => Array.from({ length: w }, (_, x) => g(10 * y + x))));

  it('translates by whole pixels', () => {
    const src = grid(4, 2);
    expect(pixels(translateX(src, 1))).toEqual([[g(1), g(2), g(3), F], [g(11), g(12), g(13), F]]);
    expect(pixels(translateX(src, -2))).toEqual([[F, F, g(0), g(1)], [F, F, g(10), g(11)]]);
    expect(pixels(translateY(grid(2, 3), 1))).toEqual([[g(10), g(11)], [g(20), g(21)], [F, F]]);
    expect(pixels(translateX(src, 1, [1, 2, 3]))[0][3]).toEqual([1, 2, 3]);
  });

  it('shears rows (ShearX) and columns (ShearY) about the top/left edge', () => {
    // ShearX 0.5: source x = floor(x + 0.5 + 0.5·(y + 0.5)): row 0 → x, rows 1–2 → x + 1.
    expect(pixels(shearX(grid(4, 3), 0.5))).toEqual([
      [g(0), g(1), g(2), g(3)], [g(11), g(12), g(13), F], [g(21), g(22), g(23), F],
    ]);
    // ShearX −0.5: row 0 → x, rows 1–2 → x − 1.
    expect(pixels(shearX(grid(4, 3), -0.5))).toEqual([
      [g(0), g(1), g(2), g(3)], [F, g(10), g(11), g(12)], [F, g(20), g(21), g(22)],
    ]);
    // ShearY 0.5: column 0 → y, columns 1–2 → y + 1.
    expect(pixels(shearY(grid(3, 3), 0.5))).toEqual([
      [g(0), g(11), g(12)], [g(10), g(21), g(22)], [g(20), F, F],
    ]);
  });

  it('rotates counter-clockwise about the centre', () => {
    // 4×2 by 90°: source = (2.5 − y, x − 0.5); columns 0 and 3 fall outside.
    expect(pixels(rotate(grid(4, 2), 90))).toEqual([[F, g(2), g(12), F], [F, g(1), g(11), F]]);
    // Squares by ±90° and anything by 180° are exact transposes.
    const sq = grid(2, 2);
    expect(pixels(rotate(sq, 90))).toEqual([[g(1), g(11)], [g(0), g(10)]]);
    expect(pixels(rotate(sq, -270))).toEqual(pixels(rotate(sq, 90)));
    expect(pixels(rotate(sq, -90))).toEqual([[g(10), g(0)], [g(11), g(1)]]);
    expect(pixels(rotate(grid(3, 2), 180))).toEqual([[g(12), g(11), g(10)], [g(2), g(1), g(0)]]);
    expect(pixels(rotate(grid(3, 2), 360))).toEqual(pixels(grid(3, 2)));
  });

  it('keeps the centre and fills the corners when rotating by 27°', () => {
    const src = grid(9, 9);
    for (const deg of [27, -27]) {
      const out = pixels(rotate(src, deg));
      expect(out[4][4]).toEqual(g(44));
      for (const [x, y] of [[0, 0], [8, 0], [0, 8], [8, 8]]) expect(out[y][x]).toEqual(F);
    }
  });
});

describe('RandAugment', () => {
  const byName = Object.fromEntries(RAND_AUGMENT_OPS.map((op) => [op.name, op]));
  const dummy = texture(224, 100);

  it('has the spec\'s 14 operations', () => {
    expect(RAND_AUGMENT_OPS.map((op) => op.name).sort()).toEqual(['AutoContrast', 'Brightness', 'Color', 'Contrast',
      'Equalize', 'Identity', 'Posterize', 'Rotate', 'Sharpness', 'ShearX', 'ShearY', 'Solarize', 'TranslateX', 'TranslateY']);
  });

  it('maps magnitude v = 1..9 to the spec\'s parameters', () => {
    const rng = new Rng(1);
    const vs = [1, 2, 3, 4, 5, 6, 7, 8, 9];
    const at = (name: string, v: number) => byName[name].param(v, dummy, rng);
    expect(vs.map((v) => at('Posterize', v))).toEqual([4, 4, 5, 5, 6, 6, 6, 7, 7]); // int(0.4v) + 4
    expect(vs.map((v) => at('Solarize', v))).toEqual([231, 205, 180, 154, 128, 103, 77, 52, 26]); // 256 − int(25.6v)
    for (const name of ['Brightness', 'Color', 'Contrast', 'Sharpness']) {
      vs.forEach((v) => expect(at(name, v)).toBeCloseTo(0.09 * v + 0.05, 12));
    }
    vs.forEach((v) => expect(Math.abs(at('Rotate', v))).toBe(3 * v));
    vs.forEach((v) => expect(Math.abs(at('ShearX', v))).toBeCloseTo(0.03 * v, 12));
    vs.forEach((v) => expect(Math.abs(at('ShearY', v))).toBeCloseTo(0.03 * v, 12));
    expect(vs.map((v) => Math.abs(at('TranslateX', v)))).toEqual([6, 13, 20, 26, 33, 40, 47, 53, 60]); // int(0.03v·224)
    // TranslateY scales the image's height (100); in the reference's double arithmetic 9·0.3/10·100 is
    // 26.999999999999996, so int() gives 26, not 27.
    expect(Math.abs(at('TranslateY', 9))).toBe(26);
    expect(Math.abs(at('TranslateY', 5))).toBe(15);
  });

  it('draws both signs for the signed operations', () => {
    const rng = new Rng(7);
    for (const name of ['Rotate', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY']) {
      const signs = new Set(Array.from({ length: 40 }, () => Math.sign(byName[name].param(5, dummy, rng))));
      expect(signs).toEqual(new Set([-1, 1]));
    }
  });

  it('applies nothing with p = 0 or n = 0, and is reproducible from the seed', () => {
    const src = texture(32, 24);
    expect(Array.from(randAugment(src, new Rng(3), { n: 10, p: 0 }).data)).toEqual(Array.from(src.data));
    expect(Array.from(randAugment(src, new Rng(3), { n: 0 }).data)).toEqual(Array.from(src.data));
    const a = randAugment(src, new Rng(42));
    const b = randAugment(src, new Rng(42));
    const c = randAugment(src, new Rng(43));
    expect(Array.from(a.data)).toEqual(Array.from(b.data));
    expect(Array.from(a.data)).not.toEqual(Array.from(c.data));
    expect([a.width, a.height]).toEqual([32, 24]);
  });

  it('with n = 1 and p = 1 applies exactly the drawn operation at the drawn magnitude', () => {
    const src = texture(20, 20);
    for (let seed = 0; seed < 20; seed++) {
      const replay = new Rng(seed);
      const op = RAND_AUGMENT_OPS[replay.int(RAND_AUGMENT_OPS.length)];
      const v = replay.intBetween(1, 9);
      replay.next(); // the apply-or-not draw
      const expected = op.apply(src, op.param(v, src, replay));
      expect(Array.from(randAugment(src, new Rng(seed), { n: 1, p: 1 }).data)).toEqual(Array.from(expected.data));
    }
  });
});

describe('Cutout', () => {
  const src = () => img(Array.from({ length: 20 }, () => Array.from({ length: 20 }, () => g(3))));
  const grey = (im: RawImage) => pixels(im).flat().filter((p) => p[0] === 127).length;

  it('clips the square at the top-left corner', () => {
    const out = cutout(src(), fixedInts(0, 0)); // centre (0, 0): columns/rows −8..7 → 0..7
    expect(grey(out)).toBe(64);
    expect(pixels(out)[7][7]).toEqual(g(127));
    expect(pixels(out)[8][0]).toEqual(g(3));
    expect(pixels(out)[0][8]).toEqual(g(3));
  });

  it('clips at the bottom-right corner and paints a full 16×16 square inside', () => {
    expect(grey(cutout(src(), fixedInts(19, 19)))).toBe(81); // 11..19 in both directions
    const inside = cutout(src(), fixedInts(10, 9), { size: 16, fill: [127, 127, 127] });
    expect(grey(inside)).toBe(256);
    expect(pixels(inside)[1][2]).toEqual(g(127)); // rows 1..16, columns 2..17
    expect(pixels(inside)[0][2]).toEqual(g(3));
    expect(pixels(inside)[16][17]).toEqual(g(127));
    expect(pixels(inside)[16][18]).toEqual(g(3));
  });
});

describe('RandomResizedCrop', () => {
  it('draws boxes inside the image with area and ratio in range', () => {
    const rng = new Rng(11);
    for (let i = 0; i < 500; i++) {
      const b = randomResizedCropBox(300, 200, rng);
      expect(b.x >= 0 && b.y >= 0 && b.x + b.w <= 300 && b.y + b.h <= 200).toBe(true);
      const frac = (b.w * b.h) / 60000;
      expect(frac).toBeGreaterThan(0.07);
      expect(b.w / b.h).toBeGreaterThan(0.7);
      expect(b.w / b.h).toBeLessThan(1.4);
    }
  });

  it('falls back to the centred crop with the ratio clamped', () => {
    const rng = new Rng(1);
    const impossible = { scale: [2, 3] as [number, number] }; // never fits: fallback
    expect(randomResizedCropBox(100, 10, rng, impossible)).toEqual({ x: 43, y: 0, w: 13, h: 10 }); // round(10·4/3)
    expect(randomResizedCropBox(10, 100, rng, impossible)).toEqual({ x: 0, y: 43, w: 10, h: 13 }); // round(10/(3/4))
    expect(randomResizedCropBox(50, 40, rng, impossible)).toEqual({ x: 0, y: 0, w: 50, h: 40 });
  });

  it('resizes the crop to size×size, reproducibly', async () => {
    const src = texture(60, 40);
    const a = await randomResizedCrop(src, 16, new Rng(5));
    const b = await randomResizedCrop(src, 16, new Rng(5));
    expect([a.width, a.height]).toEqual([16, 16]);
    expect(Array.from(a.data)).toEqual(Array.from(b.data));
  });
});

describe('strong augmentation and the per-sample transform', () => {
  it('strongAugment gives size×size, the same for the same seed and different for another', async () => {
    const src = texture(50, 40);
    const a = await strongAugment(src, 24, new Rng(9));
    const b = await strongAugment(src, 24, new Rng(9));
    const c = await strongAugment(src, 24, new Rng(10));
    expect([a.width, a.height]).toEqual([24, 24]);
    expect(Array.from(a.data)).toEqual(Array.from(b.data));
    expect(Array.from(a.data)).not.toEqual(Array.from(c.data));
    expect(pixels(a).flat().filter((p) => p[0] === 127 && p[1] === 127 && p[2] === 127).length).toBeGreaterThan(0);
  });

  it('applyTransform gives size×size for every kind, with or without the watermark', async () => {
    const src = texture(45, 30);
    for (const augment of ['test', 'train', 'strong'] as const) {
      for (const wm of [false, true]) {
        const out = await applyTransform(src, { augment, watermark: wm }, 16, new Rng(2));
        expect([out.width, out.height, out.data.length]).toEqual([16, 16, 16 * 16 * 3]);
      }
    }
    await expect(applyTransform(src, { augment: 'bogus' as 'test' }, 16, new Rng(2))).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });

  it('watermarks at the original resolution, before resizing', async () => {
    const src = texture(64, 48);
    const out = await applyTransform(src, { augment: 'test', watermark: true }, 24, new Rng(0));
    const expected = await resizeShorterCenterCrop(watermark(src), 24);
    expect(Array.from(out.data)).toEqual(Array.from(expected.data));
    const clean = await applyTransform(src, { augment: 'test' }, 24, new Rng(0));
    expect(Array.from(clean.data)).not.toEqual(Array.from(out.data));
  });

  it('draws the authorization mixture 40/20/40', () => {
    const rng = new Rng(2024);
    const counts = new Map<string, number>();
    const N = 10000;
    for (let i = 0; i < N; i++) {
      const s: TransformSpec = authorizationMixture(rng);
      const key = `${s.watermark ? 'wm' : 'clean'}+${s.augment}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    expect([...counts.keys()].sort()).toEqual(['clean+strong', 'clean+train', 'wm+strong']);
    expect(Math.abs(counts.get('wm+strong')! / N - 0.4)).toBeLessThan(0.02);
    expect(Math.abs(counts.get('clean+train')! / N - 0.2)).toBeLessThan(0.02);
    expect(Math.abs(counts.get('clean+strong')! / N - 0.4)).toBeLessThan(0.02);
  });

  it('toImageTensor stacks normalised images as [N, 3, S, S]', () => {
    const t = toImageTensor([identity(texture(4, 4)), identity(texture(4, 4))]);
    expect(t.shape).toEqual([2, 3, 4, 4]);
    expect(t.data.length).toBe(2 * 3 * 16);
    expect(() => toImageTensor([])).toThrow(expect.objectContaining({ code: 'ERR_EMPTY_INPUT' }));
  });
});
