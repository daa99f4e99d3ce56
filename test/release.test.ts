// Importing the authors' release checkpoints (issue 9 item 2): the torch-free restricted reader of torch.save
// files against the same state dict as safetensors, the release's own inference logits on the probe images,
// ERR_MISMATCH naming the class list or the CLIP, and crafted hostile pickles / archives (coded errors, no crash).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Clip } from '../lib/clip/clip.js';
import { IpclipError } from '../lib/core/errors.js';
import { PromptModel } from '../lib/ipclip/prompt-model.js';
import { importReleaseCheckpoint, readReleaseCheckpoint } from '../lib/ipclip/release.js';
import { readSafetensors, writeSafetensors } from '../lib/io/safetensors.js';
import { ensureDist } from './helpers/dist.js';
import { CLIP_TINY, HAVE_SHARED, TEST_DEVICE, VOCAB_PATH, floatData, maxAbsDiff, shared } from './helpers/fixtures.js';

const DIR = shared('fixtures', 'release-checkpoint');
const PTH = join(DIR, 'model.pth.tar-50');
const SAFE = join(DIR, 'prompt_learner.safetensors');
const EXPECTED = join(DIR, 'expected.safetensors');

async function rejection(p: Promise<unknown>): Promise<IpclipError> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(IpclipError);
  return err as IpclipError;
}

// --- A minimal torch.save writer for crafted files: pickle opcodes and a stored zip ---------------------------------

const op = {
  proto: Buffer.from([0x80, 2]),
  str: (s: string) => { const b = Buffer.from(s, 'utf8'); const h = Buffer.alloc(5); h[0] = 0x58; h.writeUInt32LE(b.length, 1); return Buffer.concat([h, b]); },
  int: (n: number) => { const b = Buffer.alloc(5); b[0] = 0x4a; b.writeInt32LE(n, 1); return b; },
  global: (m: string, n: string) => Buffer.from(`c${m}\n${n}\n`, 'latin1'),
  c: (s: string) => Buffer.from(s, 'latin1'),
};

/** A pickled `_rebuild_tensor_v2(storage(key, numel), offset, sizes, strides, False, OrderedDict())`. */
function tensorPickle(key: string, numel: number, offset: number, sizes: number[], strides: number[]): Buffer {
  return Buffer.concat([
    op.global('torch._utils', '_rebuild_tensor_v2'), op.c('(('), op.str('storage'), op.global('torch', 'FloatStorage'),
    op.str(key), op.str('cpu'), op.int(numel), op.c('tQ'), op.int(offset),
    op.c('('), ...sizes.map(op.int), op.c('t('), ...strides.map(op.int), op.c('t'), Buffer.from([0x89]),
    op.global('collections', 'OrderedDict'), op.c(')RtR'),
  ]);
}

/** `{name: tensor, ...}` as a pickle (protocol 2), ending in STOP. */
function dictPickle(entries: [string, Buffer][]): Buffer {
  return Buffer.concat([op.proto, op.c('}('), ...entries.flatMap(([k, v]) => [op.str(k), v]), op.c('u.')]);
}

/** A stored zip in torch.save's layout: `archive/data.pkl`, `archive/data/<key>`, `archive/version`. */
function torchZip(pickle: Buffer, storages: Record<string, Buffer>): Buffer {
  const files: [string, Buffer][] = [['archive/data.pkl', pickle], ...Object.entries(storages).map(([k, b]) => [`archive/data/${k}`, b] as [string, Buffer]), ['archive/version', Buffer.from('3\n')]];
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of files) {
    const n = Buffer.from(name);
    const crc = crc32(data);
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0); lh.writeUInt16LE(20, 4); lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(data.length, 18); lh.writeUInt32LE(data.length, 22); lh.writeUInt16LE(n.length, 26);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0); ch.writeUInt16LE(20, 4); ch.writeUInt16LE(20, 6); ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(data.length, 20); ch.writeUInt32LE(data.length, 24); ch.writeUInt16LE(n.length, 28); ch.writeUInt32LE(offset, 42);
    locals.push(lh, n, data);
    central.push(ch, n);
    offset += 30 + n.length + data.length;
  }
  const cd = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(files.length, 8); end.writeUInt16LE(files.length, 10);
  end.writeUInt32LE(cd.length, 12); end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

