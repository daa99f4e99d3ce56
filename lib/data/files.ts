/**
 * Image files named on a command line or given to a streaming classifier: files as given, folders walked
 * recursively for image files, and glob patterns (`data/*\/*.png`, `**\/*.jpg`) expanded with tinyglobby. The
 * result is in one stable order (code-unit order of the paths), so two runs list the same files alike.
 */
import { readdir, stat } from 'node:fs/promises';
import { extname, isAbsolute, join } from 'node:path';
import { glob, isDynamicPattern } from 'tinyglobby';
import { IpclipError, check } from '../core/errors.js';
import { IMAGE_EXTENSIONS } from './dataset.js';

function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Image files under `dir` (recursively, hidden entries skipped), sorted. */
async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true });
  for (const e of entries.sort((a, b) => byCodeUnit(a.name, b.name))) {
    if (e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else if ((e.isFile() || e.isSymbolicLink()) && IMAGE_EXTENSIONS.has(extname(e.name).toLowerCase())) out.push(p);
  }
  return out;
}

/**
 * The image files `specs` name, in order of the specs and sorted within each: a file as given (whatever its
 * extension), a folder's image files (by extension, recursively), or the files a glob pattern matches. A spec that
 * names nothing is `ERR_FILE_NOT_FOUND`; a file listed twice is kept once (its first place).
 * @throws IpclipError `ERR_FILE_NOT_FOUND`, `ERR_EMPTY_INPUT` (no specs), `ERR_INVALID_ARGUMENT`.
 */
export async function listImageFiles(specs: string | readonly string[]): Promise<string[]> {
  const list = typeof specs === 'string' ? [specs] : specs;
  check(Array.isArray(list) && list.every((s) => typeof s === 'string' && s.length > 0), 'listImageFiles: expected paths, folders or glob patterns');
  if (list.length === 0) throw new IpclipError('ERR_EMPTY_INPUT', 'no images given');
  const seen = new Set<string>();
  const out: string[] = [];
  for (const spec of list) {
    let files: string[];
    const st = await stat(spec).catch(() => null);
    if (st?.isDirectory()) {
      files = await walk(spec);
      if (files.length === 0) throw new IpclipError('ERR_FILE_NOT_FOUND', `no image files in the folder ${spec} (looked for ${[...IMAGE_EXTENSIONS].join(', ')})`);
    } else if (st) {
      files = [spec];
    } else if (isDynamicPattern(spec)) {
      files = (await glob(spec, { onlyFiles: true, dot: false, expandDirectories: false, absolute: isAbsolute(spec) })).sort(byCodeUnit);
      if (files.length === 0) throw new IpclipError('ERR_FILE_NOT_FOUND', `no files match ${spec}`);
    } else {
      throw new IpclipError('ERR_FILE_NOT_FOUND', `image not found: ${spec}`);
    }
    for (const f of files) if (!seen.has(f)) { seen.add(f); out.push(f); }
  }
  return out;
}
