/**
 * The prefetching batch loader: turns a {@link DomainDataset} into batches of normalised image tensors,
 * preparing the next batches while the consumer (the native training step) works on the current one.
 *
 * Determinism: the sample order of epoch `e` comes from `new Rng(seed).fork('order/' + e)`, and sample
 * `i` of epoch `e` is augmented with `new Rng(seed).fork(`${e}/${i}`)` (its transform spec, when drawn
 * per sample, from that generator's `fork('spec')`). A batch therefore depends only on
 * (seed, epoch, position): not on prefetch depth, thread count or scheduling, so training resumes exactly
 * with {@link BatchLoader.batchAt} or `epoch(e, from)`. Two loaders over the same images (e.g. the A and
 * U streams of target-free training) should get different seeds, or their crops will coincide.
 *
 * Threads: decoding runs in sharp (libuv threads); the pure-JS pixel work of augmentation runs in a small
 * pool of worker threads started from the compiled `loader-worker.js` beside this file. When that file
 * is absent (running from the TypeScript sources, e.g. under vitest) or a worker fails to start, the same
 * code runs on the main thread instead: results are identical, only the event loop is busier.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { DomainDataset } from './dataset.js';
import { IpclipError, check, type IpclipErrorCode } from '../core/errors.js';
import { processSample, WORKER_MARKER, type SampleJob, type WorkerReply } from './loader-worker.js';
import { Rng } from '../core/rng.js';
import type { ImageTensor } from '../core/tensor.js';
import { authorizationMixture, type TransformSpec } from '../image/transforms.js';

/**
 * One batch: `[N, 3, S, S]` images, their labels, their indices in the dataset and the transform each got.
 * @category Data
 */
export interface Batch {
  images: ImageTensor;
  labels: Int32Array;
  indices: number[];
  /** The transform applied to each sample (for a per-sample choice: the one drawn). */
  specs: TransformSpec[];
}

/**
 * One sample of a stream: dataset index `index` as drawn in pass `epoch` of the stream. Its augmentation
 * depends on both (and on the loader's seed), so a sample seen again in a later pass gets fresh random crops.
 * @category Data
 */
export interface Draw {
  epoch: number;
  index: number;
}

/**
 * How each sample is transformed: one spec for all, the authorization mixture (method §5), or a function.
 * @category Data
 */
export type TransformChoice = TransformSpec | 'authorization-mixture' | ((rng: Rng, index: number) => TransformSpec);

/**
 * Options of {@link BatchLoader}.
 * @category Data
 */
export interface LoaderOptions {
  batchSize: number;
  /** Output side length S in pixels. */
  size: number;
  seed: number;
  /** Shuffle the order every epoch (default true). */
  shuffle?: boolean;
  /** Drop the last, smaller batch (default false). */
  dropLast?: boolean;
  /**
   * When the last batch would hold a single sample, add it to the previous batch instead (which then has
   * `batchSize + 1`), so that every sample is in the epoch and no batch has one image (default false).
   */
  mergeSingleLast?: boolean;
  transform: TransformChoice;
  /** Batches prepared ahead of the one being consumed (default 2; 0 = no prefetch). */
  prefetch?: number;
  /** Worker threads for augmentation (default min(2, cores); 0 = main thread only). */
  workers?: number;
  /** Refuse images with more pixels than this (see `decodeImage`). */
  maxPixels?: number;
}

/**
 * Batches of a dataset, with prefetching and worker-thread augmentation. Iterating the loader itself
 * (`for await (const b of loader)`) runs epochs 0, 1, 2, … one per loop; {@link BatchLoader.epoch} picks one.
 * @category Data
 */
export class BatchLoader implements AsyncIterable<Batch> {
  private readonly batchSize: number;
  private readonly size: number;
  private readonly seed: number;
  private readonly shuffle: boolean;
  private readonly dropLast: boolean;
  private readonly mergeSingleLast: boolean;
  private readonly prefetch: number;
  private readonly transform: TransformChoice;
  private readonly maxPixels?: number;
  private readonly pool: SamplePool;
  private orderCache: { epoch: number; order: number[] } | null = null;
  private nextEpoch = 0;
  private closed = false;

