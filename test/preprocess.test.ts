import { describe, it, expect } from 'vitest';
import { existsSync, readFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { CLIP_MEAN, CLIP_STD, decodeImage, normalizeToChw, type RawImage } from '../lib/image.js';
import { cropRaw, preprocess, resizeBicubic, resizeImage, resizeShorterCenterCrop, shorterSideSize } from '../lib/preprocess.js';

const fixtures = fileURLToPath(new URL('../../shared/fixtures/text-image/', import.meta.url));
const haveFixtures = existsSync(fixtures);
const NAMES = ['small-50x40.png', 'square-224.png', 'tall-120x333.png', 'wide-300x200.png'];

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

  it('reduces a 4×1 step edge by PIL\'s antialiased bicubic weights', () => {
    // Scale 2: support 4, taps at distances 0.25, 0.25, 0.75, 1.25 (scaled) with Catmull-Rom weights
    // .8671875, .8671875, .2265625, -.0703125 (sum 1.890625). Output 0 = 255·(.2265625 − .0703125)/1.890625
    // = 21.07 → 21, output 1 = 233.93 → 234.
    const img = rawOf(4, 1, (x) => (x < 2 ? [0, 0, 0] : [255, 255, 255]));
    expect(Array.from(resizeBicubic(img, 2, 1).data)).toEqual([21, 21, 21, 234, 234, 234]);
  });

  it('keeps a constant image constant when enlarging and reducing', async () => {
    const img = rawOf(13, 7, () => [9, 128, 250]);
    for (const [w, h] of [[40, 21], [5, 3], [13, 3]]) {
      const out = await resizeImage(img, w, h);
      expect([out.width, out.height]).toEqual([w, h]);
      expect(new Set(Array.from(out.data)).size).toBe(3);
      expect(Array.from(out.data.subarray(0, 3))).toEqual([9, 128, 250]);
    }
  });

  it('hands large reductions to sharp, which stays within a tolerance of PIL\'s result', async () => {
    const img = rawOf(900, 600, (x, y) => [
      Math.round(127 + 120 * Math.sin(x / 17) * Math.cos(y / 23)), (x * 7 + y * 3) % 256, Math.round(255 * ((x * y) % 97) / 96),
    ]);
    for (const [w, h] of [[336, 224], [600, 400]]) {
      const viaSharp = await resizeImage(img, w, h);
      const viaPil = resizeBicubic(img, w, h);
      const norm = (r: RawImage) => normalizeToChw([r]);
      expect(meanAbsDiff(norm(viaSharp), norm(viaPil))).toBeLessThan(0.005);
    }
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
