import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';
import { ClipTokenizer, htmlUnescape } from '../lib/clip/tokenizer/tokenizer.js';
import { learnMerges, writeOpenAiVocab } from '../lib/clip/tokenizer/train.js';
import { IpclipError } from '../lib/core/errors.js';
import { Rng } from '../lib/core/rng.js';

const SHARED = fileURLToPath(new URL('../../shared/', import.meta.url));
const VOCAB = join(SHARED, 'vocab/bpe_simple_vocab_16e6.txt.gz');
const CASES = join(SHARED, 'fixtures/text-image/tokenizer-cases.json');
const GOLDEN = join(SHARED, 'fixtures/clip-tiny/golden.safetensors');
const haveShared = existsSync(VOCAB) && existsSync(CASES);
if (!haveShared) console.warn(`tokenizer tests skipped: ${SHARED} (shared vocabulary and fixtures) is absent`);

interface Case { text: string; ids: number[] }
interface CaseFile { sot: number; eot: number; context_length: number; cases: Case[] }

/** Expects `fn` to throw an IpclipError with `code`; returns it for further checks. */
function expectCode(fn: () => unknown, code: string): IpclipError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(IpclipError);
    expect((err as IpclipError).code).toBe(code);
    return err as IpclipError;
  }
  throw new Error(`expected an IpclipError ${code}`);
}

/** Minimal safetensors reader: u64 LE header length, JSON header, then raw little-endian data. */
function readSafetensors(path: string): { meta: Record<string, string>; tensor(name: string): { dtype: string; shape: number[]; bytes: Uint8Array } } {
  const buf = readFileSync(path);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8'));
  const base = 8 + headerLen;
  return {
    meta: header.__metadata__ ?? {},
    tensor(name) {
      const t = header[name];
      const [from, to] = t.data_offsets as [number, number];
      return { dtype: t.dtype, shape: t.shape, bytes: Uint8Array.from(buf.subarray(base + from, base + to)) };
    },
  };
}

/** GPT-2/CLIP byte → unicode table, written out independently of the library for the synthetic HF vocabulary. */
function byteSymbolsInIdOrder(): string[] {
  const keep: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) keep.push(b);
  for (let b = 0xa1; b <= 0xac; b++) keep.push(b);
  for (let b = 0xae; b <= 0xff; b++) keep.push(b);
  const out = keep.map((b) => String.fromCharCode(b));
  let n = 0;
  for (let b = 0; b < 256; b++) if (!keep.includes(b)) out.push(String.fromCharCode(256 + n++));
  return out;
}

