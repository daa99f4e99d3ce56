// Helpers of the reliability tests: error codes of rejected calls, byte-level surgery on safetensors files, and a
// fresh dist/ for tests that run the `ipclip` command.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { IpclipError } from '../../lib/errors.js';

/** The IpclipError code a promise (or a throwing function) ends with; fails the test if it resolves or throws anything else. */
export async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string> {
  const err = await (typeof p === 'function' ? Promise.resolve().then(p) : p).then(() => null, (e: unknown) => e);
  expect(err, 'expected a rejection with an IpclipError').toBeInstanceOf(IpclipError);
  return (err as IpclipError).code;
}

/** A safetensors file split into its JSON header (parsed) and its data section. */
export interface RawSafetensors {
  header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  data: Buffer;
}

/** Splits a safetensors file by hand (independently of the reader under test). */
export function splitSafetensors(file: string): RawSafetensors {
  const bytes = readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  return { header: JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')), data: bytes.subarray(8 + n) };
}

/** Writes a header and data section as a safetensors file (header length little-endian, no padding needed). */
export function joinSafetensors(file: string, header: unknown, data: Buffer): void {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(file, Buffer.concat([len, json, data]));
}

/** The header entry of a tensor (throws if absent). */
export function entry(raw: RawSafetensors, name: string): { dtype: string; shape: number[]; data_offsets: [number, number] } {
  const e = raw.header[name];
  if (!e || !('data_offsets' in e)) throw new Error(`no tensor ${name}`);
  return e as { dtype: string; shape: number[]; data_offsets: [number, number] };
}

/** Newest modification time (ms) of any file under `dir`. */
function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/**
 * Compiles lib/ into dist/ (`tsc -p tsconfig.build.json`, as test/cli.test.ts does) when dist/cli.js is missing
 * or older than a source file: bin/ipclip.js runs dist/, so a stale one would test old code.
 */
export function ensureDist(root: string): void {
  const cli = join(root, 'dist', 'cli.js');
  if (existsSync(cli) && statSync(cli).mtimeMs >= newest(join(root, 'lib'))) return;
  // tsc's exit status is not checked: errors in files still being written elsewhere must not block the test;
  // what matters is that dist/cli.js was emitted.
  spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'ignore' });
  if (!existsSync(cli)) throw new Error('dist/cli.js was not produced by `tsc -p tsconfig.build.json`');
}
