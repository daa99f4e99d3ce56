/**
 * `.pt` → safetensors: a `torch.save` file (a state dict, or a checkpoint holding one under `state_dict`) read by
 * the addon's restricted reader (tensors and plain values only, nothing imported or executed) and written as
 * safetensors, atomically. Tensor names are the state dict's keys; half-precision tensors are widened to float32
 * (the writer has no 16-bit float types), BOOL is written as U8, every other dtype is kept.
 */
import { resolve } from 'node:path';
import { IpclipError, check } from '../core/errors.js';
import { loadNative } from '../native/load.js';
import { callNative } from '../native/errors.js';
import { bfloat16ToFloat, halfToFloat, writeSafetensors, type TensorData, type TensorToWrite } from './safetensors.js';

/**
 * What {@link convertToSafetensors} wrote.
 * @category CLIP
 */
export interface ConversionResult {
  /** Tensors written, by name. */
  tensors: number;
  /** Names of F16/BF16 tensors widened to float32. */
  widened: string[];
  /** Tensors of the file left out (outside the state dict: optimiser state and the like). */
  dropped: number;
  /** How the file was read: the restricted `torch.save` reader, or libtorch's TorchScript loader (`torchScript`). */
  reader: 'restricted' | 'torchscript';
}

/**
 * Options of {@link convertToSafetensors}.
 * @category CLIP
 */
export interface ConvertOptions {
  /**
   * Also convert a TorchScript archive (`torch.jit.save`, as OpenAI ships CLIP) by reading its parameters and
   * buffers with libtorch's TorchScript loader, the one `Clip.load` uses for such files: no Python runs and none of
   * its methods is called, but its pickles are unpickled and its code compiled, so the file must come from a
   * source you trust. Default false: a TorchScript archive is refused, naming this option.
   */
  torchScript?: boolean;
}

/** The raw little-endian bytes of one tensor as a typed array of its dtype (F16/BF16 widened). */
function typed(data: Buffer, dtype: string, name: string): TensorData {
  const own = new Uint8Array(data.length);
  own.set(data); // an own, aligned buffer before viewing it
  switch (dtype) {
    case 'F32': return new Float32Array(own.buffer);
    case 'F64': return new Float64Array(own.buffer);
    case 'F16': return Float32Array.from(new Uint16Array(own.buffer), halfToFloat);
    case 'BF16': return Float32Array.from(new Uint16Array(own.buffer), bfloat16ToFloat);
    case 'I64': return new BigInt64Array(own.buffer);
    case 'I32': return new Int32Array(own.buffer);
    case 'I16': return new Int16Array(own.buffer);
    case 'I8': return new Int8Array(own.buffer);
    case 'U8': case 'BOOL': return own;
    default: throw new IpclipError('ERR_BAD_WEIGHTS', `tensor '${name}' has dtype ${dtype}, which safetensors cannot hold here`);
  }
}

/**
 * Converts a `torch.save` file (`.pt`, `.pth`, `.bin`: a state dict, or a dict holding one under `state_dict`,
 * `DataParallel`'s `module.` prefix removed) to a safetensors file at `out`, written atomically (the old file, if
 * any, stays intact on failure). TorchScript archives (`torch.jit.save`, e.g. OpenAI's CLIP releases) cannot be
 * read without running libtorch's TorchScript loader and are refused with a message saying what to do.
 * @throws IpclipError `ERR_FILE_NOT_FOUND`, `ERR_BAD_FILE` (not a torch.save file, a TorchScript archive, a refused
 * pickle), `ERR_BAD_WEIGHTS` (no tensors, duplicate names), `ERR_INVALID_ARGUMENT` (`out` is the input), `ERR_IO`.
 * @category CLIP
 */
export async function convertToSafetensors(file: string, out: string, options: ConvertOptions = {}): Promise<ConversionResult> {
  check(typeof file === 'string' && file.length > 0 && typeof out === 'string' && out.length > 0, 'convertToSafetensors: expected (input, output) paths');
  check(resolve(file) !== resolve(out), 'convertToSafetensors: the output must be another file than the input');
  check(options !== null && typeof options === 'object', 'convertToSafetensors: options must be an object');
  check(options.torchScript === undefined || typeof options.torchScript === 'boolean', 'convertToSafetensors: torchScript must be a boolean');
  let raw;
  let reader: ConversionResult['reader'] = 'restricted';
  try {
    raw = await callNative(() => loadNative().readTorchCheckpoint(file));
  } catch (err) {
    if (!(err instanceof IpclipError && err.code === 'ERR_BAD_FILE' && /TorchScript/.test(err.message))) throw err;
    if (options.torchScript !== true) {
      throw new IpclipError('ERR_BAD_FILE', `${file} is a TorchScript archive (torch.jit.save, as OpenAI ships CLIP): converting it means ` +
        'reading it with libtorch\'s TorchScript loader, which trusts the file (no Python runs, but its pickles are unpickled and its ' +
        'code compiled). If it comes from a source you trust, pass torchScript: true (ipclip convert --torchscript), or load it ' +
        'directly with Clip.load / --clip', { cause: err });
    }
    raw = await callNative(() => loadNative().readTorchScriptArchive(file));
    reader = 'torchscript';
  }
  const nested = raw.tensors.some((t) => t.path[0] === 'state_dict' && t.path.length >= 2);
  const picked = raw.tensors.filter((t) => (nested ? t.path[0] === 'state_dict' && t.path.length >= 2 : true));
  if (picked.length === 0) throw new IpclipError('ERR_BAD_WEIGHTS', `${file}: no tensors to convert`);
  let names = picked.map((t) => (nested ? t.path.slice(1) : t.path).join('.'));
  if (names.every((n) => n.startsWith('module.'))) names = names.map((n) => n.slice('module.'.length));
  const tensors: Record<string, TensorToWrite> = Object.create(null) as Record<string, TensorToWrite>;
  const widened: string[] = [];
  picked.forEach((t, i) => {
    const name = names[i]!;
    if (name in tensors) throw new IpclipError('ERR_BAD_WEIGHTS', `${file}: tensor '${name}' appears twice`);
    if (t.dtype === 'F16' || t.dtype === 'BF16') widened.push(name);
    tensors[name] = { data: typed(t.data, t.dtype, name), shape: [...t.shape] };
  });
  await writeSafetensors(out, tensors, { format: 'pt' });
  return { tensors: picked.length, widened, dropped: raw.tensors.length - picked.length, reader };
}
