/**
 * Building the two feature banks (method §3) before training: one no-grad pass over each stream with the
 * current prompt, the authorized rule on A and the unauthorized rule on U.
 */
import { IpclipError } from '../../core/errors.js';
import { Rng } from '../../core/rng.js';
import type { TransformChoice } from '../../data/loader.js';
import type { DomainDataset } from '../../data/dataset.js';
import type { PromptModel } from '../prompt-model.js';
import type { StreamPlan } from '../scenario.js';
import type { DataParallel } from './distributed.js';
import { streamLoader, type LoaderSettings, type StreamData } from './streams.js';

/** How the bank passes run. */
export interface BankPassOptions {
  /** The run seed: each pass's loader seed is derived from it (`bank/authorized`, `bank/unauthorized`). */
  seed: number;
  /** Images per forward pass (the banks do not depend on it). */
  batchSize: number;
  loaders: LoaderSettings;
  signal?: AbortSignal;
  /** Data parallelism: each rank encodes its slice of every bank batch; the bank takes all of them. */
  group?: DataParallel;
}

/**
 * Empties the banks of `prompt`, then fills them from `data` under `plan`'s transforms (the bank streams of the
 * run's preset, lib/ipclip/scenario.ts `bankStreams`), in dataset order. The batches come from the loader, so
 * the binding's structure checks are the only ones they need.
 * @throws IpclipError `ERR_ABORTED` when `signal` fires between batches; loader and native errors.
 */
export async function buildBanks(prompt: PromptModel, data: StreamData, plan: StreamPlan, opts: BankPassOptions): Promise<void> {
  await prompt.resetBanks();
  const seeds = new Rng(opts.seed);
  const pass = async (dataset: DomainDataset, transform: TransformChoice, key: string, which: 'authorized' | 'unauthorized') => {
    const group = opts.group;
    const loader = streamLoader(opts.loaders, dataset, transform, seeds.fork(key).seed, opts.batchSize * (group?.worldSize ?? 1), false);
    try {
      if (group) return await gatheredPass(prompt, loader, group, which, opts.signal);
      for await (const b of loader.epoch(0)) {
        if (opts.signal?.aborted) throw new IpclipError('ERR_ABORTED', 'bank construction stopped on request');
        await prompt.exclusive('bank construction', (native) => native.bankUpdate(b.images.data, [...b.images.shape], b.labels, which));
      }
    } finally {
      await loader.close();
    }
  };
  await pass(data.authorized, plan.authorized, 'bank/authorized', 'authorized');
  await pass(data.unauthorized, plan.unauthorized, 'bank/unauthorized', 'unauthorized');
}

/** A bank pass over ranks: every global batch is split over the ranks, encoded there and gathered into the bank. */
async function gatheredPass(prompt: PromptModel, loader: ReturnType<typeof streamLoader>, group: DataParallel,
  which: 'authorized' | 'unauthorized', signal: AbortSignal | undefined): Promise<void> {
  const count = loader.batchesPerEpoch();
  const slices = Array.from({ length: count }, (_, b) => group.shard(loader.drawsOf(0, b)));
  const batches = loader.batches(slices.filter((s) => s.length > 0))[Symbol.asyncIterator]();
  try {
    for (const slice of slices) {
      // Every rank takes the same decision here (the signal is local: a rank that stops leaves the others to
      // fail with ERR_DISTRIBUTED at the next collective).
      if (signal?.aborted) throw new IpclipError('ERR_ABORTED', 'bank construction stopped on request');
      if (slice.length === 0) {
        await prompt.exclusive('bank construction', (native) => native.bankUpdate(null, null, new Int32Array(0), which, { gather: true }));
        continue;
      }
      const next = await batches.next();
      if (next.done) throw new IpclipError('ERR_NATIVE', 'the bank loader ended early');
      const b = next.value;
      await prompt.exclusive('bank construction', (native) => native.bankUpdate(b.images.data, [...b.images.shape], b.labels, which, { gather: true }));
    }
  } finally {
    await batches.return?.();
  }
}
