/**
 * File-system helpers used across the package: the one atomic write (a reader never sees a half-written file,
 * and a crash leaves the old file or the new one, never a mix), and the package root.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IpclipError } from './errors.js';

/** What {@link writeFileAtomic} writes: text (UTF-8), bytes, or a list of byte chunks written in order. */
export type FileContent = string | Uint8Array | readonly Uint8Array[];

function chunksOf(data: FileContent): readonly Uint8Array[] {
  if (typeof data === 'string') return [Buffer.from(data, 'utf8')];
  return data instanceof Uint8Array ? [data] : data;
}

/** A temporary name beside `file` (same folder, so the rename stays on one file system), ending in `.tmp`. */
function tempNameFor(file: string): string {
  return join(dirname(file), `.${basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

function ioError(file: string, what: string | undefined, err: unknown): IpclipError {
  const code = (err as NodeJS.ErrnoException).code;
  return new IpclipError('ERR_IO', `cannot write ${what ? `${what} ` : ''}${file} (${code ? `${code}: ` : ''}${(err as Error).message})`, { cause: err });
}

/**
 * Writes `data` to `file` atomically: into a temporary file beside it, flushed to disk (fsync), then renamed
 * over `file`; the folder is synced too where the file system allows. On failure the temporary file is removed
 * and the old `file`, if any, is left as it was.
 * @param what names the file in the error message, e.g. `'the report'`.
 * @throws IpclipError `ERR_IO` (disk full, permissions, missing folder).
 */
export async function writeFileAtomic(file: string, data: FileContent, what?: string): Promise<void> {
  const tmp = tempNameFor(file);
  let fh: FileHandle | undefined;
  try {
    fh = await open(tmp, 'wx');
    for (const chunk of chunksOf(data)) {
      let done = 0;
      while (done < chunk.length) done += (await fh.write(chunk, done, chunk.length - done)).bytesWritten;
    }
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, file);
  } catch (err) {
    if (fh) await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw ioError(file, what, err);
  }
  // Make the rename itself durable; some file systems refuse to fsync a folder, which is harmless.
  try {
    const d = await open(dirname(file), 'r');
    await d.sync().catch(() => undefined);
    await d.close();
  } catch { /* best effort */ }
}

/** Synchronous {@link writeFileAtomic}, for the few callers that cannot await (same guarantees). */
export function writeFileAtomicSync(file: string, data: FileContent, what?: string): void {
  const tmp = tempNameFor(file);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx');
    for (const chunk of chunksOf(data)) {
      let done = 0;
      while (done < chunk.length) done += writeSync(fd, chunk, done, chunk.length - done);
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, file);
  } catch (err) {
    if (fd !== undefined) { try { closeSync(fd); } catch { /* already failing */ } }
    try { unlinkSync(tmp); } catch { /* nothing to clean up */ }
    throw ioError(file, what, err);
  }
  try {
    const d = openSync(dirname(file), 'r');
    try { fsyncSync(d); } catch { /* best effort */ }
    closeSync(d);
  } catch { /* best effort */ }
}

let root: string | undefined;

/**
 * The package root: the nearest folder above this module holding package.json (the same from lib/ under a
 * test runner and from dist/ when installed).
 * @throws IpclipError `ERR_FILE_NOT_FOUND` when there is none (a copied-out module).
 */
export function packageRoot(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return (root = dir);
    const up = dirname(dir);
    if (up === dir) throw new IpclipError('ERR_FILE_NOT_FOUND', 'cannot find the ipclip package root (no package.json above this module)');
    dir = up;
  }
}
