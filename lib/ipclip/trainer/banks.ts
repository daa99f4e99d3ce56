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
import { streamLoader, type LoaderSettings, type StreamData } from './streams.js';

/** How the bank passes run. */
export interface BankPassOptions {
  /** The run seed: each pass's loader seed is derived from it (`bank/authorized`, `bank/unauthorized`). */
  seed: number;
  /** Images per forward pass (the banks do not depend on it). */
  batchSize: number;
  loaders: LoaderSettings;
  signal?: AbortSignal;
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
    const loader = streamLoader(opts.loaders, dataset, transform, seeds.fork(key).seed, opts.batchSize, false);
    try {
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
