/**
 * Per-sample loading (decode → transform → normalise) and the worker-thread entry point that runs it.
 *
 * The same {@link processSample} runs in a worker thread (when the loader finds the compiled
 * `loader-worker.js` beside it) or on the main thread as a fallback, so results never depend on where
 * or in which order samples were prepared: each job carries its own RNG seed.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { IpclipError } from '../core/errors.js';
import { Rng } from '../core/rng.js';
import { applyTransform, toImageTensor, type TransformSpec } from '../image/transforms.js';

/** One sample to prepare. */
export interface SampleJob {
  /** A file path or encoded image bytes. */
  input: string | Uint8Array;
  spec: TransformSpec;
  size: number;
  /** Seed of the sample's own generator (`Rng.seed` of its fork), rebuilt with `new Rng(rngSeed)`. */
  rngSeed: number;
  maxPixels?: number;
}

/** Messages a worker sends back. */
export type WorkerReply =
  | { ready: true }
  | { id: number; ok: true; data: Float32Array }
  | { id: number; ok: false; code: string; message: string };

/** Marker in `workerData` so this module only listens when the loader started it. */
export const WORKER_MARKER = 'ipclipLoaderWorker';

/** Decodes and transforms one sample into its normalised `[3, size, size]` float32 planes. */
export async function processSample(job: SampleJob): Promise<Float32Array> {
  const img = await applyTransform(job.input, job.spec, job.size, new Rng(job.rngSeed),
    job.maxPixels === undefined ? undefined : { maxPixels: job.maxPixels });
  const { data } = toImageTensor([img]);
  if (data.length !== 3 * job.size * job.size) {
    throw new IpclipError('ERR_NATIVE', `transform produced ${data.length} values, expected 3×${job.size}×${job.size}`);
  }
  return data;
}

const port = parentPort;
if (port && (workerData as Record<string, unknown> | undefined)?.[WORKER_MARKER] === true) {
  port.on('message', (msg: { id: number; job: SampleJob }) => {
    processSample(msg.job).then(
      (data) => {
        // Transfer the pixels instead of copying them (copy first if the array is a view of a larger buffer).
        const own = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : data.slice();
        port.postMessage({ id: msg.id, ok: true, data: own } satisfies WorkerReply, [own.buffer as ArrayBuffer]);
      },
      (err: unknown) => {
        const code = err instanceof IpclipError ? err.code : 'ERR_BAD_IMAGE';
        const message = err instanceof Error ? err.message : String(err);
        port.postMessage({ id: msg.id, ok: false, code, message } satisfies WorkerReply);
      },
    );
  });
  port.postMessage({ ready: true } satisfies WorkerReply);
}
