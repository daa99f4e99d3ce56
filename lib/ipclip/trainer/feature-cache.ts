/**
 * The feature cache of a cached fit (`featureCache: true`): each sample's frozen vision-tower output (the image
 * embedding and the per-layer token mean/std the prompt is built from), computed once per fit and kept
 * native-side (native/ipclip/feature_cache.*, which owns the layout); each step names its samples by dataset
 * index and the native step gathers them, so no feature crosses into JS.
 */
import { IpclipError } from '../../core/errors.js';
import type { BatchLoader } from '../../data/loader.js';
import type { NativeStepOptions, NativeStepResult } from '../../native/types.js';
import type { PromptModel } from '../prompt-model.js';
import type { DataParallel } from './distributed.js';

/** A stream of the cache. */
export type CacheStream = 'authorized' | 'unauthorized';

/** The cached features of a prompt model's two streams, by dataset index (held by the native prompt model). */
export class FeatureCache {
  constructor(private readonly prompt: PromptModel) {}

  /** Frees both streams' cached features (nothing to free on a disposed prompt). */
  async clear(): Promise<void> {
    if (this.prompt.disposed) return;
    await this.prompt.exclusive('clearFeatures', (native) => native.clearFeatures());
  }

  /**
   * Runs the vision tower over one pass of `loader` (epoch 0, its order) and keeps each sample's features under
   * its dataset index in `stream` (a cache of `loader.dataset.length` samples). With `group` (every rank calls
   * it, with a loader of the same samples), this rank encodes only its slice of each of the loader's batches and
   * the ranks then exchange their rows: every rank ends with the whole cache, having run the tower on 1/N of it.
   * @throws IpclipError `ERR_ABORTED` when `signal` fires between batches; loader and native errors.
   */
  async fill(stream: CacheStream, loader: BatchLoader, signal?: AbortSignal, group?: DataParallel): Promise<void> {
    const size = loader.dataset.length;
    // A sample's transform depends on (seed, epoch, index) only, so its slice of epoch 0 on any rank gets the
    // features it would get in one process.
    const batches = group
      ? loader.batches(Array.from({ length: loader.batchesPerEpoch() }, (_, b) => group.shard(loader.drawsOf(0, b))).filter((s) => s.length > 0))
      : loader.epoch(0);
    for await (const b of batches) {
      if (signal?.aborted) throw new IpclipError('ERR_ABORTED', 'feature caching stopped on request');
      await this.prompt.exclusive('feature caching', (native) => native.cacheFeatures(stream, size, Int32Array.from(b.indices), b.images.data, [...b.images.shape]));
    }
    if (group) await this.prompt.exclusive('feature sharing', (native) => native.shareFeatures(stream));
  }

  /**
   * One training step on cached samples: A's `indicesA` of the authorized stream, U's `indicesU` of the
   * unauthorized one (not read when `opts.unauthorized` is false: the reference's CE_A-only step).
   * @throws IpclipError `ERR_INVALID_ARGUMENT` for a sample that was never cached; native errors.
   */
  async step(indicesA: Int32Array, labelsA: Int32Array, indicesU: Int32Array, labelsU: Int32Array, opts: NativeStepOptions): Promise<NativeStepResult> {
    return this.prompt.exclusive('step', (native) => native.stepCached(indicesA, labelsA, indicesU, labelsU, opts));
  }
}
