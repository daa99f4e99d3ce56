// The package's one copy of each small helper: atomic write, package root, the validation vocabulary,
// similarity arithmetic and the schedule pieces. Expectations are hand-computed.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { IpclipError } from '../lib/core/errors.js';
import { packageRoot, writeFileAtomic, writeFileAtomicSync } from '../lib/core/fs.js';
import {
  assertNonEmptyStringList, assertOneOf, assertPlainObject, assertPositiveInteger, assertFiniteNumber, is, sameNames,
} from '../lib/core/is.js';
import { cosineAnneal, linearWarmup } from '../lib/core/schedule.js';
import { argmaxRows, clipLogits, softmax, softmaxRows } from '../lib/clip/similarity.js';
import { LOSS_TERMS } from '../lib/ipclip/loss-terms.js';

const dir = mkdtempSync(join(tmpdir(), 'ipclip-core-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function thrown(fn: () => unknown): IpclipError {
  try { fn(); } catch (e) { expect(e).toBeInstanceOf(IpclipError); return e as IpclipError; }
  throw new Error('expected a throw');
}

describe('writeFileAtomic', () => {
  it('writes text, bytes and chunk lists, replacing an existing file, and leaves no temporary file', async () => {
    const f = join(dir, 'a.txt');
    writeFileSync(f, 'old');
    await writeFileAtomic(f, 'new text');
    expect(readFileSync(f, 'utf8')).toBe('new text');
    await writeFileAtomic(f, [Buffer.from('ab'), Uint8Array.from([0x63])]);
    expect(readFileSync(f, 'utf8')).toBe('abc');
    writeFileAtomicSync(f, Buffer.from('sync'));
    expect(readFileSync(f, 'utf8')).toBe('sync');
    expect(readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('fails with ERR_IO, keeps the old file and removes its temporary file', async () => {
    // A folder where the file should be: the rename over it fails after the temporary file was written.
    const target = join(dir, 'is-a-folder');
    mkdirSync(join(target, 'inside'), { recursive: true });
    const err = await writeFileAtomic(target, 'x', 'the thing').then(() => null, (e: unknown) => e as IpclipError);
    expect(err).toBeInstanceOf(IpclipError);
    expect(err!.code).toBe('ERR_IO');
    expect(err!.message).toContain('the thing');
    expect(existsSync(join(target, 'inside'))).toBe(true);
    expect(thrown(() => writeFileAtomicSync(target, 'x')).code).toBe('ERR_IO');
    expect(readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
    // A missing folder: nothing is created.
    const missing = join(dir, 'no', 'such', 'dir', 'f.txt');
    expect((await writeFileAtomic(missing, 'x').catch((e: IpclipError) => e))).toMatchObject({ code: 'ERR_IO' });
    expect(existsSync(join(dir, 'no'))).toBe(false);
  });

  it('packageRoot is the folder of the package.json named ipclip', () => {
    const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { name: string };
    expect(pkg.name).toBe('ipclip');
  });
});

describe('the validation vocabulary', () => {
  it('names the option, says what was expected and shows what came', () => {
    expect(thrown(() => assertPositiveInteger(0, 'epochs')).message).toBe('epochs must be a positive integer, got 0');
    expect(thrown(() => assertPositiveInteger(5, 'threads', 4)).message).toBe('threads must be an integer between 1 and 4, got 5');
    expect(thrown(() => assertFiniteNumber(Number.NaN, 'lr')).message).toBe('lr must be a finite number, got NaN');
    expect(thrown(() => assertOneOf('fast', 'preset', ['paper', 'official'])).message)
      .toBe('preset must be one of "paper", "official", got "fast"');
    expect(thrown(() => assertPlainObject([1], 'options')).message).toBe('options must be a plain object, got an array of 1');
    expect(thrown(() => assertNonEmptyStringList([], 'classNames')).code).toBe('ERR_EMPTY_INPUT');
    expect(thrown(() => assertNonEmptyStringList(['a', ''], 'classNames')).code).toBe('ERR_INVALID_ARGUMENT');
    expect(() => assertPositiveInteger(3, 'epochs')).not.toThrow();
  });

  it('predicates', () => {
    expect([1, 0, -1, 1.5, '1', Number.NaN].map(is.positiveInteger)).toEqual([true, false, false, false, false, false]);
    expect([{}, Object.create(null), [], new Date(), null].map(is.plainObject)).toEqual([true, true, false, false, false]);
    expect(sameNames(['a', 'b'], ['a', 'b'])).toBe(true);
    expect(sameNames(['a', 'b'], ['b', 'a'])).toBe(false);
    expect(sameNames(['a'], ['a', 'b'])).toBe(false);
  });
});

describe('similarity', () => {
  it('cosine logits, softmax and argmax by hand', () => {
    // Image (3,4) has norm 5; texts (1,0) and (0,2): cosines 0.6 and 0.8.
    const l = clipLogits({ data: Float32Array.from([3, 4]), shape: [1, 2] }, { data: Float32Array.from([1, 0, 0, 2]), shape: [2, 2] }, 10);
    expect(l.shape).toEqual([1, 2]);
    expect(l.data[0]).toBeCloseTo(6, 5);
    expect(l.data[1]).toBeCloseTo(8, 5);
    const p = softmax([0, Math.log(3)]);
    expect(p[0]).toBeCloseTo(0.25, 12);
    expect(p[1]).toBeCloseTo(0.75, 12);
    expect(Array.from(softmaxRows({ data: Float32Array.from([1000, 1000, 0, Math.log(3)]), shape: [2, 2] }).data))
      .toEqual([0.5, 0.5, 0.25, 0.75].map(Math.fround));
    expect(Array.from(argmaxRows({ data: Float32Array.from([1, 3, 3, 0, -1, -2]), shape: [2, 3] }))).toEqual([1, 0]);
  });
});

describe('schedule pieces', () => {
  it('linear warm-up and cosine annealing', () => {
    expect([0, 1, 2, 4].map((t) => linearWarmup(t, 4, 0, 1))).toEqual([0, 0.25, 0.5, 1]);
    expect(cosineAnneal(0, 10, 2, 1)).toBe(2);
    expect(cosineAnneal(5, 10, 2, 1)).toBeCloseTo(1.5, 12);
    expect(cosineAnneal(10, 10, 2, 1)).toBeCloseTo(1, 12);
    expect(cosineAnneal(20, 10, 2, 1)).toBeCloseTo(2, 12); // not clamped: a cycle
  });
});

describe('loss-term names', () => {
  it('total first, then the seven terms of the method', () => {
    expect(LOSS_TERMS).toEqual(['loss', 'ceA', 'ceU', 'ceSelf', 'ceCross', 'mse', 'kl', 'entropy']);
  });
});
