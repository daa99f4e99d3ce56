/**
 * OpenAI CLIP's text tokenizer: byte-level BPE over lower-cased, cleaned text, with `</w>` marking the end of a
 * word and `<|startoftext|>` / `<|endoftext|>` framing each sequence. Reads OpenAI's `bpe_simple_vocab_16e6.txt.gz`
 * (or a project-made file of the same format) and Hugging Face `vocab.json` + `merges.txt`.
 *
 * Hostile text is safe: lone UTF-16 surrogates become U+FFFD, control characters are byte-encoded like any other
 * symbol, and BPE runs in O(n log n) per word on words cut into bounded chunks, so megabyte inputs finish quickly.
 */
import { readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { IpclipError, check } from '../../core/errors.js';
import type { Tensor } from '../../core/tensor.js';

/** OpenAI's vocabulary holds 49152 ids: 256 bytes, 256 bytes+`</w>`, the merges and 2 specials. */
export const MAX_MERGES = 49152 - 256 - 2;
export const SOT_TEXT = '<|startoftext|>';
export const EOT_TEXT = '<|endoftext|>';
const END_OF_WORD = '</w>';
/** Words longer than this many bytes are cut into chunks before BPE (no real word is this long). */
export const MAX_WORD_BYTES = 1024;
/** Pre-tokens up to this length are cached; longer ones are rare and would only bloat the cache. */
const CACHE_MAX_TOKEN = 256;
const CACHE_MAX_ENTRIES = 100_000;
const MAX_VOCAB_FILE_BYTES = 256 * 1024 * 1024;
const MAX_HF_ID = 10_000_000;

// ---------------------------------------------------------------------------------------------------------------
// Byte <-> unicode table (GPT-2 / CLIP): printable Latin-1 bytes map to themselves, the rest to U+0100 upwards,
// so every byte string becomes a string without whitespace or control characters.

function buildByteTable(): string[] {
  const table = new Array<string>(256);
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let extra = 0;
  for (let b = 0; b < 256; b++) table[b] = String.fromCharCode(printable(b) ? b : 256 + extra++);
  return table;
}

/** `BYTE_TO_UNICODE[b]` is the one-character symbol for byte `b`. */
export const BYTE_TO_UNICODE: readonly string[] = buildByteTable();
const UNICODE_TO_BYTE = new Map<string, number>(BYTE_TO_UNICODE.map((c, b) => [c, b]));

/**
 * The 512 base symbols in id order: the 256 byte symbols, ordered as OpenAI orders them (printable bytes first,
 * then the remapped ones), followed by the same with `</w>`.
 */
export function baseSymbols(): string[] {
  const byCode = [...BYTE_TO_UNICODE].sort((a, b) => a.charCodeAt(0) - b.charCodeAt(0));
  return [...byCode, ...byCode.map((c) => c + END_OF_WORD)];
}

const utf8 = new TextEncoder();

/** The byte-level symbol string of a pre-token: its UTF-8 bytes, each mapped through {@link BYTE_TO_UNICODE}. */
export function byteEncode(token: string): string {
  const bytes = utf8.encode(token);
  let out = '';
  for (let i = 0; i < bytes.length; i++) out += BYTE_TO_UNICODE[bytes[i]!];
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Text cleaning, as OpenAI's `whitespace_clean(basic_clean(text)).lower()` with ftfy stood in by NFC.

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
// OpenAI collapses runs with the `regex` module's `\s` (Unicode White_Space) but strips with Python's
// `str.strip()`, whose set also holds U+001C–U+001F: those survive inside the text, not at its ends.
const WHITE_SPACE = '\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const SPACE_RUN = new RegExp(`[${WHITE_SPACE}]+`, 'g');
const EDGE_SPACE = new RegExp(`^[${WHITE_SPACE}\\x1c-\\x1f]+|[${WHITE_SPACE}\\x1c-\\x1f]+$`, 'g');
/**
 * CLIP's pre-token pattern. After cleaning, ' ' is the only White_Space character left, so the pattern's `\s`
 * is written as ' ' (JavaScript's `\s` would also take U+FEFF, which CLIP keeps as a symbol).
 */
const PRE_TOKEN = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^ \p{L}\p{N}]+/giu;

// HTML entities: the ISO Latin-1 set (which, with amp/lt/gt/quot, is exactly the set HTML5 also accepts without a
// trailing ';'), plus HTML 4's symbol and special sets and `apos`.
const LATIN1_NAMES =
  'nbsp iexcl cent pound curren yen brvbar sect uml copy ordf laquo not shy reg macr deg plusmn sup2 sup3 acute ' +
  'micro para middot cedil sup1 ordm raquo frac14 frac12 frac34 iquest Agrave Aacute Acirc Atilde Auml Aring AElig ' +
  'Ccedil Egrave Eacute Ecirc Euml Igrave Iacute Icirc Iuml ETH Ntilde Ograve Oacute Ocirc Otilde Ouml times Oslash ' +
  'Ugrave Uacute Ucirc Uuml Yacute THORN szlig agrave aacute acirc atilde auml aring aelig ccedil egrave eacute ' +
  'ecirc euml igrave iacute icirc iuml eth ntilde ograve oacute ocirc otilde ouml divide oslash ugrave uacute ucirc ' +
  'uuml yacute thorn yuml';
const GREEK_UPPER = 'Alpha Beta Gamma Delta Epsilon Zeta Eta Theta Iota Kappa Lambda Mu Nu Xi Omicron Pi Rho _ Sigma ' +
  'Tau Upsilon Phi Chi Psi Omega';
const OTHER_ENTITIES =
  'quot:34 amp:38 apos:39 lt:60 gt:62 OElig:338 oelig:339 Scaron:352 scaron:353 Yuml:376 fnof:402 circ:710 ' +
  'tilde:732 thetasym:977 upsih:978 piv:982 ensp:8194 emsp:8195 thinsp:8201 zwnj:8204 zwj:8205 lrm:8206 rlm:8207 ' +
  'ndash:8211 mdash:8212 lsquo:8216 rsquo:8217 sbquo:8218 ldquo:8220 rdquo:8221 bdquo:8222 dagger:8224 ' +
  'Dagger:8225 bull:8226 hellip:8230 permil:8240 prime:8242 Prime:8243 lsaquo:8249 rsaquo:8250 oline:8254 ' +
  'frasl:8260 euro:8364 image:8465 weierp:8472 real:8476 trade:8482 alefsym:8501 larr:8592 uarr:8593 rarr:8594 ' +
  'darr:8595 harr:8596 crarr:8629 lArr:8656 uArr:8657 rArr:8658 dArr:8659 hArr:8660 forall:8704 part:8706 ' +
  'exist:8707 empty:8709 nabla:8711 isin:8712 notin:8713 ni:8715 prod:8719 sum:8721 minus:8722 lowast:8727 ' +
  'radic:8730 prop:8733 infin:8734 ang:8736 and:8743 or:8744 cap:8745 cup:8746 int:8747 there4:8756 sim:8764 ' +
  'cong:8773 asymp:8776 ne:8800 equiv:8801 le:8804 ge:8805 sub:8834 sup:8835 nsub:8836 sube:8838 supe:8839 ' +
  'oplus:8853 otimes:8855 perp:8869 sdot:8901 lceil:8968 rceil:8969 lfloor:8970 rfloor:8971 lang:10216 ' +
  'rang:10217 loz:9674 spades:9824 clubs:9827 hearts:9829 diams:9830';

function buildEntities(): Map<string, string> {
  const map = new Map<string, string>();
  const add = (name: string, code: number, legacy: boolean) => {
    map.set(name + ';', String.fromCodePoint(code));
    if (legacy) map.set(name, String.fromCodePoint(code));
  };
  LATIN1_NAMES.split(' ').forEach((name, i) => add(name, 160 + i, true));
  GREEK_UPPER.split(' ').forEach((name, i) => {
    if (name === '_') return; // U+03A2 is unassigned
    add(name, 913 + i, false);
    add(name.toLowerCase(), 945 + i, false);
  });
  add('sigmaf', 962, false);
  for (const item of OTHER_ENTITIES.split(' ')) {
    const [name, code] = item.split(':') as [string, string];
    add(name, Number(code), ['quot', 'amp', 'lt', 'gt'].includes(name));
  }
  for (const name of ['AMP', 'LT', 'GT', 'QUOT', 'COPY', 'REG']) {
    map.set(name, map.get(name.toLowerCase())!);
    map.set(name + ';', map.get(name.toLowerCase())!);
  }
  return map;
}
const ENTITIES = buildEntities();

/** Windows-1252 readings of numeric references 0x80–0x9F, as HTML5 (and Python's `html.unescape`) apply them. */
const CP1252 = '\u20ac\x81\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\x8d\u017d\x8f' +
  '\x90\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\x9d\u017e\u0178';
const CHAR_REF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

function numericReference(num: number): string {
  if (num === 0) return '\ufffd';
  if (num === 0x0d) return '\r';
  if (num >= 0x80 && num <= 0x9f) return CP1252[num - 0x80]!;
  if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return '\ufffd';
  const invalid = (num >= 0x1 && num <= 0x8) || num === 0xb || (num >= 0xe && num <= 0x1f) || num === 0x7f ||
    (num >= 0xfdd0 && num <= 0xfdef) || (num & 0xfffe) === 0xfffe;
  return invalid ? '' : String.fromCodePoint(num);
}

/** Python's `html.unescape` (numeric references fully, named ones for the entities listed above). */
export function htmlUnescape(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(CHAR_REF, (whole: string, ref: string) => {
    if (ref[0] === '#') {
      const hex = ref[1] === 'x' || ref[1] === 'X';
      const digits = ref.slice(hex ? 2 : 1).replace(/;$/, '');
      return numericReference(parseInt(digits, hex ? 16 : 10));
    }
    const exact = ENTITIES.get(ref);
    if (exact !== undefined) return exact;
    // The longest legacy name (valid without ';') that starts the reference, as HTML5 parsers do.
    for (let len = ref.length - 1; len > 1; len--) {
      const hit = ENTITIES.get(ref.slice(0, len));
      if (hit !== undefined) return hit + ref.slice(len);
    }
    return whole;
  });
}

/**
 * CLIP's text cleaning: lone surrogates → U+FFFD, NFC (standing in for ftfy), HTML-unescape twice, whitespace runs
 * collapsed to one space, stripped, lower-cased.
 */
export function cleanText(text: string): string {
  let t = text.replace(LONE_SURROGATE, '\ufffd').normalize('NFC');
  t = htmlUnescape(htmlUnescape(t));
  return t.replace(SPACE_RUN, ' ').replace(EDGE_SPACE, '').toLowerCase();
}

/** The pre-tokens (regex pieces, not yet byte-encoded) of already cleaned text, lazily. */
export function* preTokens(cleaned: string): Generator<string> {
  for (const m of cleaned.matchAll(PRE_TOKEN)) yield m[0];
}

/**
 * The BPE start symbols of a byte-encoded word: one symbol per byte, `</w>` appended to the last. Words over
 * {@link MAX_WORD_BYTES} bytes are cut into chunks (only the last chunk ends the word) so BPE stays bounded.
 */
export function wordChunks(encoded: string): string[][] {
  const chunks: string[][] = [];
  for (let start = 0; start < encoded.length; start += MAX_WORD_BYTES) {
    chunks.push(encoded.slice(start, start + MAX_WORD_BYTES).split(''));
  }
  const last = chunks[chunks.length - 1];
  if (last) last[last.length - 1] += END_OF_WORD;
  return chunks;
}

// ---------------------------------------------------------------------------------------------------------------
// BPE. OpenAI's loop repeatedly takes the lowest-ranked adjacent pair and merges all its occurrences left to
// right. A merged symbol is longer than either part, so merging never creates a new occurrence of the same pair:
// processing the heap in rounds of equal rank, occurrences in position order, gives exactly OpenAI's result.

interface PairEntry { rank: number; left: number; right: number; vl: number; vr: number }

class MinHeap {
  private items: PairEntry[] = [];
  get size(): number { return this.items.length; }
  peekRank(): number { return this.items[0]!.rank; }
  push(e: PairEntry): void {
    const a = this.items;
    a.push(e);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]!.rank <= e.rank) break;
      a[i] = a[p]!;
      i = p;
    }
    a[i] = e;
  }
  pop(): PairEntry {
    const a = this.items;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= a.length) break;
        const c = l + 1 < a.length && a[l + 1]!.rank < a[l]!.rank ? l + 1 : l;
        if (a[c]!.rank >= last.rank) break;
        a[i] = a[c]!;
        i = c;
      }
      a[i] = last;
    }
    return top;
  }
}

