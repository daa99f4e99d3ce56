/**
 * The similarity arithmetic on embeddings and logits, once: cosine logits, row-wise softmax and argmax.
 * Used by {@link Clip}, the prompt model and the evaluators; public through {@link clipLogits} and
 * {@link softmaxRows}.
 */
import { check } from '../core/errors.js';
import type { FloatTensor, Tensor } from '../core/tensor.js';

/** L2 norms of the `rows` rows of a `[rows, d]` tensor; a zero row gets 1 (its cosine with everything is 0). */
function rowNorms(t: FloatTensor, rows: number, d: number): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let k = 0; k < d; k++) s += t.data[r * d + k]! ** 2;
    out[r] = Math.sqrt(s) || 1;
  }
  return out;
}

/**
 * Logits `[N, M]` of CLIP: `scale · cos(image_i, text_j)` (both sides L2-normalised here), as OpenAI's
 * `logits_per_image`. With `logitScale` 1 these are the plain cosine similarities.
 * @category CLIP
 */
export function clipLogits(imageEmbeds: FloatTensor, textEmbeds: FloatTensor, logitScale: number): Tensor {
  check(imageEmbeds.shape.length === 2 && textEmbeds.shape.length === 2 && imageEmbeds.shape[1] === textEmbeds.shape[1],
    `clipLogits: expected [N,D] and [M,D] embeddings, got [${imageEmbeds.shape}] and [${textEmbeds.shape}]`);
  const [n, d] = imageEmbeds.shape as [number, number];
  const m = textEmbeds.shape[0]!;
  const ni = rowNorms(imageEmbeds, n, d);
  const nt = rowNorms(textEmbeds, m, d);
  const out = new Float32Array(n * m);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += imageEmbeds.data[i * d + k]! * textEmbeds.data[j * d + k]!;
      out[i * m + j] = (logitScale * s) / (ni[i]! * nt[j]!);
    }
  }
  return { data: out, shape: [n, m] };
}

/** Softmax of one row of logits, in float64 (numerically stable: the maximum is subtracted first). */
export function softmax(row: ArrayLike<number>): number[] {
  let max = -Infinity;
  for (let j = 0; j < row.length; j++) if (row[j]! > max) max = row[j]!;
  const e = Array.from({ length: row.length }, (_, j) => Math.exp(row[j]! - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

/**
 * Row-wise softmax of `[N, M]` logits (numerically stable), as float32.
 * @category CLIP
 */
export function softmaxRows(logits: FloatTensor): Tensor {
  const [n, m] = logits.shape as [number, number];
  const out = new Float32Array(n * m);
  for (let i = 0; i < n; i++) out.set(softmax(logits.data.subarray(i * m, (i + 1) * m)), i * m);
  return { data: out, shape: [n, m] };
}

/** Row-wise argmax of `[N, C]` (the first maximum wins). */
export function argmaxRows(t: FloatTensor): Int32Array {
  const [n, c] = t.shape as [number, number];
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < c; j++) if (t.data[i * c + j]! > t.data[i * c + best]!) best = j;
    out[i] = best;
  }
  return out;
}