const floats = (...v: number[]) => Buffer.from(Float32Array.from(v).buffer);

describe.skipIf(!HAVE_SHARED)('release checkpoints: reading', () => {
  it('reads the Dassl torch.save file (no Python) to exactly the tensors of the safetensors copy, and its epoch', async () => {
    const [pth, safe] = await Promise.all([readReleaseCheckpoint(PTH), readSafetensors(SAFE)]);
    expect(pth.format).toBe('torch');
    expect(pth.epoch).toBe(50);
    expect(pth.info.val_result).toBe(0.5);
    // The optimizer's and scheduler's state are not part of the state dict.
    expect(Object.keys(pth.state).sort()).toEqual(Object.keys(safe.tensors).sort());
    expect(pth.state.token_prefix!.shape).toEqual([5, 1, 128]);
    expect(pth.state.token_suffix!.shape).toEqual([5, 66, 128]);
    for (const [name, t] of Object.entries(safe.tensors)) {
      expect(pth.state[name]!.shape, name).toEqual(t.shape);
      expect(maxAbsDiff(pth.state[name]!.data, t.data as Float32Array), name).toBe(0);
    }
  });

  it('materialises strided views from their storage (a transposed 2×3 and an offset row)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ipclip-release-'));
    try {
      // Storage 0..5; "t" = its [3,2] view with strides (1,3) = the transpose of [[0,1,2],[3,4,5]];
      // "row" = elements 3..5 (offset 3, size [3], stride [1]); "s" = a 0-dim scalar at offset 4.
      const pkl = dictPickle([
        ['t', tensorPickle('0', 6, 0, [3, 2], [1, 3])],
        ['row', tensorPickle('0', 6, 3, [3], [1])],
        ['s', tensorPickle('0', 6, 4, [], [])],
      ]);
      const file = join(dir, 'view.pt');
      writeFileSync(file, torchZip(pkl, { 0: floats(0, 1, 2, 3, 4, 5) }));
      const r = await readReleaseCheckpoint(file);
      expect(r.state.t!.shape).toEqual([3, 2]);
      expect(Array.from(r.state.t!.data)).toEqual([0, 3, 1, 4, 2, 5]);
      expect(Array.from(r.state.row!.data)).toEqual([3, 4, 5]);
      expect(r.state.s!.shape).toEqual([]);
      expect(Array.from(r.state.s!.data)).toEqual([4]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!HAVE_SHARED)('release checkpoints: import', () => {
  let clip: Clip;
  let classNames: string[];
  let probe: { data: Float32Array; shape: number[] };
  let logits: Float32Array;
  let dir: string;

  beforeAll(async () => {
    clip = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, device: TEST_DEVICE });
    const expected = await readSafetensors(EXPECTED);
    classNames = JSON.parse(expected.metadata.classnames!) as string[];
    probe = { data: floatData(expected, 'probe'), shape: expected.tensors.probe!.shape };
    logits = floatData(expected, 'logits');
    dir = mkdtempSync(join(tmpdir(), 'ipclip-release-'));
  });
  afterAll(() => {
    clip?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  // Tolerance: the release ran the same fp32 CLIP in PyTorch; ours sums in other orders (fused attention, the
  // fast text path). Logits are exp(logit_scale) = 14.3 times a cosine of 32-dim unit vectors after 2 text and
  // 3 vision blocks, |logit| ≤ 6.3 here: fp32 rounding (relative 6e-8 per operation, growing ~1e-6 through the
  // towers) moves a logit by ~1e-5 at most. Measured 2026-12-01: 2.9e-6 (fast path), 3.8e-6 (naive). 1e-4 leaves
  // room for other CPUs' kernels; an untrained prompt is 10.4 off, so the bound cannot pass by accident.
  const TOL = 1e-4;

  for (const [what, file] of [['model.pth.tar-50', PTH], ['prompt_learner.safetensors', SAFE]] as const) {
    it(`${what} reproduces the release's eval-mode logits on the probe images`, async () => {
      const imported = await importReleaseCheckpoint(file, { clip, classNames });
      using prompt = imported.prompt;
      expect(imported.format).toBe(what.endsWith('safetensors') ? 'safetensors' : 'torch');
      expect(imported.ignored.length).toBe(12);
      expect(imported.ignored.every((n) => n.startsWith('style_mapping_tokens.'))).toBe(true);
      const out = (await prompt.logits(probe as never)).logits;
      expect(out.shape).toEqual([6, 5]);
      expect(maxAbsDiff(out.data, logits)).toBeLessThanOrEqual(TOL);
    });
  }

  it('a wrong class list is ERR_MISMATCH naming the class list (another name, another order, another count)', async () => {
    const renamed = [...classNames];
    renamed[2] = 'bicycle';
    const e1 = await rejection(importReleaseCheckpoint(PTH, { clip, classNames: renamed }));
    expect(e1.code).toBe('ERR_MISMATCH');
    expect(e1.message).toMatch(/class list/);
    expect(e1.message).toMatch(/2 \('bicycle'\)/);
    expect(e1.message).not.toMatch(/CLIP/);

    const swapped = [classNames[1]!, classNames[0]!, ...classNames.slice(2)];
    const e2 = await rejection(importReleaseCheckpoint(SAFE, { clip, classNames: swapped }));
    expect(e2.code).toBe('ERR_MISMATCH');
    expect(e2.message).toMatch(/class list.*another order.*\[alarm_clock, backpack, bike/);

    const e3 = await rejection(importReleaseCheckpoint(PTH, { clip, classNames: classNames.slice(0, 4) }));
    expect(e3.code).toBe('ERR_MISMATCH');
    expect(e3.message).toMatch(/class list.*5 classes, 4 were given/);
  });

  it('a wrong CLIP is ERR_MISMATCH naming the CLIP (a random CLIP of the same shape; a copy with perturbed token embeddings)', async () => {
    const random = await Clip.random(clip.config, { vocab: VOCAB_PATH, seed: 3 });
    try {
      const e = await rejection(importReleaseCheckpoint(PTH, { clip: random, classNames }));
      expect(e.code).toBe('ERR_MISMATCH');
      expect(e.message).toMatch(/another CLIP/);
      expect(e.message).not.toMatch(/class list/);
    } finally {
      random.dispose();
    }
    // The same weights with the token embedding moved by 1e-3 (about 5 % of its spread).
    const w = await readSafetensors(CLIP_TINY.openaiSafetensors);
    const tensors = Object.fromEntries(Object.entries(w.tensors).map(([k, t]) => {
      const data = Float32Array.from(t.data as Float32Array);
      if (k === 'token_embedding.weight') for (let i = 0; i < data.length; i++) data[i]! += (i % 7 === 0 ? 1e-3 : -1e-3);
      return [k, { data, shape: t.shape }];
    }));
    const perturbedFile = join(dir, 'perturbed.safetensors');
    await writeSafetensors(perturbedFile, tensors);
    const perturbed = await Clip.load(perturbedFile, { vocab: VOCAB_PATH });
    try {
      const e = await rejection(importReleaseCheckpoint(SAFE, { clip: perturbed, classNames }));
      expect(e.code).toBe('ERR_MISMATCH');
      expect(e.message).toMatch(/another CLIP.*start-of-text/);
    } finally {
      perturbed.dispose();
    }
  });
});

describe.skipIf(!HAVE_SHARED)('release checkpoints: hostile files are coded errors, never a crash', () => {
  let dir: string;
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'ipclip-release-hostile-')); });
  afterAll(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  const okTensor = tensorPickle('0', 4, 0, [4], [1]);
  const cases: [string, () => Buffer, RegExp][] = [
    ['a global that would run a command (os.system)',
      () => torchZip(Buffer.concat([op.proto, op.global('os', 'system'), op.str('touch /tmp/pwned'), op.c('\x85R.')]), {}),
      /refuses the global 'os\.system'/],
    ['builtins.eval through STACK_GLOBAL',
      () => torchZip(Buffer.concat([op.proto, op.str('builtins'), op.str('eval'), Buffer.from([0x93]), op.str('1'), op.c('\x85R.')]), {}),
      /refuses the global 'builtins\.eval'/],
    ['an opcode outside the allowed set (NEWOBJ)',
      () => torchZip(Buffer.concat([op.proto, op.global('collections', 'OrderedDict'), op.c(')'), Buffer.from([0x81]), op.c('.')]), {}),
      /opcode 0x81 is not allowed/],
    ['100,000 nested marks', () => torchZip(Buffer.concat([op.proto, Buffer.alloc(100_000, 0x28), op.c('.')]), {}), /nesting deeper than 1000 marks/],
    ['lists nested 200 deep', () => torchZip(Buffer.concat([op.proto, Buffer.alloc(200, 0x5d), Buffer.alloc(199, 0x61), op.c('.')]), {}),
      /nesting deeper than 64 levels/],
    ['a list that contains itself', () => torchZip(Buffer.concat([op.proto, op.c(']q\x00h\x00a.')]), {}), /nesting deeper than 64 levels \(or a cycle\)/],
    ['a list holding the one below it twice, 60 levels deep (2^60 paths)',
      () => torchZip(Buffer.concat([op.proto, op.c(']'), ...Array.from({ length: 60 }, () => op.c('q\x000](h\x00h\x00e')), op.c('.')]), {}),
      /more than 2000000 values to walk/],
    ['a tensor of 2^40 elements on a 4-element storage',
      () => torchZip(dictPickle([['w', tensorPickle('0', 4, 0, [1 << 20, 1 << 20], [1 << 20, 1])]]), { 0: floats(1, 2, 3, 4) }),
      /reaches past its storage of 4 elements/],
    ['a stride-0 view that would expand one float to 1 GiB',
      () => torchZip(dictPickle([['w', tensorPickle('0', 1, 0, [1 << 28], [0])]]), { 0: floats(1) }),
      /expand to more than 4× the file's size/],
    ['a storage offset past the storage', () => torchZip(dictPickle([['w', tensorPickle('0', 4, 9, [1], [1])]]), { 0: floats(1, 2, 3, 4) }),
      /past its storage of 4 elements/],
    ['a storage whose entry is shorter than its declared size', () => torchZip(dictPickle([['w', okTensor]]), { 0: floats(1, 2) }),
      /storage '0' has 8 bytes, not 4 × 4/],
    ['a storage the archive lacks', () => torchZip(dictPickle([['w', okTensor]]), {}), /storage '0', which the archive lacks/],
    ['a negative size', () => torchZip(dictPickle([['w', tensorPickle('0', 4, 0, [-1], [1])]]), { 0: floats(1, 2, 3, 4) }), /negative entry/],
    ['a string length past the end', () => torchZip(Buffer.concat([op.proto, Buffer.from([0x58, 0xff, 0xff, 0xff, 0x7f]), op.c('ab.')]), {}),
      /truncated/],
    ['a memo entry never stored', () => torchZip(Buffer.concat([op.proto, op.c('h\x07.')]), {}), /memo entry 7 was never stored/],
    ['a pickle without STOP', () => torchZip(Buffer.concat([op.proto, op.c('}')]), {}), /ends without STOP/],
    ['the legacy (pre-1.6) format',
      () => Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]),
      /legacy torch\.save format/],
    ['the real checkpoint cut in half', () => readFileSync(PTH).subarray(0, 1_600_000), /end-of-central-directory/],
    ['the real checkpoint with one flipped byte in a tensor', () => { const b = Buffer.from(readFileSync(PTH)); b[20_000]! ^= 0x40; return b; },
      /CRC mismatch/],
  ];

  for (const [what, make, message] of cases) {
    it(what, async () => {
      const file = join(dir, `${what.replace(/[^a-z0-9]+/gi, '-')}.pt`);
      writeFileSync(file, make());
      const e = await rejection(readReleaseCheckpoint(file));
      expect(e.code).toBe('ERR_BAD_FILE');
      expect(e.message).toMatch(message);
    });
  }

  it('a TorchScript archive (openai.pt) is named as such; a missing file is ERR_FILE_NOT_FOUND', async () => {
    const e = await rejection(readReleaseCheckpoint(CLIP_TINY.torchscript));
    expect(e.code).toBe('ERR_BAD_FILE');
    expect(e.message).toMatch(/TorchScript/);
    expect((await rejection(readReleaseCheckpoint(join(dir, 'nope.pth.tar')))).code).toBe('ERR_FILE_NOT_FOUND');
  });
});

