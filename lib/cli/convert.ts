/**
 * `ipclip convert`: a `torch.save` file (`.pt`, `.pth`, `.bin`) to safetensors, read without running any code.
 */
import { existsSync } from 'node:fs';
import { IpclipError } from '../core/errors.js';
import { convertToSafetensors } from '../io/convert.js';
import { UsageError, bool, type Command, type Io, type Parsed } from './args.js';
import { JSON_FLAG, printJson } from './common.js';

/** `ipclip convert`. */
export const convertCommand: Command = {
  name: 'convert',
  summary: 'Convert a torch.save file (.pt/.pth/.bin state dict) to safetensors, without running its code.',
  usage: 'convert <model.pt> <model.safetensors> [--force] [--json]',
  positionals: true,
  flags: {
    force: { type: 'boolean', help: 'replace the output file if it exists' },
    torchscript: { type: 'boolean', help: "also convert a TorchScript archive (OpenAI's .pt), read with libtorch's loader: trusted files only" },
    ...JSON_FLAG,
  },
  details: `The file is read by ipclip's restricted reader: tensors and plain values only, nothing imported or executed
(a file that tries is refused). A checkpoint holding its weights under 'state_dict' gives that state dict; the
output is written atomically. float16 and bfloat16 tensors become float32. TorchScript archives (torch.jit.save,
as OpenAI ships CLIP: ViT-B-16.pt, ...) are not torch.save files: with --torchscript their parameters and buffers
are read with libtorch's TorchScript loader, the one --clip uses for them (no Python runs and no method is called,
but the file's pickles are unpickled and its code compiled: convert only files from a source you trust); the
result loads as OpenAI safetensors.`,
  async run(p: Parsed, io: Io): Promise<number> {
    if (p.positionals.length !== 2) throw new UsageError('give the input and the output: ipclip convert <model.pt> <model.safetensors>');
    const [input, output] = p.positionals as [string, string];
    if (!existsSync(input)) throw new IpclipError('ERR_FILE_NOT_FOUND', `not found: ${input}`);
    if (existsSync(output) && !bool(p, 'force')) {
      throw new IpclipError('ERR_INVALID_ARGUMENT', `${output} exists; pass --force to replace it`);
    }
    const r = await convertToSafetensors(input, output, { torchScript: bool(p, 'torchscript') });
    if (bool(p, 'json')) {
      printJson(io, { input, output, ...r });
      return 0;
    }
    io.stdout.write(`wrote ${output}: ${r.tensors} tensors${r.reader === 'torchscript' ? ' (read with the TorchScript loader)' : ''}` +
      `${r.widened.length ? `, ${r.widened.length} widened from 16-bit to float32` : ''}` +
      `${r.dropped ? `, ${r.dropped} outside the state dict left out` : ''}\n`);
    return 0;
  },
};
