// Hostile and odd inputs through the public API (Clip.load, encodeImage, encodeText): each must end in a correct
// result or an IpclipError with a fitting code — never a crash or a hang. docs/hostile-inputs.md lists the cases.
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Clip } from '../../lib/clip/clip.js';
import { decodeImage } from '../../lib/image/decode.js';
import { Rng } from '../../lib/core/rng.js';
import type { Tensor, FloatTensor } from '../../lib/core/tensor.js';
import { CLIP_TINY, HAVE_SHARED, TEST_DEVICE, VOCAB_PATH, maxAbsDiff } from '../helpers/fixtures.js';
import { codeOf, entry, joinSafetensors, splitSafetensors } from './helpers.js';

const W = 40;
const H = 30;

/** A seeded RGB image with a handful of colours (so a GIF palette holds it exactly). */
function pattern(seed: number, grey = false, lo = 0, hi = 256): Buffer {
  const rng = new Rng(seed);
  const palette = Array.from({ length: 6 }, () => [rng.intBetween(lo, hi - 1), rng.intBetween(lo, hi - 1), rng.intBetween(lo, hi - 1)]);
  const out = Buffer.alloc(W * H * 3);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const c = palette[(Math.floor(x / 5) + Math.floor(y / 5) * 3 + seed) % palette.length]!;
    for (let k = 0; k < 3; k++) out[(y * W + x) * 3 + k] = grey ? c[0]! : c[k]!;
  }
  return out;
}

const png = (raw: Buffer, channels: 1 | 3 = 3) =>
  sharp(raw, { raw: { width: W, height: H, channels } }).toColourspace(channels === 1 ? 'b-w' : 'srgb').png().toBuffer();

/** A PNG chunk: length, type, data, CRC-32 of type + data (RFC 2083). */
function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

/**
 * A decompression bomb: a valid PNG header declaring width × height 1-bit grey pixels, and an IDAT holding the
 * first rows only. The file is a few hundred bytes; decoding it fully would need width × height bytes of RGB.
 */
function pngBomb(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([1, 0, 0, 0, 0], 8); // bit depth 1, greyscale, deflate, adaptive filter, no interlace
  const rows = deflateSync(Buffer.alloc(16 * (1 + Math.ceil(width / 8))));
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', rows), chunk('IEND', Buffer.alloc(0))]);
}

function expectEmbedding(t: FloatTensor, n = 1): void {
  expect(t.shape).toEqual([n, 32]);
  expect(t.data.every((v) => Number.isFinite(v))).toBe(true);
}

