import { describe, it, expect } from 'vitest';
import { existsSync, readFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { CLIP_MEAN, CLIP_STD, decodeImage, normalizeToChw, type RawImage } from '../lib/image/decode.js';
import { loadNative } from '../lib/native/load.js';
import { callNative } from '../lib/native/errors.js';
import { cropRaw, preprocess, resizeImage, resizeShorterCenterCrop, shorterSideSize } from '../lib/image/preprocess.js';

const fixtures = fileURLToPath(new URL('../../shared/fixtures/text-image/', import.meta.url));
const haveFixtures = existsSync(fixtures);
const NAMES = ['small-50x40.png', 'square-224.png', 'tall-120x333.png', 'wide-300x200.png'];
// Reductions (the path real photos take): PIL's bicubic widens its kernel by the reduction factor.
const DOWN = ['down-640x480.png', 'down-1000x300.png', 'down-500x1500.png', 'down-225x225.png'];

function readF32(path: string): Float32Array {
  return new Float32Array(new Uint8Array(readFileSync(path)).buffer);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/**
 * PIL's 8-bit pixels behind a fixture's normalised [3,S,S] tensor: v·std + mean, times 255, is an integer up to
 * float32 round-off (checked), laid out back as RGB rows.
 */
function pilBytes(chw: Float32Array, size: number): Uint8Array {
  const plane = size * size;
  const out = new Uint8Array(3 * plane);
  let offInteger = 0;
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) {
      const v = (chw[c * plane + i] * CLIP_STD[c] + CLIP_MEAN[c]) * 255;
      const r = Math.round(v);
      offInteger = Math.max(offInteger, Math.abs(v - r));
      out[3 * i + c] = r;
    }
  }
  expect(offInteger).toBeLessThan(1e-3);
  return out;
}

function meanAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / a.length;
}

function rawOf(width: number, height: number, px: (x: number, y: number) => [number, number, number]): RawImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(px(x, y), (y * width + x) * 3);
  return { data, width, height };
}

async function expectCode(p: Promise<unknown>, code: string, text?: RegExp) {
  const err = await p.then(() => null, (e: unknown) => e as { code?: string; message: string });
  expect(err, 'expected a rejection').not.toBeNull();
  expect(err!.code).toBe(code);
  if (text) expect(err!.message).toMatch(text);
}

describe.skipIf(!haveFixtures)('CLIP test transform against the PIL reference fixtures', () => {
  for (const name of NAMES) {
    it(`matches ${name}.f32`, async () => {
      const expected = new Float32Array(new Uint8Array(readFileSync(join(fixtures, `${name}.f32`))).buffer);
      const t = await preprocess(join(fixtures, name), { size: 224 });
      expect(t.shape).toEqual([1, 3, 224, 224]);
      const mad = meanAbsDiff(t.data, expected);
      expect(mad).toBeLessThan(0.005);
      // The resize reproduces PIL's arithmetic, so only float rounding remains.
      expect(mad).toBeLessThan(1e-5);
    });
  }

  for (const name of DOWN) {
    it(`matches ${name}.f32, a reduction, to float round-off (PIL's pixels exactly)`, async () => {
      const expected = readF32(join(fixtures, `${name}.f32`));
      const t = await preprocess(join(fixtures, name), { size: 224 });
      expect(t.shape).toEqual([1, 3, 224, 224]);
      expect(meanAbsDiff(t.data, expected)).toBeLessThan(1e-4);
      // Same bytes as PIL, so what is left is float32 rounding of the normalisation: < 2 ulp at |v| ≤ 2.7.
      expect(maxAbsDiff(t.data, expected)).toBeLessThan(5e-7);
      const ours = await resizeShorterCenterCrop(join(fixtures, name), 224);
      const theirs = pilBytes(expected, 224);
      let differing = 0;
      for (let i = 0; i < theirs.length; i++) if (ours.data[i] !== theirs[i]) differing++;
      expect(differing).toBe(0);
    });
  }

  it('batches paths, buffers and raw images into one [N,3,S,S] tensor, in order', async () => {
    const paths = NAMES.map((n) => join(fixtures, n));
    const single = await Promise.all(paths.map((p) => preprocess(p, { size: 224 })));
    const raw = await decodeImage(paths[2]);
    const batch = await preprocess([paths[0], readFileSync(paths[1]), raw, new Uint8Array(readFileSync(paths[3]))], { size: 224 });
    expect(batch.shape).toEqual([4, 3, 224, 224]);
    const plane = 3 * 224 * 224;
    single.forEach((s, i) => expect(meanAbsDiff(batch.data.subarray(i * plane, (i + 1) * plane), s.data)).toBe(0));
  });
});