  /**
   * @throws IpclipError `ERR_EMPTY_INPUT` for an empty dataset (or one too small for a single batch with
   * `dropLast`), `ERR_INVALID_ARGUMENT` for bad options.
   */
  constructor(readonly dataset: DomainDataset, opts: LoaderOptions) {
    check(dataset !== null && typeof dataset === 'object' && Array.isArray(dataset.samples), 'dataset must be a DomainDataset');
    check(opts !== null && typeof opts === 'object', 'loader options are required');
    check(Number.isInteger(opts.batchSize) && opts.batchSize > 0, `batchSize must be a positive integer, got ${opts.batchSize}`);
    check(Number.isInteger(opts.size) && opts.size > 0, `size must be a positive integer, got ${opts.size}`);
    check(Number.isInteger(opts.seed), `seed must be an integer, got ${opts.seed}`);
    const prefetch = opts.prefetch ?? 2;
    check(Number.isInteger(prefetch) && prefetch >= 0, `prefetch must be a non-negative integer, got ${prefetch}`);
    const workers = opts.workers ?? Math.min(2, availableParallelism());
    check(Number.isInteger(workers) && workers >= 0, `workers must be a non-negative integer, got ${workers}`);
    const t = opts.transform;
    check(t === 'authorization-mixture' || typeof t === 'function' || (t !== null && typeof t === 'object'),
      "transform must be a TransformSpec, 'authorization-mixture' or a function");
    this.batchSize = opts.batchSize;
    this.size = opts.size;
    this.seed = opts.seed;
    this.shuffle = opts.shuffle ?? true;
    this.dropLast = opts.dropLast ?? false;
    this.mergeSingleLast = opts.mergeSingleLast ?? false;
    check(!(this.dropLast && this.mergeSingleLast), 'dropLast and mergeSingleLast exclude each other');
    this.prefetch = prefetch;
    this.transform = t;
    this.maxPixels = opts.maxPixels;
    if (dataset.length === 0) throw new IpclipError('ERR_EMPTY_INPUT', `dataset '${dataset.domain}' has no samples`);
    if (this.batchesPerEpoch() === 0) {
      throw new IpclipError('ERR_EMPTY_INPUT',
        `dataset '${dataset.domain}' has ${dataset.length} samples: no full batch of ${this.batchSize} with dropLast`);
    }
    this.pool = new SamplePool(workers);
  }

  /** Number of batches in one epoch. */
  batchesPerEpoch(): number {
    const n = this.dataset.length, B = this.batchSize;
    if (this.dropLast) return Math.floor(n / B);
    if (this.mergeSingleLast && n > B && n % B === 1) return Math.floor(n / B);
    return Math.ceil(n / B);
  }

  /** Batch `b` of an epoch as positions `[start, end)` in that epoch's order. */
  batchRange(b: number): [number, number] {
    const count = this.batchesPerEpoch();
    check(Number.isInteger(b) && b >= 0 && b < count, `batch index must be an integer in [0, ${count}), got ${b}`);
    const start = b * this.batchSize;
    return [start, b === count - 1 && !this.dropLast ? this.dataset.length : start + this.batchSize];
  }

  /** Worker threads in use (0 when samples are prepared on the main thread). */
  get threads(): number {
    return this.pool.threads;
  }

  /** The dataset indices of epoch `e`'s sample order. */
  order(epoch: number): number[] {
    check(Number.isInteger(epoch) && epoch >= 0, `epoch must be a non-negative integer, got ${epoch}`);
    if (this.orderCache?.epoch !== epoch) {
      const idx = this.dataset.samples.map((_, i) => i);
      this.orderCache = { epoch, order: this.shuffle ? new Rng(this.seed).fork(`order/${epoch}`).shuffle(idx) : idx };
    }
    return this.orderCache.order;
  }

  /**
   * Batch `b` of epoch `epoch`, identical to the one `epoch(epoch)` yields at that position.
   * @throws IpclipError (rejects) `ERR_BAD_IMAGE` naming the sample for an unreadable image,
   * `ERR_FILE_NOT_FOUND` for a vanished file, `ERR_DISPOSED` after {@link BatchLoader.close}.
   */
  async batchAt(epoch: number, b: number): Promise<Batch> {
    if (this.closed) throw new IpclipError('ERR_DISPOSED', 'the loader is closed');
    return this.batchOf(this.drawsOf(epoch, b));
  }