describe.skipIf(!HAVE_SHARED)('hostile inputs through the public API', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'ipclip-hostile-'));
  let clip: Clip;
  beforeAll(async () => {
    clip = await Clip.load(CLIP_TINY.openaiSafetensors, { device: TEST_DEVICE, vocab: VOCAB_PATH });
  });
  afterAll(() => {
    clip?.dispose();
    rmSync(tmp, { recursive: true, force: true });
  });
  const load = (file: string) => Clip.load(file, { device: TEST_DEVICE });

  describe('weights files', () => {
    it('zero-byte, shorter than the length prefix, cut inside the header: ERR_BAD_FILE', async () => {
      const empty = join(tmp, 'empty.safetensors');
      writeFileSync(empty, Buffer.alloc(0));
      expect(await codeOf(load(empty))).toBe('ERR_BAD_FILE');
      const five = join(tmp, 'five.safetensors');
      copyFileSync(CLIP_TINY.openaiSafetensors, five);
      truncateSync(five, 5);
      expect(await codeOf(load(five))).toBe('ERR_BAD_FILE');
      const midHeader = join(tmp, 'mid-header.safetensors');
      copyFileSync(CLIP_TINY.openaiSafetensors, midHeader);
      truncateSync(midHeader, 8 + 100);
      expect(await codeOf(load(midHeader))).toBe('ERR_BAD_FILE');
    });

    it('a header length of 2^64−1 and one past the end of the file: ERR_BAD_FILE before any allocation', async () => {
      const raw = splitSafetensors(CLIP_TINY.openaiSafetensors);
      const json = Buffer.from(JSON.stringify(raw.header));
      for (const len of [0xffffffffffffffffn, BigInt(json.length + raw.data.length + 1)]) {
        const prefix = Buffer.alloc(8);
        prefix.writeBigUInt64LE(len);
        const file = join(tmp, `header-${len}.safetensors`);
        writeFileSync(file, Buffer.concat([prefix, json, raw.data]));
        expect(await codeOf(load(file))).toBe('ERR_BAD_FILE');
      }
    });

    it('offsets past the end of the data and overlapping tensors: ERR_BAD_FILE naming the tensor', async () => {
      const raw = splitSafetensors(CLIP_TINY.openaiSafetensors);
      const past = structuredClone(raw.header);
      const proj = entry({ header: past, data: raw.data }, 'visual.proj');
      const size = proj.data_offsets[1] - proj.data_offsets[0];
      proj.data_offsets = [raw.data.length - size + 2, raw.data.length + 2];
      joinSafetensors(join(tmp, 'past.safetensors'), past, raw.data);
      const err = await load(join(tmp, 'past.safetensors')).catch((e: Error) => e);
      expect(await codeOf(Promise.reject(err))).toBe('ERR_BAD_FILE');
      expect((err as Error).message).toContain('visual.proj');

      const overlap = structuredClone(raw.header);
      const a = entry({ header: overlap, data: raw.data }, 'ln_final.bias'); // [0, 256)
      const b = entry({ header: overlap, data: raw.data }, 'ln_final.weight'); // [256, 512)
      b.data_offsets = [a.data_offsets[0] + 2, a.data_offsets[1] + 2];
      joinSafetensors(join(tmp, 'overlap.safetensors'), overlap, raw.data);
      const err2 = await load(join(tmp, 'overlap.safetensors')).catch((e: Error) => e);
      expect(await codeOf(Promise.reject(err2))).toBe('ERR_BAD_FILE');
      expect((err2 as Error).message).toMatch(/overlap/);
    });

    it('shapes that do not fit the architecture: ERR_BAD_WEIGHTS naming a tensor and the shapes', async () => {
      const raw = splitSafetensors(CLIP_TINY.openaiSafetensors);
      // visual.proj [128, 32] declared as [32, 128]: the same bytes, so the reader accepts it; the model must not.
      const transposed = structuredClone(raw.header);
      entry({ header: transposed, data: raw.data }, 'visual.proj').shape = [32, 128];
      joinSafetensors(join(tmp, 'transposed.safetensors'), transposed, raw.data);
      const err = await load(join(tmp, 'transposed.safetensors')).catch((e: Error) => e);
      expect(await codeOf(Promise.reject(err))).toBe('ERR_BAD_WEIGHTS');
      // The architecture is inferred from the weights (embedDim from visual.proj), so the mismatch may be reported
      // at the first tensor that disagrees with it (here text_projection): it must name a tensor and both shapes.
      expect((err as Error).message).toMatch(/tensor '[\w.]+' has shape \[[\d,]+\].*needs \[[\d,]+\]/);
      // One layer's MLP weight reshaped to a different but same-sized matrix.
      const mlp = structuredClone(raw.header);
      const e = entry({ header: mlp, data: raw.data }, 'transformer.resblocks.1.mlp.c_fc.weight');
      e.shape = [e.shape[0]! / 2, e.shape[1]! * 2];
      joinSafetensors(join(tmp, 'mlp.safetensors'), mlp, raw.data);
      expect(await codeOf(load(join(tmp, 'mlp.safetensors')))).toBe('ERR_BAD_WEIGHTS');
    });

    it('NaN and Inf weights are detected at load: ERR_NON_FINITE naming the tensor', async () => {
      const raw = splitSafetensors(CLIP_TINY.openaiSafetensors);
      for (const [name, half] of [['visual.proj', 0x7e00], ['transformer.resblocks.0.attn.in_proj_weight', 0xfc00]] as const) {
        const data = Buffer.from(raw.data);
        data.writeUInt16LE(half, entry(raw, name).data_offsets[0] + 6); // F16 NaN / −Inf in the fourth element
        const file = join(tmp, `nonfinite-${half}.safetensors`);
        joinSafetensors(file, raw.header, data);
        const err = await load(file).catch((e: Error) => e);
        expect(await codeOf(Promise.reject(err))).toBe('ERR_NON_FINITE');
        expect((err as Error).message).toContain(name);
      }
    });

    it('a file named .pt that is not a TorchScript archive, and a directory without a model: clear errors', async () => {
      const pt = join(tmp, 'fake.pt');
      writeFileSync(pt, Buffer.concat([Buffer.from('PK\x03\x04'), Buffer.alloc(200, 7)]));
      expect(['ERR_BAD_FILE', 'ERR_BAD_WEIGHTS']).toContain(await codeOf(load(pt)));
      const dir = join(tmp, 'no-model');
      mkdirSync(dir);
      expect(['ERR_BAD_FILE', 'ERR_FILE_NOT_FOUND']).toContain(await codeOf(load(dir)));
    });
  });

  describe('images', () => {
    it('zero-byte buffers and files, truncated PNGs, a directory: ERR_BAD_IMAGE; a missing file ERR_FILE_NOT_FOUND', async () => {
      const zero = join(tmp, 'zero.png');
      writeFileSync(zero, Buffer.alloc(0));
      expect(await codeOf(clip.encodeImage(Buffer.alloc(0)))).toBe('ERR_BAD_IMAGE');
      expect(await codeOf(clip.encodeImage(zero))).toBe('ERR_BAD_IMAGE');
      const full = await png(pattern(1));
      for (const keep of [8, 40, Math.floor(full.length * 0.6)]) {
        expect(await codeOf(clip.encodeImage(full.subarray(0, keep)))).toBe('ERR_BAD_IMAGE');
      }
      // Only the IEND chunk missing: every pixel is there, so decoding it is a correct result.
      expect(maxAbsDiff((await clip.encodeImage(full.subarray(0, full.length - 12))).data, (await clip.encodeImage(full)).data)).toBe(0);
      expect(await codeOf(clip.encodeImage(tmp))).toBe('ERR_BAD_IMAGE');
      expect(await codeOf(clip.encodeImage(join(tmp, 'absent.png')))).toBe('ERR_FILE_NOT_FOUND');
    });

    it('a truncated JPEG is refused or decoded, never a crash', async () => {
      const jpeg = await sharp(pattern(2), { raw: { width: W, height: H, channels: 3 } }).jpeg().toBuffer();
      const cut = jpeg.subarray(0, Math.floor(jpeg.length * 0.7));
      const res = await clip.encodeImage(cut).then((t) => t, (e: unknown) => e);
      if (res instanceof Error) expect(await codeOf(Promise.reject(res))).toBe('ERR_BAD_IMAGE');
      else expectEmbedding(res as Tensor);
    });

    it('decompression bombs (a 350-byte PNG and an SVG declaring 50000×50000) are refused before decoding', async () => {
      const bomb = pngBomb(50000, 50000);
      expect(bomb.length).toBeLessThan(2000);
      expect((await sharp(bomb, { limitInputPixels: false }).metadata()).width).toBe(50000); // a well-formed header sharp can read
      const err = await clip.encodeImage(bomb).catch((e: Error) => e);
      expect(await codeOf(Promise.reject(err))).toBe('ERR_BAD_IMAGE');
      expect((err as Error).message).toMatch(/limit/);
      const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="50000" height="50000"><rect width="100%" height="100%"/></svg>');
      expect(await codeOf(clip.encodeImage(svg))).toBe('ERR_BAD_IMAGE');
    });

    it('greyscale and 16-bit PNGs give exactly the embedding of their 8-bit RGB equivalent', async () => {
      const grey = pattern(3, true);
      const greyOnly = Buffer.alloc(W * H);
      for (let i = 0; i < W * H; i++) greyOnly[i] = grey[3 * i]!;
      const [g1, rgb] = await Promise.all([png(greyOnly, 1), png(grey)]);
      expect((await sharp(g1).metadata()).channels).toBe(1);
      expect(maxAbsDiff((await clip.encodeImage(g1)).data, (await clip.encodeImage(rgb)).data)).toBe(0);

      const src = pattern(4);
      const sixteen = await sharp(src, { raw: { width: W, height: H, channels: 3 } }).toColourspace('rgb16').png().toBuffer();
      expect((await sharp(sixteen).metadata()).depth).toBe('ushort');
      expect(maxAbsDiff((await clip.encodeImage(sixteen)).data, (await clip.encodeImage(await png(src))).data)).toBe(0);
    });

    it('a CMYK JPEG is converted to sRGB: close to its RGB source', async () => {
      const src = pattern(5, false, 64, 192); // inside the CMYK gamut
      const cmyk = await sharp(src, { raw: { width: W, height: H, channels: 3 } }).toColourspace('cmyk').jpeg({ quality: 100, chromaSubsampling: '4:4:4' }).toBuffer();
      expect((await sharp(cmyk).metadata()).space).toBe('cmyk');
      const decoded = await decodeImage(cmyk);
      let diff = 0;
      for (let i = 0; i < src.length; i++) diff += Math.abs(decoded.data[i]! - src[i]!);
      // CMYK round trips through ICC profiles and JPEG: not exact (even a lossless CMYK TIFF comes back ~7 levels
      // off on average with sharp's profiles), but inverted or channel-swapped colours would be off by ~60.
      expect(diff / src.length).toBeLessThan(16);
      expectEmbedding(await clip.encodeImage(cmyk));
    });

    it('an animated GIF is its first frame', async () => {
      const frames = Buffer.concat([pattern(6), pattern(7)]);
      const gif = await sharp(frames, { raw: { width: W, height: 2 * H, channels: 3, pageHeight: H } }).gif({ dither: 0 }).toBuffer();
      expect((await sharp(gif).metadata()).pages).toBe(2);
      const first = await clip.encodeImage(await png(pattern(6)));
      const second = await clip.encodeImage(await png(pattern(7)));
      const got = await clip.encodeImage(gif);
      expect(maxAbsDiff(got.data, first.data)).toBeLessThan(1e-6);
      expect(maxAbsDiff(got.data, second.data)).toBeGreaterThan(1e-3); // the frames differ, so this can fail
    });
  });

  describe('text', () => {
    it('control characters and terminal escapes give an embedding', async () => {
      const texts = ['a\u0000photo\u0007of\u001b[31m a dog\u001b[0m', '\r\n\t\u000b\u000c', '\u202eevil\u202c \ufeff'];
      expectEmbedding(await clip.encodeText(texts), 3);
    });

    it('lone surrogates are replaced by U+FFFD (as TextEncoder does): the same embedding as with U+FFFD', async () => {
      const texts = ['\ud800 a dog', 'a cat \udc00', '\udfff\ud800'];
      const replaced = texts.map((t) => t.replace(/[\ud800-\udfff]/g, '\ufffd'));
      const got = await clip.encodeText(texts);
      expectEmbedding(got, 3);
      expect(maxAbsDiff(got.data, (await clip.encodeText(replaced)).data)).toBe(0);
    });

    it('1 MB of characters: ERR_TEXT_TOO_LONG, or an embedding with truncate', async () => {
      const rng = new Rng(9);
      const alphabet = ['a', 'b', ' ', 'é', '字', '🙂', '-', '.', '\u0301'];
      const noise = Array.from({ length: 1 << 20 }, () => alphabet[rng.int(alphabet.length)]!).join('');
      const oneWord = 'x'.repeat(1 << 20); // one pre-token of 1 M characters: worst case for BPE
      for (const text of [noise, oneWord]) {
        expect(await codeOf(clip.encodeText([text]))).toBe('ERR_TEXT_TOO_LONG');
        expectEmbedding(await clip.encodeText([text], { truncate: true }));
      }
    });
  });
});