/** Applies `ranks` ("a b" → rank) to the symbols of one word, returning the merged symbols. */
export function applyBpe(symbols: string[], ranks: ReadonlyMap<string, number>): string[] {
  const n = symbols.length;
  if (n < 2) return symbols.slice();
  const sym = symbols.slice();
  const next = new Int32Array(n);
  const prev = new Int32Array(n);
  const ver = new Uint32Array(n); // bumped whenever a symbol changes or dies, invalidating its heap entries
  for (let i = 0; i < n; i++) { next[i] = i + 1 < n ? i + 1 : -1; prev[i] = i - 1; }
  const heap = new MinHeap();
  const pushPair = (l: number, r: number) => {
    const rank = ranks.get(sym[l] + ' ' + sym[r]);
    if (rank !== undefined) heap.push({ rank, left: l, right: r, vl: ver[l]!, vr: ver[r]! });
  };
  const valid = (e: PairEntry) => ver[e.left] === e.vl && ver[e.right] === e.vr;
  for (let i = 0; i + 1 < n; i++) pushPair(i, i + 1);
  while (heap.size > 0) {
    const first = heap.pop();
    if (!valid(first)) continue;
    const round = [first];
    while (heap.size > 0 && heap.peekRank() === first.rank) {
      const e = heap.pop();
      if (valid(e)) round.push(e);
    }
    round.sort((a, b) => a.left - b.left);
    for (const e of round) {
      if (!valid(e)) continue; // overlapped an occurrence merged just before
      const l = e.left, r = e.right, after = next[r]!;
      sym[l] = sym[l]! + sym[r]!;
      ver[l]++; ver[r]++;
      next[l] = after;
      if (after >= 0) prev[after] = l;
      if (prev[l]! >= 0) pushPair(prev[l]!, l);
      if (after >= 0) pushPair(l, after);
    }
  }
  const out: string[] = [];
  for (let i = 0; i >= 0; i = next[i]!) out.push(sym[i]!);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------

/**
 * Options of {@link ClipTokenizer.tokenize}.
 * @category CLIP
 */
export interface TokenizeOptions {
  /** Row length including SOT and EOT; an integer >= 2. Default 77. */
  contextLength?: number;
  /** Cut over-long texts to the context (last id EOT) instead of throwing `ERR_TEXT_TOO_LONG`. Default false. */
  truncate?: boolean;
}

/**
 * `[N, contextLength]` token ids, each row `[SOT, ...ids, EOT, 0, ...]`.
 * @category CLIP
 */
export interface TokenBatch extends Tensor<Int32Array> {
  shape: [number, number];
}

interface VocabParts {
  encoder: Map<string, number>;
  decoder: (string | undefined)[];
  ranks: Map<string, number>;
  sot: number;
  eot: number;
  mergeCount: number;
}

function badFile(message: string, cause?: unknown): IpclipError {
  return new IpclipError('ERR_BAD_FILE', message, cause === undefined ? undefined : { cause });
}

function readLimited(path: string): Buffer {
  let size: number;
  let isDir: boolean;
  try {
    const st = statSync(path);
    size = st.size;
    isDir = st.isDirectory();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new IpclipError('ERR_FILE_NOT_FOUND', `no such file: ${path}`);
    throw badFile(`cannot read ${path}: ${(err as Error).message}`, err);
  }
  if (isDir) throw badFile(`${path} is a directory, expected a file`);
  if (size > MAX_VOCAB_FILE_BYTES) throw badFile(`${path} is too large for a vocabulary (${size} bytes)`);
  try {
    return readFileSync(path);
  } catch (err) {
    throw badFile(`cannot read ${path}: ${(err as Error).message}`, err);
  }
}

function decodeUtf8(bytes: Uint8Array, what: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (err) {
    throw badFile(`${what} is not valid UTF-8 text`, err);
  }
}

/** Merge lines (already without the version line) → pairs; trailing blank lines ignored, at most MAX_MERGES. */
function parseMergeLines(lines: string[], what: string): [string, string][] {
  let end = lines.length;
  while (end > 0 && lines[end - 1]!.replace(/\r$/, '') === '') end--;
  end = Math.min(end, MAX_MERGES);
  const merges: [string, string][] = [];
  for (let i = 0; i < end; i++) {
    const line = lines[i]!.replace(/\r$/, '');
    const parts = line.split(' ');
    if (parts.length !== 2 || !isBpeSymbol(parts[0]!) || !isBpeSymbol(parts[1]!)) {
      throw badFile(`${what}: merge ${i + 1} is not two byte-level symbols separated by a space: ${JSON.stringify(line.slice(0, 80))}`);
    }
    merges.push([parts[0]!, parts[1]!]);
  }
  return merges;
}

/** Whether `s` is a BPE symbol: one or more byte-unicode characters, optionally followed by `</w>`. */
export function isBpeSymbol(s: string): boolean {
  const body = s.endsWith(END_OF_WORD) ? s.slice(0, -END_OF_WORD.length) : s;
  if (body.length === 0) return false;
  for (const ch of body) if (!UNICODE_TO_BYTE.has(ch)) return false;
  return true;
}

function rankMap(merges: [string, string][]): Map<string, number> {
  return new Map(merges.map(([a, b], i) => [a + ' ' + b, i]));
}

/**
 * OpenAI CLIP's byte-level BPE tokenizer. Load with {@link ClipTokenizer.fromFile}; call {@link tokenize} for
 * model input or {@link encode} / {@link decode} for raw ids.
 * @category CLIP
 */
export class ClipTokenizer {
  /** Id of `<|startoftext|>`. */
  readonly sot: number;
  /** Id of `<|endoftext|>`. */
  readonly eot: number;
  /** Number of ids (one more than the largest id). */
  readonly vocabSize: number;
  /** Number of BPE merges in use. */
  readonly mergeCount: number;
  private readonly encoder: Map<string, number>;
  private readonly decoder: (string | undefined)[];
  private readonly ranks: Map<string, number>;
  private readonly cache = new Map<string, number[]>();

  private constructor(parts: VocabParts) {
    this.encoder = parts.encoder;
    this.decoder = parts.decoder;
    this.ranks = parts.ranks;
    this.sot = parts.sot;
    this.eot = parts.eot;
    this.mergeCount = parts.mergeCount;
    this.vocabSize = parts.decoder.length;
  }

  /**
   * Loads a vocabulary: OpenAI's format (`bpe_simple_vocab_16e6.txt.gz`, gzip or plain: a version line, then
   * one merge "a b" per line), a Hugging Face directory holding `vocab.json` and `merges.txt`, or the path of such
   * a `vocab.json` (with `merges.txt` beside it). Throws `ERR_FILE_NOT_FOUND` or `ERR_BAD_FILE`.
   */
  static fromFile(path: string): ClipTokenizer {
    check(typeof path === 'string' && path.length > 0, 'vocabulary path must be a non-empty string');
    let isDir = false;
    try { isDir = statSync(path).isDirectory(); } catch { /* readLimited reports it */ }
    if (isDir) return ClipTokenizer.fromHuggingFaceFiles(join(path, 'vocab.json'), join(path, 'merges.txt'));
    if (basename(path).toLowerCase().endsWith('.json')) {
      return ClipTokenizer.fromHuggingFaceFiles(path, join(dirname(path), 'merges.txt'));
    }
    return ClipTokenizer.fromBuffer(readLimited(path), path);
  }

  /**
   * Parses OpenAI's vocabulary format from bytes (gzip-compressed or plain). Uses the first
   * min(merges in file, 48894) merges; ids are bytes (0–255), bytes + `</w>` (256–511), merges, then SOT, EOT.
   */
  static fromBuffer(bytes: Uint8Array, name = 'vocabulary'): ClipTokenizer {
    check(bytes instanceof Uint8Array, 'fromBuffer expects a Uint8Array');
    let raw: Uint8Array = bytes;
    if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
      try {
        raw = gunzipSync(bytes, { maxOutputLength: MAX_VOCAB_FILE_BYTES });
      } catch (err) {
        throw badFile(`${name}: gzip data is corrupt or too large`, err);
      }
    }
    const lines = decodeUtf8(raw, name).split('\n');
    if (lines.length === 0 || !lines[0]!.includes('#')) {
      throw badFile(`${name}: the first line must be a version line (e.g. "#version: 0.2")`);
    }
    const merges = parseMergeLines(lines.slice(1), name);
    const vocab = baseSymbols();
    for (const [a, b] of merges) vocab.push(a + b);
    vocab.push(SOT_TEXT, EOT_TEXT);
    // Like OpenAI's dict(zip(vocab, range)): should a merged string repeat, its later id wins.
    const encoder = new Map<string, number>(vocab.map((s, i) => [s, i]));
    return new ClipTokenizer({
      encoder, decoder: vocab, ranks: rankMap(merges),
      sot: vocab.length - 2, eot: vocab.length - 1, mergeCount: merges.length,
    });
  }

  /**
   * Builds a tokenizer from Hugging Face data: `vocab` (token → id, as in `vocab.json`) and the text of
   * `merges.txt` (an optional `#version` line, then merges). Throws `ERR_BAD_FILE` when they do not fit together.
   */
  static fromHuggingFace(vocab: unknown, mergesText: string, name = 'vocab.json'): ClipTokenizer {
    if (typeof vocab !== 'object' || vocab === null || Array.isArray(vocab)) {
      throw badFile(`${name} must be a JSON object mapping tokens to ids`);
    }
    const encoder = new Map<string, number>();
    let maxId = -1;
    for (const [tok, id] of Object.entries(vocab as Record<string, unknown>)) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > MAX_HF_ID) {
        throw badFile(`${name}: id of ${JSON.stringify(tok.slice(0, 40))} is not a valid integer id`);
      }
      encoder.set(tok, id);
      maxId = Math.max(maxId, id);
    }
    const decoder = new Array<string | undefined>(maxId + 1);
    for (const [tok, id] of encoder) {
      if (decoder[id] !== undefined) throw badFile(`${name}: id ${id} is used twice`);
      decoder[id] = tok;
    }
    const lines = mergesText.split('\n');
    if (lines[0]?.startsWith('#version')) lines.shift();
    const merges = parseMergeLines(lines, 'merges.txt');
    const needed = [...baseSymbols(), ...merges.map(([a, b]) => a + b), SOT_TEXT, EOT_TEXT];
    for (const tok of needed) {
      if (!encoder.has(tok)) throw badFile(`${name} lacks the token ${JSON.stringify(tok)} that merges.txt needs`);
    }
    return new ClipTokenizer({
      encoder, decoder, ranks: rankMap(merges),
      sot: encoder.get(SOT_TEXT)!, eot: encoder.get(EOT_TEXT)!, mergeCount: merges.length,
    });
  }

  private static fromHuggingFaceFiles(vocabPath: string, mergesPath: string): ClipTokenizer {
    const vocabText = decodeUtf8(readLimited(vocabPath), vocabPath);
    const mergesText = decodeUtf8(readLimited(mergesPath), mergesPath);
    let vocab: unknown;
    try {
      vocab = JSON.parse(vocabText);
    } catch (err) {
      throw badFile(`${vocabPath} is not valid JSON`, err);
    }
    return ClipTokenizer.fromHuggingFace(vocab, mergesText, vocabPath);
  }

  /** The ids of `text` (cleaned as CLIP cleans it), without SOT/EOT. */
  encode(text: string): number[] {
    check(typeof text === 'string', 'encode expects a string');
    return this.encodeUpTo(text, Infinity);
  }

  /** Encodes until at least `limit` ids exist, so truncated megabyte inputs stop early. */
  private encodeUpTo(text: string, limit: number): number[] {
    const ids: number[] = [];
    for (const token of preTokens(cleanText(text))) {
      if (token === SOT_TEXT) ids.push(this.sot); // OpenAI's cache maps these literal strings to the specials
      else if (token === EOT_TEXT) ids.push(this.eot);
      else if (token.length <= CACHE_MAX_TOKEN) for (const id of this.encodeShortToken(token)) ids.push(id);
      else {
        // A huge token: chunk by chunk, uncached, stopping as soon as enough ids exist.
        for (const chunk of wordChunks(byteEncode(token))) {
          for (const s of applyBpe(chunk, this.ranks)) ids.push(this.encoder.get(s)!);
          if (ids.length >= limit) break;
        }
      }
      if (ids.length >= limit) break;
    }
    return ids;
  }

  private encodeShortToken(token: string): number[] {
    const hit = this.cache.get(token);
    if (hit) return hit;
    const ids: number[] = [];
    for (const chunk of wordChunks(byteEncode(token))) {
      for (const s of applyBpe(chunk, this.ranks)) ids.push(this.encoder.get(s)!);
    }
    if (this.cache.size >= CACHE_MAX_ENTRIES) this.cache.clear();
    this.cache.set(token, ids);
    return ids;
  }

  /**
   * Best-effort inverse of {@link encode}: SOT ids are skipped and decoding stops at the first EOT (what follows
   * is padding); `</w>` becomes a space, invalid UTF-8 becomes U+FFFD, and the trailing space is dropped.
   * Throws `ERR_INVALID_ARGUMENT` for an id outside `[0, vocabSize)`.
   */
  decode(ids: ArrayLike<number> | BigInt64Array): string {
    check(ids !== null && typeof ids === 'object' && typeof ids.length === 'number', 'decode expects an array of ids');
    const bytes: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = Number(ids[i]);
      check(Number.isInteger(id) && id >= 0 && id < this.vocabSize, `decode: id ${String(ids[i])} at ${i} is not in [0, ${this.vocabSize})`);
      if (id === this.eot) break;
      if (id === this.sot) continue;
      const tok = this.decoder[id];
      if (tok === undefined) continue; // a hole in a Hugging Face vocabulary
      const word = tok.endsWith(END_OF_WORD);
      for (const ch of word ? tok.slice(0, -END_OF_WORD.length) : tok) {
        const b = UNICODE_TO_BYTE.get(ch);
        if (b !== undefined) bytes.push(b);
      }
      if (word) bytes.push(0x20);
    }
    return new TextDecoder('utf-8').decode(Uint8Array.from(bytes)).replace(/ $/, '');
  }

  /**
   * Model input for one or more texts: `[N, contextLength]` int32, each row `[SOT, ...ids, EOT, 0, ...]`.
   * A text needing more than `contextLength` ids throws `ERR_TEXT_TOO_LONG` unless `truncate` is set, in which
   * case the row keeps its first `contextLength - 1` ids and ends in EOT.
   */
  tokenize(texts: string | readonly string[], opts: TokenizeOptions = {}): TokenBatch {
    const list = typeof texts === 'string' ? [texts] : texts;
    check(Array.isArray(list), 'tokenize expects a string or an array of strings');
    if (list.length === 0) throw new IpclipError('ERR_EMPTY_INPUT', 'tokenize got an empty list of texts');
    check(opts !== null && typeof opts === 'object', 'tokenize options must be an object');
    const ctx = opts.contextLength ?? 77;
    const truncate = opts.truncate ?? false;
    check(Number.isSafeInteger(ctx) && ctx >= 2, `contextLength must be an integer >= 2, got ${String(ctx)}`);
    check(typeof truncate === 'boolean', 'truncate must be a boolean');
    check(list.length * ctx <= 2 ** 28, `tokenize output of ${list.length} x ${ctx} ids is too large`);
    const data = new Int32Array(list.length * ctx);
    list.forEach((text, i) => {
      check(typeof text === 'string', `tokenize: text ${i} is not a string`);
      let ids = truncate ? this.encodeUpTo(text, ctx - 1) : this.encode(text);
      if (ids.length + 2 > ctx) {
        if (!truncate) {
          throw new IpclipError('ERR_TEXT_TOO_LONG',
            `text ${i} needs ${ids.length + 2} tokens (${ids.length} + SOT/EOT), more than contextLength ${ctx}; pass truncate: true to cut it`);
        }
        ids = ids.slice(0, ctx - 2);
      }
      const row = i * ctx;
      data[row] = this.sot;
      data.set(ids, row + 1);
      data[row + 1 + ids.length] = this.eot;
    });
    return { data, shape: [list.length, ctx] };
  }
}
