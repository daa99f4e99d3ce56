import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { IpclipError } from '../lib/core/errors.js';
import {
  bfloat16ToFloat, halfToFloat, readSafetensors, writeSafetensors,
} from '../lib/io/safetensors.js';
import { CLIP_TINY, HAVE_SHARED, readGolden } from './helpers/fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'ipclip-st-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A safetensors file from a literal header and data bytes (for hostile cases). */
function rawFile(name: string, header: string | object, data: Buffer = Buffer.alloc(0), lengthOverride?: bigint): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(json.length));
  const path = join(dir, name);
  writeFileSync(path, Buffer.concat([len, json, data]));
  return path;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(IpclipError);
  return (err as IpclipError).code;
}

describe('half-precision conversions', () => {
  it('decodes binary16 and bfloat16 bit patterns', () => {
    expect(halfToFloat(0x3c00)).toBe(1);
    expect(halfToFloat(0xc000)).toBe(-2);
    expect(halfToFloat(0x7bff)).toBe(65504);
    expect(halfToFloat(0x0001)).toBe(2 ** -24);
    expect(halfToFloat(0x7c00)).toBe(Infinity);
    expect(halfToFloat(0x7e00)).toBeNaN();
    expect(bfloat16ToFloat(0x3f80)).toBe(1);
    expect(bfloat16ToFloat(0xc040)).toBe(-3);
  });
});

describe('writeSafetensors / readSafetensors', () => {
  it('round-trips every writable dtype, shapes and metadata', async () => {
    const path = join(dir, 'round.safetensors');
    const tensors = {
      'b.f32': { data: Float32Array.from([1.5, -2, 3.25, 1e-30, 7, 8]), shape: [2, 3] },
      'a.i64': { data: BigInt64Array.from([1n, -(2n ** 62n), 3n]), shape: [3] },
      'c.i32': { data: Int32Array.from([-7, 2 ** 31 - 1]), shape: [1, 2] },
      'd.u8': { data: Uint8Array.from([0, 255, 9]), shape: [3] },
      'e.f64': { data: Float64Array.from([Math.PI]), shape: [] },
      'f.empty': { data: new Float32Array(0), shape: [0, 4] },
    };
    await writeSafetensors(path, tensors, { texts: '["x"]', note: 'é' });
    const back = await readSafetensors(path);
    expect(back.metadata).toEqual({ texts: '["x"]', note: 'é' });
    expect(Object.keys(back.tensors).sort()).toEqual(Object.keys(tensors).sort());
    for (const [name, t] of Object.entries(tensors)) {
      expect(back.tensors[name]!.shape).toEqual(t.shape);
      expect(back.tensors[name]!.data.constructor).toBe(t.data.constructor);
      expect(Array.from(back.tensors[name]!.data as ArrayLike<number>)).toEqual(Array.from(t.data as ArrayLike<number>));
    }
    expect(back.tensors['a.i64']!.dtype).toBe('I64');
    // Layout: sorted names with consecutive offsets, and a header padded so data starts 8-byte aligned.
    const bytes = readFileSync(path);
    const len = Number(bytes.readBigUInt64LE(0));
    expect(len % 8).toBe(0);
    const header = JSON.parse(bytes.subarray(8, 8 + len).toString()) as Record<string, { data_offsets: number[] }>;
    const names = Object.keys(header).filter((k) => k !== '__metadata__');
    expect(names).toEqual([...names].sort());
    expect(header['a.i64']!.data_offsets).toEqual([0, 24]);
    expect(bytes.length).toBe(8 + len + 24 + 24 + 8 + 3 + 8 + 0);
  });

  it('writes views of larger buffers by their own bytes', async () => {
    const big = Float32Array.from([9, 1, 2, 3, 9]);
    const path = join(dir, 'view.safetensors');
    await writeSafetensors(path, { v: { data: big.subarray(1, 4), shape: [3] } });
    expect(Array.from((await readSafetensors(path)).tensors.v!.data as Float32Array)).toEqual([1, 2, 3]);
  });

  it('rejects bad tensors with ERR_INVALID_ARGUMENT and writes nothing', async () => {
    const path = join(dir, 'invalid.safetensors');
    expect(await codeOf(writeSafetensors(path, { x: { data: new Float32Array(5), shape: [2, 3] } }))).toBe('ERR_INVALID_ARGUMENT');
    expect(await codeOf(writeSafetensors(path, { x: { data: [1, 2] as unknown as Float32Array, shape: [2] } }))).toBe('ERR_INVALID_ARGUMENT');
    expect(await codeOf(writeSafetensors(path, { __metadata__: { data: new Float32Array(1), shape: [1] } }))).toBe('ERR_INVALID_ARGUMENT');
    expect(await codeOf(writeSafetensors(path, { x: { data: new Float32Array(1), shape: [1] } }, { k: 3 as unknown as string }))).toBe('ERR_INVALID_ARGUMENT');
    expect(readdirSync(dir).filter((f) => f.startsWith('invalid') || f.includes('invalid.safetensors'))).toEqual([]);
  });

  it('fails with ERR_IO when the folder is missing, leaving no temporary file', async () => {
    const missing = join(dir, 'no-such-folder', 'x.safetensors');
    expect(await codeOf(writeSafetensors(missing, { x: { data: new Float32Array(1), shape: [1] } }))).toBe('ERR_IO');
  });

  it('keeps the old file intact and leaves no temporary file when the write fails', async () => {
    // A read-only folder refuses the temporary file. Root ignores permissions, so there the write succeeds:
    // then the old content must be replaced whole instead (never a mix).
    const ro = mkdtempSync(join(dir, 'ro-'));
    const path = join(ro, 'w.safetensors');
    await writeSafetensors(path, { x: { data: Float32Array.from([1, 2]), shape: [2] } });
    chmodSync(ro, 0o555);
    try {
      const result = await writeSafetensors(path, { x: { data: Float32Array.from([3, 4, 5]), shape: [3] } })
        .then(() => 'written', (e: IpclipError) => e.code);
      const now = Array.from((await readSafetensors(path)).tensors.x!.data as Float32Array);
      if (result === 'written') expect(now).toEqual([3, 4, 5]);
      else {
        expect(result).toBe('ERR_IO');
        expect(now).toEqual([1, 2]);
      }
      expect(readdirSync(ro)).toEqual(['w.safetensors']);
    } finally {
      chmodSync(ro, 0o755);
    }
  });

  it('cleans up the temporary file when the final rename fails', async () => {
    // The target is a non-empty folder: the temporary file is written, then rename() fails.
    const target = join(dir, 'is-a-folder.safetensors');
    mkdirSync(join(target, 'child'), { recursive: true });
    expect(await codeOf(writeSafetensors(target, { x: { data: new Float32Array(2), shape: [2] } }))).toBe('ERR_IO');
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(readdirSync(target)).toEqual(['child']);
  });
});