describe('decodeImage', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ipclip-img-'));

  it('drops alpha without compositing (like PIL convert("RGB"))', async () => {
    const rgba = Buffer.from([10, 20, 30, 0, 200, 100, 50, 128]);
    const png = await sharp(rgba, { raw: { width: 2, height: 1, channels: 4 } }).png().toBuffer();
    const img = await decodeImage(png);
    expect([img.width, img.height]).toEqual([2, 1]);
    expect(Array.from(img.data)).toEqual([10, 20, 30, 200, 100, 50]);
  });

  it('turns grey into three equal channels', async () => {
    const png = await sharp(Buffer.from([0, 77, 255]), { raw: { width: 3, height: 1, channels: 1 } }).png().toBuffer();
    const img = await decodeImage(png);
    expect(Array.from(img.data)).toEqual([0, 0, 0, 77, 77, 77, 255, 255, 255]);
  });

  it('reduces 16-bit images to 8 bits (0x1234 → 0x12)', async () => {
    const px = new Uint16Array([0x1234, 0xffff, 0x0000]);
    const png = await sharp(px, { raw: { width: 1, height: 1, channels: 3 } }).toColourspace('rgb16').png().toBuffer();
    expect((await sharp(png).metadata()).depth).toBe('ushort');
    const img = await decodeImage(png);
    expect(Array.from(img.data)).toEqual([0x12, 255, 0]);
  });

  it('applies the EXIF orientation', async () => {
    // 16×8, left half red, right half blue; orientation 6 = "rotate 90° clockwise to display".
    const src = rawOf(16, 8, (x) => (x < 8 ? [255, 0, 0] : [0, 0, 255]));
    const jpg = await sharp(src.data, { raw: { width: 16, height: 8, channels: 3 } }).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer();
    const img = await decodeImage(jpg);
    expect([img.width, img.height]).toEqual([8, 16]);
    const at = (x: number, y: number) => Array.from(img.data.subarray((y * 8 + x) * 3, (y * 8 + x) * 3 + 3));
    expect(at(4, 2)[0]).toBeGreaterThan(200); // the left (red) half is now on top
    expect(at(4, 13)[2]).toBeGreaterThan(200);
  });

  it('takes the first frame of an animated GIF', async () => {
    const frame = (v: number) => sharp(Buffer.alloc(4 * 4 * 3, v), { raw: { width: 4, height: 4, channels: 3 } }).png().toBuffer();
    const gif = await sharp([await frame(0), await frame(255)], { join: { animated: true } }).gif().toBuffer();
    expect((await sharp(gif).metadata()).pages).toBe(2);
    const img = await decodeImage(gif);
    expect([img.width, img.height]).toEqual([4, 4]);
    expect(Math.max(...img.data)).toBe(0);
  });

  it('converts CMYK to sRGB', async () => {
    const src = rawOf(8, 8, () => [200, 60, 40]);
    const jpg = await sharp(src.data, { raw: { width: 8, height: 8, channels: 3 } }).toColourspace('cmyk').jpeg({ quality: 100 }).toBuffer();
    expect((await sharp(jpg).metadata()).space).toBe('cmyk');
    const img = await decodeImage(jpg);
    expect(img.data.length).toBe(8 * 8 * 3);
    const [r, g, b] = img.data.subarray(0, 3);
    expect(Math.abs(r - 200) + Math.abs(g - 60) + Math.abs(b - 40)).toBeLessThan(30);
  });

  it('names a missing path (ERR_FILE_NOT_FOUND)', async () => {
    await expectCode(decodeImage(join(dir, 'nope.png')), 'ERR_FILE_NOT_FOUND', /nope\.png/);
  });

  it('rejects empty, truncated and undecodable data (ERR_BAD_IMAGE)', async () => {
    const empty = join(dir, 'empty.png');
    writeFileSync(empty, '');
    await expectCode(decodeImage(empty), 'ERR_BAD_IMAGE', /empty\.png/);
    await expectCode(decodeImage(Buffer.alloc(0)), 'ERR_BAD_IMAGE', /buffer/);
    await expectCode(decodeImage(Buffer.from('definitely not an image')), 'ERR_BAD_IMAGE');
    const png = await sharp(rawOf(64, 64, (x, y) => [x * 4, y * 4, (x * y) & 255]).data, { raw: { width: 64, height: 64, channels: 3 } }).png({ compressionLevel: 0 }).toBuffer();
    await expectCode(decodeImage(png.subarray(0, png.length >> 1)), 'ERR_BAD_IMAGE');
    const jpg = await sharp(png).jpeg().toBuffer();
    await expectCode(decodeImage(jpg.subarray(0, jpg.length >> 1)), 'ERR_BAD_IMAGE');
  });

  it('refuses images over the pixel limit (decompression bombs) with ERR_BAD_IMAGE', async () => {
    const png = await sharp(Buffer.alloc(100 * 100 * 3), { raw: { width: 100, height: 100, channels: 3 } }).png().toBuffer();
    await expectCode(decodeImage(png, { maxPixels: 9999 }), 'ERR_BAD_IMAGE', /over the limit of 9999 pixels/);
    expect((await decodeImage(png, { maxPixels: 10000 })).width).toBe(100);
    await expectCode(decodeImage(rawOf(10, 10, () => [0, 0, 0]), { maxPixels: 99 }), 'ERR_BAD_IMAGE', /limit/);
  });

  it('validates raw images', async () => {
    await expectCode(decodeImage({ data: new Uint8Array(5), width: 2, height: 1 }), 'ERR_INVALID_ARGUMENT');
    await expectCode(decodeImage({ data: new Uint8Array(0), width: 0, height: 0 }), 'ERR_INVALID_ARGUMENT');
  });
});