describe.skipIf(!HAVE_SHARED)('ipclip import-release', () => {
  const ROOT = fileURLToPath(new URL('..', import.meta.url));
  const BIN = join(ROOT, 'bin', 'ipclip.js');
  const CLIP_ARGS = ['--clip', CLIP_TINY.openaiSafetensors, '--vocab', VOCAB_PATH, '--threads', '2'];
  const run = (args: string[]) => {
    const r = spawnSync(process.execPath, [BIN, 'import-release', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  let dir: string;
  let classNames: string[];
  beforeAll(async () => {
    ensureDist(ROOT);
    dir = mkdtempSync(join(tmpdir(), 'ipclip-release-cli-'));
    classNames = JSON.parse((await readSafetensors(EXPECTED)).metadata.classnames!) as string[];
  });
  afterAll(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  it('PromptModel.load of the release\'s state dict names the import path instead of a bare unknown tensor', async () => {
    const clip = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH });
    try {
      const err = await PromptModel.load(clip, SAFE, { classNames }).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(IpclipError);
      expect((err as IpclipError).code).toBe('ERR_BAD_WEIGHTS');
      expect((err as Error).message).toMatch(/token_(prefix|suffix).*importReleaseCheckpoint/);
    } finally {
      clip.dispose();
    }
  });

  it('writes our checkpoint format, which PromptModel.load reads back to the release\'s logits', async () => {
    const out = join(dir, 'imported.safetensors');
    const r = run([PTH, ...CLIP_ARGS, '--classes', classNames.join(','), '--out', out, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout) as { out: string; format: string; epoch: number; classNames: string[]; ignored: string[] };
    expect(summary).toMatchObject({ out, format: 'torch', epoch: 50, classNames });
    const clip = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH });
    try {
      using prompt = await PromptModel.load(clip, out);  // our metadata: no classNames needed
      expect(prompt.classNames).toEqual(classNames);
      const expected = await readSafetensors(EXPECTED);
      const probe = { data: floatData(expected, 'probe'), shape: expected.tensors.probe!.shape as [number, number, number, number] };
      expect(maxAbsDiff((await prompt.logits(probe)).logits.data, floatData(expected, 'logits'))).toBeLessThanOrEqual(1e-4);
    } finally {
      clip.dispose();
    }
  });

  it('reads --classes from a file; a wrong list exits 1 with ERR_MISMATCH; a hostile file ERR_BAD_FILE; no --classes is usage', () => {
    const list = join(dir, 'classes.txt');
    writeFileSync(list, `${classNames.join('\n')}\n`);
    const ok = run([SAFE, ...CLIP_ARGS, '--classes', list, '--out', join(dir, 'b.safetensors')]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/imported .*5 classes/);

    const wrong = run([PTH, ...CLIP_ARGS, '--classes', [...classNames].reverse().join(','), '--out', join(dir, 'c.safetensors')]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/class list.*\[ERR_MISMATCH\]/);

    const evil = join(dir, 'evil.pth.tar');
    writeFileSync(evil, torchZip(Buffer.concat([op.proto, op.global('os', 'system'), op.str('id'), op.c('\x85R.')]), {}));
    const bad = run([evil, ...CLIP_ARGS, '--classes', classNames.join(',')]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/os\.system.*\[ERR_BAD_FILE\]/);

    expect(run([PTH, ...CLIP_ARGS]).code).toBe(2);
  });
});