  /** The draws of batch `b` of epoch `epoch` (what {@link BatchLoader.batchAt} loads). */
  drawsOf(epoch: number, b: number): Draw[] {
    const [start, end] = this.batchRange(b);
    return this.order(epoch).slice(start, end).map((index) => ({ epoch, index }));
  }

  /**
   * A batch of any samples: `draws[k]` is dataset sample `index`, transformed as in pass `epoch` (exactly as
   * it is at its place in `epoch(epoch)`).
   * @throws IpclipError (rejects) as {@link BatchLoader.batchAt}; `ERR_INVALID_ARGUMENT` for a bad draw.
   */
  async batchOf(draws: readonly Draw[]): Promise<Batch> {
    if (this.closed) throw new IpclipError('ERR_DISPOSED', 'the loader is closed');
    check(Array.isArray(draws) && draws.length > 0, 'a batch needs at least one draw');
    for (const d of draws) {
      check(Number.isInteger(d?.epoch) && d.epoch >= 0 && Number.isInteger(d.index) && d.index >= 0 && d.index < this.dataset.length,
        `draw ${JSON.stringify(d)} is not { epoch ≥ 0, index in [0, ${this.dataset.length}) }`);
    }
    const indices = draws.map((d) => d.index);
    const plane = 3 * this.size * this.size;
    const images = new Float32Array(indices.length * plane);
    const specs: TransformSpec[] = new Array(draws.length);
    await Promise.all(draws.map(async ({ epoch, index }, k) => {
      const job = this.job(epoch, index);
      specs[k] = job.spec;
      const data = await this.pool.run(job).catch((err: unknown) => {
        throw this.sampleError(index, err);
      });
      images.set(data, k * plane);
    }));
    const labels = Int32Array.from(indices, (i) => this.dataset.samples[i].label);
    return { images: { data: images, shape: [indices.length, 3, this.size, this.size] }, labels, indices, specs };
  }

  /** The batches `plan` lists, in order, prepared `prefetch` batches ahead (see {@link BatchLoader.batchOf}). */
  batches(plan: Iterable<readonly Draw[]>): AsyncIterable<Batch> {
    const loader = this;
    return { [Symbol.asyncIterator]: () => prefetched(loader, plan[Symbol.iterator](), loader.prefetch) };
  }

  /** The batches of epoch `e`, from batch `from` (default 0) on, prepared `prefetch` batches ahead. */
  epoch(e: number, from = 0): AsyncIterable<Batch> {
    check(Number.isInteger(e) && e >= 0, `epoch must be a non-negative integer, got ${e}`);
    check(Number.isInteger(from) && from >= 0 && from <= this.batchesPerEpoch(), `from must be in [0, ${this.batchesPerEpoch()}], got ${from}`);
    const loader = this;
    return {
      [Symbol.asyncIterator]: () => prefetched(loader, positions(loader, e, from), loader.prefetch),
    };
  }

  /** Runs the next epoch (0 on the first loop, then 1, 2, …). */
  [Symbol.asyncIterator](): AsyncIterator<Batch> {
    return this.epoch(this.nextEpoch++)[Symbol.asyncIterator]();
  }

  /** Stops the worker threads; later calls reject with `ERR_DISPOSED`. Safe to call twice. */
  async close(): Promise<void> {
    this.closed = true;
    await this.pool.close();
  }

  /** @internal the prefetch depth, for {@link cycle}. */
  get prefetchDepth(): number {
    return this.prefetch;
  }

  private job(epoch: number, index: number): SampleJob {
    const sample = this.dataset.samples[index];
    const rng = new Rng(this.seed).fork(`${epoch}/${index}`);
    const t = this.transform;
    const spec = t === 'authorization-mixture' ? authorizationMixture(rng.fork('spec'))
      : typeof t === 'function' ? t(rng.fork('spec'), index) : t;
    const input = sample.path ?? sample.buffer;
    check(input !== undefined, `sample ${index} has neither a path nor a buffer`);
    return { input, spec, size: this.size, rngSeed: rng.seed, maxPixels: this.maxPixels };
  }

