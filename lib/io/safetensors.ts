/**
 * Safetensors files: reading through the native hostile-file reader (every offset, size and overlap checked), and
 * writing in TypeScript, atomically (a temporary file beside the target, fsync, rename).
 *
 * Format: 8 bytes little-endian header length N, N bytes of JSON header
 * (`{"__metadata__": {k: v}, name: {dtype, shape, data_offsets: [begin, end]}, ...}`), then the data section.
 */
import { open } from 'node:fs/promises';
import { endianness } from 'node:os';
import { IpclipError, check } from '../core/errors.js';
import { writeFileAtomic } from '../core/fs.js';
import { loadNative } from '../native/load.js';
import { callNative } from '../native/errors.js';
import type { SafetensorsDtype } from '../native/types.js';

export type { SafetensorsDtype } from '../native/types.js';

/**
 * Typed arrays tensors are read into and written from.
 * @category CLIP
 */
export type TensorData =
  | Float32Array | Float64Array | Int32Array | Int16Array | Int8Array | Uint8Array | BigInt64Array;

/**
 * One tensor of a safetensors file. F16 and BF16 are widened to Float32Array; `dtype` keeps the file's type.
 * @category CLIP
 */
export interface SafetensorsTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  data: TensorData;
}

/**
 * A whole safetensors file.
 * @category CLIP
 */
export interface SafetensorsContent {
  tensors: Record<string, SafetensorsTensor>;
  metadata: Record<string, string>;
}

/**
 * A tensor to write: its data type decides the dtype (Float32Array → F32, BigInt64Array → I64, …).
 * @category CLIP
 */
export interface TensorToWrite {
  data: TensorData;
  shape: readonly number[];
}

// ---------------------------------------------------------------------------------------------------------------
// Half-precision conversions

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE binary16 bits → number. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // subnormal (and zero)
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** bfloat16 bits → number (the upper half of a float32). */
export function bfloat16ToFloat(b: number): number {
  u32[0] = (b & 0xffff) << 16;
  return f32[0]!;
}

function widen(bytes: Buffer, dtype: 'F16' | 'BF16'): Float32Array {
  const n = bytes.length / 2;
  const out = new Float32Array(n);
  const conv = dtype === 'F16' ? halfToFloat : bfloat16ToFloat;
  for (let i = 0; i < n; i++) out[i] = conv(bytes.readUInt16LE(2 * i));
  return out;
}

/** Copies raw little-endian bytes into a fresh (hence aligned) typed array of the dtype. */
function toTyped(bytes: Buffer, dtype: SafetensorsDtype): TensorData {
  // Node Buffers may sit at any offset of a shared pool: copy into an own ArrayBuffer before viewing it.
  const own = (): ArrayBuffer => {
    const ab = new ArrayBuffer(bytes.length);
    new Uint8Array(ab).set(bytes);
    return ab;
  };
  switch (dtype) {
    case 'F32': return new Float32Array(own());
    case 'F64': return new Float64Array(own());
    case 'F16': case 'BF16': return widen(bytes, dtype);
    case 'I64': return new BigInt64Array(own());
    case 'I32': return new Int32Array(own());
    case 'I16': return new Int16Array(own());
    case 'I8': return new Int8Array(own());
    case 'U8': case 'BOOL': return new Uint8Array(own());
    default: throw new IpclipError('ERR_BAD_FILE', `unsupported safetensors dtype ${String(dtype)}`);
  }
}

function assertLittleEndian(): void {
  if (endianness() !== 'LE') throw new IpclipError('ERR_NATIVE', 'safetensors I/O needs a little-endian machine');
}

// ---------------------------------------------------------------------------------------------------------------
// Reading

/**
 * Reads a safetensors file. The file is treated as hostile: the native reader bounds the header, checks every
 * offset and size against the file and the dtype, and rejects overlaps. Rejects with `ERR_FILE_NOT_FOUND` or
 * `ERR_BAD_FILE` (the message names the problem).
 * @category CLIP
 */
export async function readSafetensors(path: string): Promise<SafetensorsContent> {
  check(typeof path === 'string' && path.length > 0, 'readSafetensors: path must be a non-empty string');
  assertLittleEndian();
  await refuseOtherFormats(path);
  const raw = await callNative(() => loadNative().readSafetensors(path));
  const tensors: Record<string, SafetensorsTensor> = {};
  for (const [name, t] of Object.entries(raw.tensors)) {
    tensors[name] = { dtype: t.dtype, shape: [...t.shape], data: toTyped(t.data, t.dtype) };
  }
  return { tensors, metadata: { ...raw.metadata } };
}

/** What a file that is not safetensors looks like, from its first bytes (null: nothing recognised). */
export function otherFormat(head: Buffer): string | null {
  const starts = (...b: number[]) => b.every((x, i) => head[i] === x);
  if (starts(0x50, 0x4b, 0x03, 0x04)) return 'a ZIP archive (a PyTorch .pt/.pth file: TorchScript or torch.save)';
  if (starts(0x80) && head.length > 1 && head[1]! <= 5) return 'a Python pickle (a legacy torch.save file)';
  if (starts(0x89, 0x50, 0x4e, 0x47)) return 'a PNG image';
  if (starts(0xff, 0xd8, 0xff)) return 'a JPEG image';
  if (starts(0x47, 0x49, 0x46, 0x38)) return 'a GIF image';
  if (starts(0x52, 0x49, 0x46, 0x46)) return 'a RIFF file (e.g. a WebP image)';
  if (starts(0x1f, 0x8b)) return 'a gzip file';
  if (head.length >= 8 && [...head.subarray(0, 8)].every((c) => c === 0x09 || c === 0x0a || c === 0x0d || (c >= 0x20 && c < 0x7f))) {
    return 'a text file';
  }
  return null;
}