describe.skipIf(!haveShared)('ClipTokenizer with OpenAI vocabulary', () => {
  let tok: ClipTokenizer;
  let fixture: CaseFile;
  let tmp: string;
  beforeAll(() => {
    tok = ClipTokenizer.fromFile(VOCAB);
    fixture = JSON.parse(readFileSync(CASES, 'utf8')) as CaseFile;
    tmp = mkdtempSync(join(tmpdir(), 'ipclip-tok-'));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('has OpenAI CLIP vocabulary layout', () => {
    expect(tok.sot).toBe(fixture.sot);
    expect(tok.eot).toBe(fixture.eot);
    expect(tok.mergeCount).toBe(48894);
    expect(tok.vocabSize).toBe(49408);
  });

  it('matches every reference tokenizer case', () => {
    expect(fixture.cases.length).toBeGreaterThan(200);
    const wrong = fixture.cases.filter((c) => JSON.stringify(tok.encode(c.text)) !== JSON.stringify(c.ids));
    expect(wrong.map((c) => c.text)).toEqual([]);
  });

  it('reproduces text_tokens of the clip-tiny golden file', () => {
    if (!existsSync(GOLDEN)) return void console.warn('golden.safetensors absent, check skipped');
    const st = readSafetensors(GOLDEN);
    const texts = JSON.parse(st.meta.texts!) as string[];
    const t = st.tensor('text_tokens');
    expect(t.dtype).toBe('I64');
    expect(t.shape).toEqual([5, 77]);
    const expected = Array.from(new BigInt64Array(t.bytes.buffer), Number);
    const got = tok.tokenize(texts, { contextLength: 77 });
    expect(got.shape).toEqual([5, 77]);
    expect(Array.from(got.data)).toEqual(expected);
  });

  it('frames rows with SOT/EOT and zero padding', () => {
    const bike = fixture.cases.find((c) => c.text === 'a photo of a Bike.')!;
    const empty = fixture.cases.find((c) => c.text === '')!;
    const out = tok.tokenize(['a photo of a Bike.', ''], { contextLength: 10 });
    expect(out.shape).toEqual([2, 10]);
    const pad = (ids: number[]) => [...ids, ...new Array(10 - ids.length).fill(0)];
    expect(Array.from(out.data.subarray(0, 10))).toEqual(pad([tok.sot, ...bike.ids, tok.eot]));
    expect(Array.from(out.data.subarray(10))).toEqual(pad([tok.sot, ...empty.ids, tok.eot]));
    // A single string is a batch of one with the default context of 77.
    const one = tok.tokenize('a photo of a Bike.');
    expect(one.shape).toEqual([1, 77]);
    expect(Array.from(one.data.subarray(0, 10))).toEqual(Array.from(out.data.subarray(0, 10)));
  });

  it('rejects over-long texts unless truncating, and truncates to end in EOT', () => {
    const long = fixture.cases.find((c) => c.ids.length > 75)!;
    expect(long).toBeDefined();
    const err = expectCode(() => tok.tokenize(['short', long.text]), 'ERR_TEXT_TOO_LONG');
    expect(err.message).toContain('text 1');
    expect(err.message).toContain(String(long.ids.length + 2));
    expect(err.message).toContain('77');
    const cut = tok.tokenize(long.text, { truncate: true });
    expect(Array.from(cut.data)).toEqual([tok.sot, ...long.ids.slice(0, 75), tok.eot]);
    // Exactly fitting is fine; one less is too long.
    const bike = fixture.cases.find((c) => c.text === 'a photo of a Bike.')!;
    const fit = tok.tokenize(bike.text, { contextLength: bike.ids.length + 2 });
    expect(Array.from(fit.data)).toEqual([tok.sot, ...bike.ids, tok.eot]);
    expectCode(() => tok.tokenize(bike.text, { contextLength: bike.ids.length + 1 }), 'ERR_TEXT_TOO_LONG');
    expect(Array.from(tok.tokenize(bike.text, { contextLength: 2, truncate: true }).data)).toEqual([tok.sot, tok.eot]);
  });

  it('validates tokenize arguments', () => {
    for (const contextLength of [1, 0, -5, 2.5, NaN, Infinity]) {
      expectCode(() => tok.tokenize('x', { contextLength }), 'ERR_INVALID_ARGUMENT');
    }
    expectCode(() => tok.tokenize([]), 'ERR_EMPTY_INPUT');
    expectCode(() => tok.tokenize(['ok', 5 as unknown as string]), 'ERR_INVALID_ARGUMENT');
    expectCode(() => tok.tokenize('x', { truncate: 'yes' as unknown as boolean }), 'ERR_INVALID_ARGUMENT');
    expectCode(() => tok.encode(null as unknown as string), 'ERR_INVALID_ARGUMENT');
  });

  it('decodes ids back to cleaned text', () => {
    const c = fixture.cases.find((x) => x.text === 'naïve café résumé coöperate')!;
    expect(tok.decode(c.ids)).toBe('naïve café résumé coöperate');
    const row = tok.tokenize('A photo of a Bike.').data;
    expect(tok.decode(row)).toBe('a photo of a bike .');
    expect(tok.decode(BigInt64Array.from([49406n, 320n, 49407n, 0n]))).toBe('a');
    expectCode(() => tok.decode([320, 49408]), 'ERR_INVALID_ARGUMENT');
    expectCode(() => tok.decode([1.5]), 'ERR_INVALID_ARGUMENT');
  });

  it('unescapes HTML as Python html.unescape does', () => {
    expect(htmlUnescape('&lt;b&gt; &quot;q&quot; &#39;&#x27;')).toBe(`<b> "q" ''`);
    expect(htmlUnescape('&amp;amp;')).toBe('&amp;');
    expect(htmlUnescape('&#128;&#0;&#xD800;&#11;')).toBe('\u20ac\ufffd\ufffd'); // cp1252, NUL/surrogate → U+FFFD, VT dropped
    expect(htmlUnescape('&copyright &nbsp; &hellip; &bogus; & x')).toBe('\u00a9right \u00a0 \u2026 &bogus; & x');
    expect(tok.encode('caf&eacute;')).toEqual(tok.encode('café'));
  });

  it('keeps U+001C-U+001F inside text but strips them at the ends, as CLIP does', () => {
    // 'a</w>' = 320 and 'b</w>' = 321 (fixture 'a.b.c'); byte 0x1C is the 29th remapped byte: 188 + 28 + 256.
    expect(tok.encode('a\u001cb')).toEqual([320, 472, 321]);
    expect(tok.encode('\u001c a \u001f')).toEqual([320]);
    expect(tok.encode('a\u00a0\u2003\tb')).toEqual([320, 321]);
  });

  it('reads a plain (not gzipped) copy and a small vocabulary', () => {
    const plainPath = join(tmp, 'plain.txt');
    writeFileSync(plainPath, gunzipSync(readFileSync(VOCAB)));
    const plain = ClipTokenizer.fromFile(plainPath);
    for (const c of fixture.cases.slice(-40)) expect(plain.encode(c.text)).toEqual(c.ids);
    // Three merges: l+o, lo+w</w>, then SOT/EOT follow at 512 + 3.
    const smallPath = join(tmp, 'small.txt');
    writeFileSync(smallPath, '#version: 0.2\nl o\nlo w</w>\nh i\n\n');
    const small = ClipTokenizer.fromFile(smallPath);
    expect([small.mergeCount, small.sot, small.eot, small.vocabSize]).toEqual([3, 515, 516, 517]);
    // Printable ASCII byte b has id b - 0x21 ('l' = 75), plus 256 with </w>. 'h i' never fires on the word 'hi'
    // because its last symbol is 'i</w>', but it does inside 'hix'.
    expect(small.encode('low lo hi hix')).toEqual([513, 75, 256 + 78, 71, 256 + 72, 514, 256 + 87]);
  });

  it('gives identical ids from a Hugging Face vocab.json + merges.txt', () => {
    const lines = gunzipSync(readFileSync(VOCAB)).toString('utf8').split('\n').slice(1, 1 + 48894);
    const bytes = byteSymbolsInIdOrder();
    const tokens = [...bytes, ...bytes.map((b) => b + '</w>'), ...lines.map((l) => l.replace(' ', '')), '<|startoftext|>', '<|endoftext|>'];
    // Reverse the ids so the test sees that ids really come from vocab.json.
    const last = tokens.length - 1;
    const vocab = Object.fromEntries(tokens.map((t, i) => [t, last - i]));
    const dir = join(tmp, 'hf');
    mkdirSync(dir);
    writeFileSync(join(dir, 'vocab.json'), JSON.stringify(vocab));
    writeFileSync(join(dir, 'merges.txt'), ['#version: 0.2', ...lines].join('\n') + '\n');
    for (const hf of [ClipTokenizer.fromFile(dir), ClipTokenizer.fromFile(join(dir, 'vocab.json'))]) {
      expect([hf.sot, hf.eot, hf.mergeCount, hf.vocabSize]).toEqual([last - 49406, last - 49407, 48894, 49408]);
      for (const c of fixture.cases) expect(hf.encode(c.text)).toEqual(c.ids.map((id) => last - id));
      expect(hf.decode(fixture.cases[1]!.ids.map((id) => last - id))).toBe('a photo of a alarm clock .');
    }
  });

  it('reports missing and malformed vocabulary files', () => {
    expectCode(() => ClipTokenizer.fromFile(join(tmp, 'nope.txt.gz')), 'ERR_FILE_NOT_FOUND');
    const hfNoMerges = join(tmp, 'hf-nomerges');
    mkdirSync(hfNoMerges);
    writeFileSync(join(hfNoMerges, 'vocab.json'), '{}');
    expectCode(() => ClipTokenizer.fromFile(hfNoMerges), 'ERR_FILE_NOT_FOUND');
    writeFileSync(join(hfNoMerges, 'merges.txt'), '#version: 0.2\n');
    expectCode(() => ClipTokenizer.fromFile(hfNoMerges), 'ERR_BAD_FILE'); // vocab.json lacks the byte tokens
    writeFileSync(join(hfNoMerges, 'vocab.json'), '{"a": ');
    expectCode(() => ClipTokenizer.fromFile(hfNoMerges), 'ERR_BAD_FILE');
    const bad = (name: string, data: Uint8Array | string) => {
      const p = join(tmp, name);
      writeFileSync(p, data);
      expectCode(() => ClipTokenizer.fromFile(p), 'ERR_BAD_FILE');
    };
    const gz = readFileSync(VOCAB);
    bad('truncated.gz', gz.subarray(0, gz.length >> 1));
    bad('binary.bin', Uint8Array.from({ length: 4096 }, (_, i) => (i * 2654435761) >>> 24));
    bad('three-parts.txt', '#version: 0.2\na b c\n');
    bad('blank-inside.txt', '#version: 0.2\na b\n\nc d\n');
    bad('no-version.txt', 'a b\nc d\n');
    bad('bad-symbol.txt', '#version: 0.2\na\u0001 b\n');
    bad('bad-utf8.gz', gzipSync(Uint8Array.from([0x23, 0x0a, 0xff, 0xfe, 0x20, 0x61])));
  });

  it('survives hostile text: lone surrogates, control characters, random code units', () => {
    // Lone surrogates become U+FFFD, whose UTF-8 bytes decode back to U+FFFD.
    expect(tok.encode('\ud800x\udc00')).toEqual(tok.encode('\ufffdx\ufffd'));
    expect(tok.decode(tok.encode('\udfff'))).toBe('\ufffd');
    expect(tok.decode(tok.encode('a\u0000\u0007b'))).toBe('a \u0000\u0007 b');
    const rng = new Rng('tokenizer-hostile');
    for (let k = 0; k < 200; k++) {
      let s = '';
      const n = 1 + rng.int(40);
      for (let i = 0; i < n; i++) s += String.fromCharCode(rng.chance(0.5) ? rng.int(0x80) : rng.int(0x10000));
      const ids = tok.encode(s);
      expect(ids.every((id) => Number.isInteger(id) && id >= 0 && id < tok.vocabSize)).toBe(true);
      expect(tok.encode(s)).toEqual(ids); // the cache gives the same answer
      expect(tok.tokenize(s, { truncate: true }).data[0]).toBe(tok.sot);
    }
  });

  it('handles a 1 MB string', () => {
    const big = 'a'.repeat(1 << 20);
    const ids = tok.encode(big);
    expect(ids.length).toBeGreaterThan(75);
    expect(tok.decode(ids)).toBe(big); // chunked BPE still covers every byte, one word
    const row = tok.tokenize(big, { truncate: true });
    expect(Array.from(row.data)).toEqual([tok.sot, ...ids.slice(0, 75), tok.eot]);
    const err = expectCode(() => tok.tokenize(big), 'ERR_TEXT_TOO_LONG');
    expect(err.message).toContain(String(ids.length + 2));
    const mixed = '\ud83d'.repeat(1 << 19) + ' word &amp; '.repeat(1 << 15);
    expect(tok.tokenize(mixed, { truncate: true }).data[76]).toBe(tok.eot);
  });
});

describe('learnMerges and writeOpenAiVocab', () => {
  let tmp: string;
  beforeAll(() => { tmp = mkdtempSync(join(tmpdir(), 'ipclip-bpe-')); });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('learns the most frequent pairs first with deterministic ties', () => {
    // Words: low x2, lower, lowest. Pair counts: l o = 4; then lo w / lo w</w> / w e tie at 2 and sort
    // as "lo w" < "lo w</w>" < "w e"; after those, low e = 2 beats the pairs seen once.
    const merges = learnMerges(['Low lower', 'LOWEST low'], { numMerges: 4 });
    expect(merges).toEqual([['l', 'o'], ['lo', 'w'], ['lo', 'w</w>'], ['low', 'e']]);
    // Then every pair occurs once: lowe r</w> < lowe s < s t</w>; merging lowe s leaves lowes t</w>, and then
    // each word is a single symbol, so learning stops at 7 merges.
    expect(learnMerges(['low lower lowest low'], { numMerges: 10 })).toEqual([
      ['l', 'o'], ['lo', 'w'], ['lo', 'w</w>'], ['low', 'e'], ['lowe', 'r</w>'], ['lowe', 's'], ['lowes', 't</w>'],
    ]);
    expect(learnMerges(['low lower lowest low'], { numMerges: 10, minFrequency: 2 })).toHaveLength(4);
    expect(learnMerges(['anything'], { numMerges: 0 })).toEqual([]);
  });

  it('writes a vocabulary that ClipTokenizer reads back', () => {
    const merges = learnMerges(['low lower lowest low'], { numMerges: 4 });
    const path = join(tmp, 'vocab.txt.gz');
    writeOpenAiVocab(path, merges);
    const gz = readFileSync(path);
    expect([gz[0], gz[1]]).toEqual([0x1f, 0x8b]);
    expect(gunzipSync(gz).toString('utf8')).toBe('#version: 0.2\nl o\nlo w\nlo w</w>\nlow e\n');
    const tok = ClipTokenizer.fromFile(path);
    expect([tok.mergeCount, tok.sot, tok.eot]).toEqual([4, 516, 517]);
    // low</w> = merge 2 → 514; lowest → lowe (515) s (0x73-0x21 = 82) t</w> (256 + 83).
    expect(tok.encode('low lowest')).toEqual([514, 515, 82, 339]);
    for (const text of ['low lowest', 'slow flowers, 42 times!', 'naïve — 日本']) {
      expect(tok.decode(tok.encode(text))).toBe(tok.decode(tok.encode(tok.decode(tok.encode(text)))));
    }
    expect(tok.decode(tok.encode('Slow flowers, 42 times!'))).toBe('slow flowers , 4 2 times !');
  });

  it('learns merges a tokenizer applies to its own corpus', () => {
    const corpus = ['a photo of a dog', 'a photo of a cat', 'a sketch of a dog', 'photos of dogs and cats'];
    // Learning until no pair is left makes every corpus word a single token.
    const merges = learnMerges(corpus, { numMerges: 1000 });
    expect(merges.length).toBeLessThan(1000);
    const path = join(tmp, 'corpus.txt.gz');
    writeOpenAiVocab(path, merges);
    const tok = ClipTokenizer.fromFile(path);
    for (const text of corpus) {
      expect(tok.encode(text)).toHaveLength(text.split(' ').length);
      expect(tok.decode(tok.encode(text))).toBe(text);
    }
    expect(tok.encode('dogs cats')).toEqual([merges.findIndex((m) => m.join('') === 'dogs</w>') + 512,
      merges.findIndex((m) => m.join('') === 'cats</w>') + 512]);
    // 'of' occurs 4 times: o f</w> = 4 leads; then d o, h o, o t and p h all occur 3 times and 'd o' sorts first.
    const few = learnMerges(corpus, { numMerges: 2 });
    expect(few).toEqual([['o', 'f</w>'], ['d', 'o']]);
  });

  it('validates its inputs', () => {
    expectCode(() => learnMerges([], { numMerges: 3 }), 'ERR_EMPTY_INPUT');
    expectCode(() => learnMerges(['a'], { numMerges: -1 }), 'ERR_INVALID_ARGUMENT');
    expectCode(() => learnMerges(['a'], { numMerges: 1.5 }), 'ERR_INVALID_ARGUMENT');
    expectCode(() => learnMerges([3 as unknown as string], { numMerges: 1 }), 'ERR_INVALID_ARGUMENT');
    expectCode(() => writeOpenAiVocab(join(tmp, 'x.gz'), [['a', 'b c']]), 'ERR_INVALID_ARGUMENT');
    expectCode(() => writeOpenAiVocab(join(tmp, 'x.gz'), [['a']]), 'ERR_INVALID_ARGUMENT');
    expectCode(() => writeOpenAiVocab(join(tmp, 'no-such-dir', 'x.gz'), [['a', 'b']]), 'ERR_IO');
  });
});
