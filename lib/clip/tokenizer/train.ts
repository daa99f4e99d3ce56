/**
 * Learning a small CLIP-style BPE vocabulary from a corpus, and writing it in OpenAI's format so that
 * {@link ClipTokenizer.fromFile} reads it back. Used for the project's self-trained CLIP.
 */
import { gzipSync } from 'node:zlib';
import { IpclipError, check } from '../../core/errors.js';
import { writeFileAtomicSync } from '../../core/fs.js';
import { EOT_TEXT, MAX_MERGES, SOT_TEXT, byteEncode, cleanText, isBpeSymbol, preTokens, wordChunks } from './tokenizer.js';

/**
 * Options of {@link learnMerges}.
 * @category Pretraining
 */
export interface LearnMergesOptions {
  /** At most this many merges are learned (an integer, 0 to 48894). */
  numMerges: number;
  /** Stop once the most frequent pair occurs fewer times than this. Default 1 (learn while any pair exists). */
  minFrequency?: number;
}

interface Word { symbols: string[]; freq: number }

const pairKey = (a: string, b: string) => a + ' ' + b;

/** Adds `sign * freq` to the count of every adjacent pair of `w`, recording which words hold which pair. */
function countPairs(w: Word, index: number, sign: 1 | -1, counts: Map<string, number>, where: Map<string, Set<number>>): void {
  for (let i = 0; i + 1 < w.symbols.length; i++) {
    const key = pairKey(w.symbols[i]!, w.symbols[i + 1]!);
    const c = (counts.get(key) ?? 0) + sign * w.freq;
    if (c > 0) counts.set(key, c);
    else counts.delete(key);
    if (sign > 0) {
      let set = where.get(key);
      if (!set) where.set(key, (set = new Set()));
      set.add(index);
    }
  }
}

/** Merges every occurrence of `a b` in `symbols`, left to right without overlaps, as the tokenizer does. */
function mergeWord(symbols: string[], a: string, b: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < symbols.length; i++) {
    if (i + 1 < symbols.length && symbols[i] === a && symbols[i + 1] === b) {
      out.push(a + b);
      i++;
    } else {
      out.push(symbols[i]!);
    }
  }
  return out;
}

/**
 * Learns byte-level BPE merges from `texts`, cleaned and pre-tokenised exactly as `ClipTokenizer` does,
 * with `</w>` on each word's last byte. Each step merges the pair with the highest corpus frequency; ties go to
 * the pair that sorts first (by left symbol, then right symbol, in UTF-16 code-unit order), so the result is
 * deterministic. Returns `[left, right]` pairs, most frequent first; fewer than `numMerges` when pairs run out.
 * @category Pretraining
 */
export function learnMerges(texts: readonly string[], opts: LearnMergesOptions): string[][] {
  check(Array.isArray(texts), 'learnMerges expects an array of strings');
  if (texts.length === 0) throw new IpclipError('ERR_EMPTY_INPUT', 'learnMerges got an empty corpus');
  check(opts !== null && typeof opts === 'object', 'learnMerges options must be an object');
  const { numMerges, minFrequency = 1 } = opts;
  check(Number.isInteger(numMerges) && numMerges >= 0 && numMerges <= MAX_MERGES,
    `numMerges must be an integer in [0, ${MAX_MERGES}], got ${String(numMerges)}`);
  check(Number.isInteger(minFrequency) && minFrequency >= 1, `minFrequency must be an integer >= 1, got ${String(minFrequency)}`);

  const freq = new Map<string, number>();
  texts.forEach((text, i) => {
    check(typeof text === 'string', `learnMerges: text ${i} is not a string`);
    for (const token of preTokens(cleanText(text))) {
      if (token === SOT_TEXT || token === EOT_TEXT) continue; // specials are never split
      // Long tokens are cut into the same chunks the tokenizer will see.
      for (const chunk of wordChunks(byteEncode(token))) {
        const key = chunk.join(' ');
        freq.set(key, (freq.get(key) ?? 0) + 1);
      }
    }
  });
  const words: Word[] = [...freq].map(([key, f]) => ({ symbols: key.split(' '), freq: f }));

  const counts = new Map<string, number>();
  const where = new Map<string, Set<number>>();
  words.forEach((w, i) => countPairs(w, i, 1, counts, where));

  const merges: string[][] = [];
  while (merges.length < numMerges) {
    let best: string | undefined;
    let bestCount = 0;
    // ' ' sorts below every byte symbol, so comparing "a b" keys orders pairs by (a, b).
    for (const [key, c] of counts) {
      if (c > bestCount || (c === bestCount && best !== undefined && key < best)) { best = key; bestCount = c; }
    }
    if (best === undefined || bestCount < minFrequency) break;
    const [a, b] = best.split(' ') as [string, string];
    merges.push([a, b]);
    for (const i of where.get(best) ?? []) {
      const w = words[i]!;
      countPairs(w, i, -1, counts, where);
      w.symbols = mergeWord(w.symbols, a, b);
      countPairs(w, i, 1, counts, where);
    }
    where.delete(best);
  }
  return merges;
}

/**
 * Writes `merges` as a gzip-compressed OpenAI vocabulary (a `#version: 0.2` line, then "left right" per line),
 * via a temporary file renamed into place so readers never see a partial file. Throws `ERR_INVALID_ARGUMENT`
 * for malformed merges and `ERR_IO` when the write fails.
 * @category Pretraining
 */
export function writeOpenAiVocab(path: string, merges: readonly (readonly string[])[]): void {
  check(typeof path === 'string' && path.length > 0, 'vocabulary path must be a non-empty string');
  check(Array.isArray(merges), 'merges must be an array of [left, right] pairs');
  check(merges.length <= MAX_MERGES, `at most ${MAX_MERGES} merges fit a CLIP vocabulary, got ${merges.length}`);
  const lines = ['#version: 0.2'];
  merges.forEach((m, i) => {
    check(Array.isArray(m) && m.length === 2 && m.every((s) => typeof s === 'string' && isBpeSymbol(s)),
      `merge ${i} must be two byte-level BPE symbols (byte-unicode characters, optionally ending in </w>)`);
    lines.push(m[0] + ' ' + m[1]);
  });
  const data = gzipSync(Buffer.from(lines.join('\n') + '\n', 'utf8'));
  writeFileAtomicSync(path, data, 'the vocabulary');
}