/**
 * `ERR_BAD_FILE` saying "not a safetensors file" (and what it looks like) for a file whose first bytes are
 * another format's or whose 8-byte header length cannot be one (past the end of the file, or no JSON after it),
 * instead of the bare header length. Missing files and folders are left to the reader.
 */
async function refuseOtherFormats(path: string): Promise<void> {
  let head: Buffer;
  let size: number;
  try {
    const fh = await open(path, 'r');
    try {
      size = (await fh.stat()).size;
      if (size < 9) return;
      head = Buffer.alloc(9);
      await fh.read(head, 0, 9, 0);
    } finally {
      await fh.close();
    }
  } catch {
    return; // the native reader reports it (ERR_FILE_NOT_FOUND, a folder, ...)
  }
  const n = head.readBigUInt64LE(0);
  if (n <= BigInt(size - 8) && head[8] === 0x7b /* { */) return; // shaped like safetensors: the reader checks the rest
  const looks = otherFormat(head);
  if (looks) throw new IpclipError('ERR_BAD_FILE', `${path} is not a safetensors file: it looks like ${looks}`);
  {
    throw new IpclipError('ERR_BAD_FILE', `${path} is not a safetensors file (its first 8 bytes would be a header of ${n} bytes ` +
      `in a file of ${size}${head[8] !== 0x7b ? ', and no JSON header follows' : ''})`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Writing

function dtypeOf(data: TensorData, name: string): SafetensorsDtype {
  if (data instanceof Float32Array) return 'F32';
  if (data instanceof Float64Array) return 'F64';
  if (data instanceof BigInt64Array) return 'I64';
  if (data instanceof Int32Array) return 'I32';
  if (data instanceof Int16Array) return 'I16';
  if (data instanceof Int8Array) return 'I8';
  if (data instanceof Uint8Array) return 'U8';
  throw new IpclipError('ERR_INVALID_ARGUMENT', `writeSafetensors: tensor ${JSON.stringify(name)} data must be a typed array (Float32Array, Int32Array, BigInt64Array, Uint8Array, …)`);
}

/** Builds the file's header and data chunks; validates names, shapes and metadata. */
function encode(tensors: Record<string, TensorToWrite>, metadata: Record<string, string>): Buffer[] {
  check(tensors !== null && typeof tensors === 'object', 'writeSafetensors: tensors must be an object of { data, shape }');
  check(metadata !== null && typeof metadata === 'object', 'writeSafetensors: metadata must be an object of strings');
  const header: Record<string, unknown> = {};
  const meta = Object.entries(metadata);
  if (meta.length > 0) {
    for (const [k, v] of meta) check(typeof v === 'string', `writeSafetensors: metadata ${JSON.stringify(k)} must be a string`);
    header.__metadata__ = Object.fromEntries(meta.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }
  const chunks: Buffer[] = [];
  let offset = 0;
  // Sorted names make the file a function of its content (stable fingerprints and diffs).
  for (const name of Object.keys(tensors).sort()) {
    check(name.length > 0 && name !== '__metadata__', `writeSafetensors: invalid tensor name ${JSON.stringify(name)}`);
    const t = tensors[name]!;
    check(t !== null && typeof t === 'object', `writeSafetensors: tensor ${JSON.stringify(name)} must be { data, shape }`);
    const dtype = dtypeOf(t.data, name);
    check(Array.isArray(t.shape) && t.shape.length <= 8 && t.shape.every((d) => Number.isSafeInteger(d) && d >= 0),
      `writeSafetensors: tensor ${JSON.stringify(name)} shape must be at most 8 non-negative integers`);
    const count = t.shape.reduce((a, b) => a * b, 1);
    check(count === t.data.length,
      `writeSafetensors: tensor ${JSON.stringify(name)} has ${t.data.length} elements but shape [${t.shape.join(',')}] needs ${count}`);
    const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[name] = { dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  // Pad with spaces (valid JSON whitespace) so the data section starts 8-byte aligned.
  const jsonBytes = Buffer.byteLength(json);
  json += ' '.repeat((8 - (jsonBytes % 8)) % 8);
  const head = Buffer.alloc(8 + Buffer.byteLength(json));
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
  head.write(json, 8, 'utf8');
  return [head, ...chunks];
}

/**
 * Writes tensors (and optional string metadata) as a safetensors file, atomically: the content goes to a temporary
 * file in the same folder, is fsynced, then renamed over `path`. On failure the temporary file is removed and an
 * existing file at `path` is left intact. Names are sorted; the header is padded to 8 bytes.
 * Rejects with `ERR_INVALID_ARGUMENT` for bad tensors and `ERR_IO` when the write fails (missing folder,
 * permissions, disk full).
 * @category CLIP
 */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, TensorToWrite>,
  metadata: Record<string, string> = {},
): Promise<void> {
  check(typeof path === 'string' && path.length > 0, 'writeSafetensors: path must be a non-empty string');
  assertLittleEndian();
  const chunks = encode(tensors, metadata);
  await writeFileAtomic(path, chunks);
}
