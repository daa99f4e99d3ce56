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
   * its dataset index in `stream` (a cache of `loader.dataset.length` samples).
   * @throws IpclipError `ERR_ABORTED` when `signal` fires between batches; loader and native errors.
   */
  async fill(stream: CacheStream, loader: BatchLoader, signal?: AbortSignal): Promise<void> {
    const size = loader.dataset.length;
    for await (const b of loader.epoch(0)) {
      if (signal?.aborted) throw new IpclipError('ERR_ABORTED', 'feature caching stopped on request');
      await this.prompt.exclusive('feature caching', (native) => native.cacheFeatures(stream, size, Int32Array.from(b.indices), b.images.data, [...b.images.shape]));
    }
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