  private sampleError(index: number, err: unknown): IpclipError {
    const sample = this.dataset.samples[index];
    const name = sample.path !== undefined ? `"${sample.path}"` : `in-memory image #${index}`;
    const message = err instanceof Error ? err.message : String(err);
    // Keep the codes that say what went wrong with the file or the options; anything else is a bad image.
    const kept: IpclipErrorCode[] = ['ERR_BAD_IMAGE', 'ERR_FILE_NOT_FOUND', 'ERR_INVALID_ARGUMENT', 'ERR_DISPOSED'];
    const code = err instanceof IpclipError && kept.includes(err.code) ? err.code : 'ERR_BAD_IMAGE';
    const named = message.includes(sample.path ?? '\0') ? message : `${name}: ${message}`;
    return new IpclipError(code, `sample ${index} of '${this.dataset.domain}': ${named}`, { cause: err });
  }
}

/** Where global step `step` of a cycled stream falls: `{ epoch, batch }` of `loader`. */
export function cyclePosition(loader: BatchLoader, step: number): { epoch: number; batch: number } {
  check(Number.isInteger(step) && step >= 0, `step must be a non-negative integer, got ${step}`);
  const per = loader.batchesPerEpoch();
  return { epoch: Math.floor(step / per), batch: step % per };
}

/**
 * A stream cycled batch by batch: the batches at global steps `fromStep, fromStep + 1, …` (`count` of them,
 * default endless), where step `g` is batch `g mod B` of the loader's epoch `floor(g / B)`, so an epoch's
 * short last batch stays short. `cycle(u, e * nA + k)` resumes it at step `e * nA + k` exactly. (The trainer
 * cycles its U stream sample by sample instead, with {@link cycledDraws}, so that U's batches always match A's.)
 */
export function cycle(loader: BatchLoader, fromStep = 0, count = Infinity): AsyncIterable<Batch> {
  cyclePosition(loader, fromStep);
  check(count === Infinity || (Number.isInteger(count) && count >= 0), `count must be a non-negative integer, got ${count}`);
  function* steps(): Generator<Draw[]> {
    for (let g = fromStep; g < fromStep + count; g++) {
      const { epoch, batch } = cyclePosition(loader, g);
      yield loader.drawsOf(epoch, batch);
    }
  }
  return { [Symbol.asyncIterator]: () => prefetched(loader, steps(), loader.prefetchDepth) };
}

/**
 * Samples `[start, start + count)` of the endless stream that runs through `loader`'s epoch orders one after
 * the other (epoch 0's order, then epoch 1's, …): position `k` is sample `k mod n` of epoch `floor(k / n)`'s
 * order, n = the dataset size. A batch taken from it that reaches past the end of a pass wraps into the next
 * one, so the stream never yields a short batch and never skips a sample.
 */
export function cycledDraws(loader: BatchLoader, start: number, count: number): Draw[] {
  check(Number.isSafeInteger(start) && start >= 0, `start must be a non-negative integer, got ${start}`);
  check(Number.isInteger(count) && count >= 0, `count must be a non-negative integer, got ${count}`);
  const n = loader.dataset.length;
  const out: Draw[] = [];
  for (let k = start; k < start + count; k++) {
    const epoch = Math.floor(k / n);
    out.push({ epoch, index: loader.order(epoch)[k % n]! });
  }
  return out;
}

function* positions(loader: BatchLoader, epoch: number, from: number): Generator<Draw[]> {
  const count = loader.batchesPerEpoch();
  for (let b = from; b < count; b++) yield loader.drawsOf(epoch, b);
}

/**
 * Yields batches in order. While the consumer holds batch k, batches k+1 … k+depth are being prepared
 * (depth 0: strictly one at a time).
 */