describe('readSafetensors on hostile files', () => {
  const good = { x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };

  it('a missing file is ERR_FILE_NOT_FOUND', async () => {
    expect(await codeOf(readSafetensors(join(dir, 'nope.safetensors')))).toBe('ERR_FILE_NOT_FOUND');
  });

  it.each([
    ['zero-byte', () => { const p = join(dir, 'zero.safetensors'); writeFileSync(p, ''); return p; }],
    ['shorter than the length field', () => { const p = join(dir, 'short.safetensors'); writeFileSync(p, Buffer.from([1, 0, 0])); return p; }],
    ['truncated data', () => rawFile('trunc.safetensors', good, Buffer.alloc(4))],
    ['oversized header length', () => rawFile('huge.safetensors', good, Buffer.alloc(8), 2n ** 60n)],
    ['header length past the end', () => rawFile('past.safetensors', good, Buffer.alloc(8), 10_000n)],
    ['header not JSON', () => rawFile('notjson.safetensors', '{"x": [', Buffer.alloc(8))],
    ['offsets past the end', () => rawFile('offs.safetensors', { x: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }, Buffer.alloc(8))],
    ['size not matching dtype × shape', () => rawFile('size.safetensors', { x: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, Buffer.alloc(8))],
    ['overlapping tensors', () => rawFile('overlap.safetensors', {
      x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, y: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
    }, Buffer.alloc(12))],
    ['unknown dtype', () => rawFile('dtype.safetensors', { x: { dtype: 'Q4', shape: [2], data_offsets: [0, 8] } }, Buffer.alloc(8))],
    ['a folder', () => dir],
  ])('%s is ERR_BAD_FILE', async (_name, make) => {
    expect(await codeOf(readSafetensors(make()))).toBe('ERR_BAD_FILE');
  });

});

describe.skipIf(!HAVE_SHARED)('reading the shared fixtures', () => {
  it('golden.safetensors has the documented tensors, dtypes and metadata', async () => {
    const g = await readGolden();
    expect(g.tensors.images!.shape).toEqual([4, 3, 32, 32]);
    expect(g.tensors.text_tokens!.dtype).toBe('I64');
    expect(g.tensors.text_tokens!.data).toBeInstanceOf(BigInt64Array);
    expect(g.tensors.image_layers!.shape).toEqual([3, 4, 17, 128]);
    expect(JSON.parse(g.metadata.texts!)).toHaveLength(5);
    // Every token row starts with SOT (49406) and holds exactly one EOT (49407).
    const ids = g.tensors.text_tokens!.data as BigInt64Array;
    for (let r = 0; r < 5; r++) {
      const row = Array.from(ids.subarray(r * 77, (r + 1) * 77), Number);
      expect(row[0]).toBe(49406);
      expect(row.filter((v) => v === 49407)).toHaveLength(1);
    }
  });

  it('fp16 weights widen to float32', async () => {
    const w = await readSafetensors(CLIP_TINY.openaiSafetensors);
    const conv = w.tensors['visual.conv1.weight']!;
    expect(conv.dtype).toBe('F16');
    expect(conv.data).toBeInstanceOf(Float32Array);
    expect(conv.shape).toEqual([128, 3, 8, 8]);
    // Rewriting what was read gives the same values back (F16 → F32 is exact).
    const path = join(dir, 'rewritten.safetensors');
    await writeSafetensors(path, { conv: { data: conv.data, shape: conv.shape } });
    expect((await readSafetensors(path)).tensors.conv!.data).toEqual(conv.data);
  });
});