describe('preprocess errors', () => {
  it('rejects an empty list (ERR_EMPTY_INPUT) and a bad size (ERR_INVALID_ARGUMENT)', async () => {
    await expectCode(preprocess([], { size: 224 }), 'ERR_EMPTY_INPUT');
    await expectCode(preprocess(rawOf(4, 4, () => [0, 0, 0]), { size: 0 }), 'ERR_INVALID_ARGUMENT');
  });

  it('names the failing buffer by its index', async () => {
    const ok = await sharp(Buffer.alloc(12), { raw: { width: 2, height: 2, channels: 3 } }).png().toBuffer();
    await expectCode(preprocess([ok, Buffer.from('junk')], { size: 8 }), 'ERR_BAD_IMAGE', /buffer #1/);
  });
});

describe('resizing and cropping', () => {
  it('resizes the shorter side with the longer side rounded (the reference fixtures show round, not int)', () => {
    expect(shorterSideSize(50, 40, 224)).toEqual([280, 224]);
    expect(shorterSideSize(120, 333, 224)).toEqual([224, 622]); // 621.6
    expect(shorterSideSize(300, 200, 224)).toEqual([336, 224]);
    expect(shorterSideSize(9, 4, 4)).toEqual([9, 4]);
  });

  it('centre-crops with half-to-even offsets like torchvision (9 → 4: left = round(2.5) = 2)', async () => {
    const img = rawOf(9, 4, (x, y) => [x, y, 0]);
    const out = await resizeShorterCenterCrop(img, 4);
    expect([out.width, out.height]).toEqual([4, 4]);
    expect(Array.from(out.data.subarray(0, 12))).toEqual([2, 0, 0, 3, 0, 0, 4, 0, 0, 5, 0, 0]);
  });

  it('reduces a 4×1 step edge by PIL\'s antialiased bicubic weights, along either axis', async () => {
    // Scale 2: support 4, taps at distances 0.25, 0.25, 0.75, 1.25 (scaled) with Catmull-Rom weights
    // .8671875, .8671875, .2265625, -.0703125 (sum 1.890625). Output 0 = 255·(.2265625 − .0703125)/1.890625
    // = 21.07 → 21, output 1 = 233.93 → 234.
    const img = rawOf(4, 1, (x) => (x < 2 ? [0, 0, 0] : [255, 255, 255]));
    expect(Array.from((await resizeImage(img, 2, 1)).data)).toEqual([21, 21, 21, 234, 234, 234]);
    const col = rawOf(1, 4, (_x, y) => (y < 2 ? [0, 0, 0] : [255, 255, 255]));
    expect(Array.from((await resizeImage(col, 1, 2)).data)).toEqual([21, 21, 21, 234, 234, 234]);
  });

  it('rounds the horizontal pass to 8 bits before the vertical one, as PIL does', async () => {
    // 4×4 → 2×2, 100 where x ≥ 2 and y ≥ 2, else 0; both axes use the weights above: w1 = .15625/1.890625
    // = .0826446 (outputs 0), w2 = .9173554 (outputs 1). Horizontal: rows 2–3 become [8.26 → 8, 91.74 → 92].
    // Vertical: (x0,y0) 8·w1 = 0.66 → 1, (x1,y0) 92·w1 = 7.60 → 8, (x0,y1) 8·w2 = 7.34 → 7,
    // (x1,y1) 92·w2 = 84.40 → 84. Unrounded, (x0,y1) would be 100·w1·w2 = 7.58 → 8.
    const img = rawOf(4, 4, (x, y) => (x >= 2 && y >= 2 ? [100, 100, 100] : [0, 0, 0]));
    const out = await resizeImage(img, 2, 2);
    expect(Array.from(out.data).filter((_, i) => i % 3 === 0)).toEqual([1, 8, 7, 84]);
  });

  it('keeps a constant image constant when enlarging and reducing', async () => {
    const img = rawOf(13, 7, () => [9, 128, 250]);
    for (const [w, h] of [[40, 21], [5, 3], [13, 3], [13, 7]]) {
      const out = await resizeImage(img, w, h);
      expect([out.width, out.height]).toEqual([w, h]);
      expect(new Set(Array.from(out.data)).size).toBe(3);
      expect(Array.from(out.data.subarray(0, 3))).toEqual([9, 128, 250]);
    }
  });

  it('is separable on a large photo-sized image (the multi-threaded path): identical rows stay identical', async () => {
    // 2400×1800 with every row the same: the vertical pass sees constant columns, so every output row must
    // equal the horizontal-only resize of one row (a 2400×1 image to 299×1), whatever the row split.
    const rowPx = (x: number): [number, number, number] => [(x * 7) & 255, (x * x) % 251, x % 3 === 0 ? 255 : 0];
    const row = rawOf(2400, 1, rowPx);
    const big: RawImage = { data: new Uint8Array(2400 * 1800 * 3), width: 2400, height: 1800 };
    for (let y = 0; y < 1800; y++) big.data.set(row.data, y * 2400 * 3);
    const [w, h] = shorterSideSize(2400, 1800, 224);
    expect([w, h]).toEqual([299, 224]);
    // Off the event loop: a callback queued after the call runs before the resize (milliseconds of work) settles.
    let turned = false;
    const pending = resizeImage(big, w, h);
    setImmediate(() => { turned = true; });
    const out = await pending.then((r) => { expect(turned).toBe(true); return r; });
    const one = (await resizeImage(row, w, 1)).data;
    for (let y = 0; y < h; y++) expect(Buffer.from(out.data.subarray(y * w * 3, (y + 1) * w * 3)).equals(Buffer.from(one))).toBe(true);
    // The thread count splits rows, never changes a byte (here on an image that varies along both axes).
    for (let y = 0; y < 1800; y++) big.data[(y * 2400 + ((y * 13) % 2400)) * 3 + 1] = y & 255;
    const raw = loadNative();
    const byThreads = await Promise.all([1, 3, 7].map((n) => raw.resizeBicubic(big.data, 2400, 1800, w, h, n)));
    expect(byThreads[1].equals(byThreads[0]) && byThreads[2].equals(byThreads[0])).toBe(true);
    expect(byThreads[0].equals(Buffer.from((await resizeImage(big, w, h)).data))).toBe(true);
  });

  it('refuses bad resize arguments with ERR_INVALID_ARGUMENT, in TS and in the binding', async () => {
    const img = rawOf(4, 4, () => [1, 2, 3]);
    await expectCode(resizeImage(img, 0, 4), 'ERR_INVALID_ARGUMENT');
    await expectCode(resizeImage(img, 2.5, 4), 'ERR_INVALID_ARGUMENT');
    await expectCode(resizeImage({ data: new Uint8Array(47), width: 4, height: 4 }, 2, 2), 'ERR_INVALID_ARGUMENT');
    const raw = loadNative();
    await expectCode(callNative(() => raw.resizeBicubic(new Uint8Array(47), 4, 4, 2, 2)), 'ERR_INVALID_ARGUMENT', /48/);
    await expectCode(callNative(() => raw.resizeBicubic(img.data, 4, 4, 1 << 21, 1)), 'ERR_INVALID_ARGUMENT', /resize target/);
    await expectCode(callNative(() => raw.resizeBicubic(img.data, 4, 4, 20000, 20000)), 'ERR_INVALID_ARGUMENT', /pixels/);
    await expectCode(callNative(() => raw.resizeBicubic(img.data, 4, 4, -1, 2)), 'ERR_INVALID_ARGUMENT');
    await expectCode(callNative(() => raw.resizeBicubic(img.data, 4, 4, Number.NaN, 2)), 'ERR_INVALID_ARGUMENT');
    await expectCode(callNative(() => raw.resizeBicubic(img.data, 4, 4, 2, 2, 0)), 'ERR_INVALID_ARGUMENT', /threads/);
    await expectCode(callNative(() => (raw.resizeBicubic as unknown as (...a: unknown[]) => Promise<Buffer>)(new Float32Array(48), 4, 4, 2, 2)),
      'ERR_INVALID_ARGUMENT', /Uint8Array/);
  });

  it('crops exactly the requested rectangle and refuses one outside the image', () => {
    const img = rawOf(5, 3, (x, y) => [x, y, x + y]);
    const c = cropRaw(img, 1, 1, 3, 2);
    expect(Array.from(c.data)).toEqual([1, 1, 2, 2, 1, 3, 3, 1, 4, 1, 2, 3, 2, 2, 4, 3, 2, 5]);
    expect(() => cropRaw(img, 3, 0, 3, 1)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  });

  it('normalises with CLIP\'s mean and std in CHW order', () => {
    const img = rawOf(2, 1, (x) => (x === 0 ? [0, 255, 51] : [255, 0, 102]));
    const t = normalizeToChw([img]);
    const expected = [
      (0 - CLIP_MEAN[0]) / CLIP_STD[0], (1 - CLIP_MEAN[0]) / CLIP_STD[0],
      (1 - CLIP_MEAN[1]) / CLIP_STD[1], (0 - CLIP_MEAN[1]) / CLIP_STD[1],
      (0.2 - CLIP_MEAN[2]) / CLIP_STD[2], (0.4 - CLIP_MEAN[2]) / CLIP_STD[2],
    ];
    expected.forEach((v, i) => expect(t[i]).toBeCloseTo(v, 5));
  });
});