async function* prefetched(loader: BatchLoader, where: Iterator<readonly Draw[]>, depth: number): AsyncGenerator<Batch> {
  const queue: Promise<Batch>[] = [];
  let done = false;
  const fill = (limit: number) => {
    while (!done && queue.length < limit) {
      const next = where.next();
      if (next.done) { done = true; break; }
      const p = loader.batchOf(next.value);
      p.catch(() => {}); // a batch may fail before it is awaited; the error surfaces when it is
      queue.push(p);
    }
  };
  fill(Math.max(1, depth));
  while (queue.length > 0) {
    const batch = await queue.shift()!;
    fill(depth); // start the next batches before handing this one out, so they overlap with the consumer
    yield batch;
    fill(1);
  }
}

interface PendingJob {
  job: SampleJob;
  resolve: (data: Float32Array) => void;
  reject: (err: unknown) => void;
}

interface PoolWorker {
  worker: Worker;
  ready: boolean;
  pending: Map<number, PendingJob>;
}

/** A few worker threads running {@link processSample}, or the main thread when none can run. */
class SamplePool {
  private readonly workers: PoolWorker[] = [];
  private readonly script: URL | null;
  private nextId = 0;
  private inThread: boolean;

  constructor(private readonly wanted: number) {
    this.script = wanted > 0 ? workerScript() : null;
    this.inThread = this.script === null;
  }

  get threads(): number {
    return this.inThread ? 0 : this.wanted;
  }

  run(job: SampleJob): Promise<Float32Array> {
    if (this.inThread) return processSample(job);
    if (this.workers.length < this.wanted) this.workers.push(this.spawn());
    // Least busy worker first; ties go to the earliest.
    const w = this.workers.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      w.pending.set(id, { job, resolve, reject });
      w.worker.ref();
      w.worker.postMessage({ id, job });
    });
  }

  async close(): Promise<void> {
    const all = this.workers.splice(0);
    for (const w of all) this.fail(w, new IpclipError('ERR_DISPOSED', 'the loader was closed'));
    await Promise.all(all.map((w) => w.worker.terminate()));
  }

  private spawn(): PoolWorker {
    const entry: PoolWorker = {
      worker: new Worker(this.script!, { workerData: { [WORKER_MARKER]: true } }),
      ready: false,
      pending: new Map(),
    };
    entry.worker.unref();
    entry.worker.on('message', (msg: WorkerReply) => {
      if ('ready' in msg) { entry.ready = true; return; }
      const p = entry.pending.get(msg.id);
      if (!p) return;
      entry.pending.delete(msg.id);
      if (entry.pending.size === 0) entry.worker.unref(); // idle workers must not keep the process alive
      if (msg.ok) p.resolve(msg.data);
      else p.reject(new IpclipError(msg.code as IpclipErrorCode, msg.message));
    });
    const died = (err: unknown) => this.died(entry, err);
    entry.worker.on('error', died);
    entry.worker.on('exit', (code) => died(new IpclipError('ERR_NATIVE', `loader worker exited with code ${code}`)));
    return entry;
  }

  /** A worker that never started means workers cannot run here: finish its jobs and all later ones in-thread. */
  private died(entry: PoolWorker, err: unknown): void {
    const i = this.workers.indexOf(entry);
    if (i < 0) return; // closed or already handled
    this.workers.splice(i, 1);
    if (!entry.ready) {
      this.inThread = true;
      for (const p of entry.pending.values()) processSample(p.job).then(p.resolve, p.reject);
      entry.pending.clear();
      for (const w of this.workers.splice(0)) {
        for (const p of w.pending.values()) processSample(p.job).then(p.resolve, p.reject);
        w.pending.clear();
        void w.worker.terminate();
      }
      return;
    }
    this.fail(entry, new IpclipError('ERR_NATIVE', `loader worker failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err }));
    void entry.worker.terminate();
  }

  private fail(entry: PoolWorker, err: IpclipError): void {
    for (const p of entry.pending.values()) p.reject(err);
    entry.pending.clear();
  }
}

/** The compiled worker script beside this module, or null when running from sources (no `.js` twin). */
function workerScript(): URL | null {
  if (!import.meta.url.endsWith('.js')) return null;
  const url = new URL('./loader-worker.js', import.meta.url);
  try {
    return existsSync(fileURLToPath(url)) ? url : null;
  } catch {
    return null;
  }
}
