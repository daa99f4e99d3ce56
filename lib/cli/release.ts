/**
 * `ipclip import-release`: converts the authors' release checkpoint (Dassl `model.pth.tar-N`, or its state dict as
 * safetensors) into an ipclip checkpoint, checked against the CLIP and class list it was trained with.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { DomainDataset } from '../data/dataset.js';
import { IpclipError } from '../core/errors.js';
import { importReleaseCheckpoint } from '../ipclip/release.js';
import { UsageError, bool, list, str, type Command, type Io, type Parsed } from './args.js';
import { CLIP_FLAGS, JSON_FLAG, loadClipFromFlags, printJson } from './common.js';

/**
 * `--classes`: names separated by commas; or a text file with one name per line (or a JSON array); or a domain
 * folder (`<data>/<domain>`, its class folders as `train` names them).
 */
export async function classesFromFlag(p: Parsed): Promise<string[]> {
  const given = list(p, 'classes');
  if (given === undefined) throw new UsageError('--classes is required (the class names in the release\'s order: a,b,… or a file or a domain folder)');
  if (given.length === 1 && existsSync(given[0]!)) {
    const path = given[0]!;
    if (statSync(path).isDirectory()) {
      const ds = await DomainDataset.fromFolder(dirname(path), { domain: basename(path) });
      return [...ds.classNames];
    }
    const text = readFileSync(path, 'utf8');
    if (text.trimStart().startsWith('[')) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new IpclipError('ERR_BAD_FILE', `${path}: not a valid JSON array of class names`);
      }
      if (!Array.isArray(parsed) || !parsed.every((c) => typeof c === 'string')) {
        throw new IpclipError('ERR_BAD_FILE', `${path}: not a JSON array of class names`);
      }
      return parsed as string[];
    }
    return text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length > 0);
  }
  return given;
}

/** `ipclip import-release`. */
export const importReleaseCommand: Command = {
  name: 'import-release',
  summary: "Convert the authors' release checkpoint (model.pth.tar-N or its state dict as safetensors) to ipclip's format.",
  usage: 'import-release <file> --classes a,b,… [--clip PATH] [--out FILE] [--json]',
  positionals: true,
  flags: {
    classes: { type: 'string', value: 'names', help: "class names in the release's label order: a,b,… or a file (one per line) or a domain folder" },
    out: { type: 'string', value: 'file', help: 'checkpoint to write (default: <file>.ipclip.safetensors)' },
    seed: { type: 'string', value: 'n', help: 'seed of the enhancement module, which the release file lacks (default 0)' },
    ...CLIP_FLAGS,
    ...JSON_FLAG,
  },
  details: 'The torch.save file is read without Python by a restricted reader: only tensors and plain values, nothing ' +
    'is executed. The stored token_prefix / token_suffix are compared with the given CLIP and classes; a mismatch ' +
    "says which of the two differs. The release's unused style_mapping_tokens are dropped.",
  async run(p: Parsed, io: Io): Promise<number> {
    if (p.positionals.length !== 1) throw new UsageError('give exactly one release checkpoint: ipclip import-release <file> --classes …');
    const file = p.positionals[0]!;
    if (!existsSync(file)) throw new IpclipError('ERR_FILE_NOT_FOUND', `release checkpoint not found: ${file}`);
    const classNames = await classesFromFlag(p);
    const seedText = str(p, 'seed');
    const seed = seedText === undefined ? 0 : Number(seedText);
    if (!Number.isSafeInteger(seed) || seed < 0) throw new UsageError(`--seed must be a non-negative integer, got '${seedText}'`);
    const out = str(p, 'out') ?? `${file}.ipclip.safetensors`;
    const clip = await loadClipFromFlags(p);
    try {
      const imported = await importReleaseCheckpoint(file, { clip, classNames, seed });
      using prompt = imported.prompt;
      await prompt.save(out);
      const summary = {
        out, source: file, format: imported.format, ...(imported.epoch !== undefined ? { epoch: imported.epoch } : {}),
        classNames: [...prompt.classNames], clip: clip.info.fingerprint, ignored: imported.ignored,
      };
      if (bool(p, 'json')) {
        printJson(io, summary);
        return 0;
      }
      io.stdout.write(`imported ${file} (${imported.format === 'torch' ? 'torch.save' : 'safetensors'}` +
        `${imported.epoch !== undefined ? `, epoch ${imported.epoch}` : ''}): ${prompt.numClasses} classes on CLIP ${clip.info.fingerprint}` +
        `${imported.ignored.length ? `; ignored ${imported.ignored.length} unused release tensors (style_mapping_tokens)` : ''}\n` +
        `wrote ${out}\n`);
      return 0;
    } finally {
      clip.dispose();
    }
  },
};
