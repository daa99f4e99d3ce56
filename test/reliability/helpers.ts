// Helpers of the reliability tests: error codes of rejected calls, byte-level surgery on safetensors files, and a
// fresh dist/ for tests that run the `ipclip` command.
import { readFileSync, writeFileSync } from 'node:fs';
import { expect } from 'vitest';
import { IpclipError } from '../../lib/core/errors.js';

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

export { ensureDist } from '../helpers/dist.js';
