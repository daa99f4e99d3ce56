/**
 * Data-parallel training over several processes (one per GPU, or several CPU processes, on one machine or many),
 * on libtorch's own distributed engine (c10d: a TCPStore rendezvous and a Gloo or NCCL process group, bound in
 * native/binding/ProcessGroup.cpp). What each rank does:
 *
 * - the global step plan is the single-process plan for the same seed with batches of `worldSize · batchSize`;
 *   rank r takes its contiguous slice of every global batch ({@link shardRange}), for both streams;
 * - the native step all-reduces the gradients (weighted by each rank's share of the batch), the loss terms and
 *   the skip-on-non-finite decision in one call between backward and the Adam update, so every rank makes the
 *   same update and reports the global batch's terms;
 * - the banks are built from every rank's slice of each bank batch (all-gathered, then the single-process rule);
 * - rank 0 writes the checkpoints (atomically) while the others wait at a barrier; a rerun resumes on every rank
 *   from that file;
 * - with `featureCache`, each rank runs the vision tower on its {@link shardRange} of each stream's samples and
 *   the cached rows are all-gathered, so every rank holds the whole cache.
 *
 * What is not global: the enhancement branch's BatchNorm normalises over each rank's own slice (README, "Several
 * processes, GPUs and machines", measures the difference).
 */
import { createHash } from 'node:crypto';
import { IpclipError, check } from '../../core/errors.js';
import { callNative } from '../../native/errors.js';
import { loadNative } from '../../native/load.js';
import type { NativeProcessGroup } from '../../native/types.js';

/**
 * A process group backend: `gloo` (CPU tensors; every build with the gloo headers) or `nccl` (CUDA libtorch only).
 * @category Training
 */
export type DistributedBackend = 'gloo' | 'nccl';

/**
 * How one rank joins a data-parallel job ({@link TrainerOptions.distributed}). `'env'` reads what `torchrun` and
 * most cluster launchers set: `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT` (and
 * `IPCLIP_DIST_BACKEND`, `IPCLIP_DIST_TIMEOUT_MS` when set); without `WORLD_SIZE` it is a single process.
 * @category Training
 */
export interface DistributedOptions {
  /** Default `gloo`. */
  backend?: DistributedBackend;
  rank: number;
  worldSize: number;
  /** The rank on its machine (the GPU index with `nccl`); default `rank`. */
  localRank?: number;
  /** Where rank 0 serves the rendezvous store (default 127.0.0.1). */
  masterAddr?: string;
  /** Default 29500. */
  masterPort?: number;
  /** How long the rendezvous and each collective may wait for the other ranks (default 300 000 ms). */
  timeoutMs?: number;
  /**
   * The launcher serves the rendezvous store at masterAddr:masterPort, so every rank (rank 0 too) connects to it
   * as a client: torchrun's agent does (it sets `TORCHELASTIC_USE_AGENT_STORE=True` in its workers). Default false:
   * rank 0 serves the store.
   */
  agentStore?: boolean;
  /**
   * With `agentStore`: the launcher's restart count (`TORCHELASTIC_RESTART_COUNT`). The job's keys live under
   * `/worker/attempt_<attempt>` of the agent's store, as torch.distributed keeps them, so a worker group the agent
   * restarts never reads a failed attempt's keys. Default 0.
   */
  attempt?: number;
}

/**
 * {@link DistributedOptions} with the defaults filled in.
 * @category Training
 */
export interface ResolvedDistributed {
  backend: DistributedBackend;
  rank: number;
  worldSize: number;
  localRank: number;
  masterAddr: string;
  masterPort: number;
  timeoutMs: number;
  agentStore: boolean;
  attempt: number;
}

const DEFAULT_PORT = 29500;
const DEFAULT_TIMEOUT_MS = 300_000;

/**
 * The job `env` describes (torchrun's variables), or null when `WORLD_SIZE` is unset (a single process). Under
 * torchrun's agent (`TORCHELASTIC_USE_AGENT_STORE=True`, torch.distributed's own test) the store is the agent's.
 * @category Training
 * @throws IpclipError `ERR_INVALID_ARGUMENT` naming a malformed variable.
 */
export function distributedFromEnv(env: NodeJS.ProcessEnv = process.env): ResolvedDistributed | null {
  if (env.WORLD_SIZE === undefined || env.WORLD_SIZE === '') return null;
  const int = (name: string, fallback?: number): number => {
    const v = env[name];
    if ((v === undefined || v === '') && fallback !== undefined) return fallback;
    check(v !== undefined && /^\d+$/.test(v), `the environment variable ${name} must be a non-negative integer, got ${String(v)}`);
    return Number(v);
  };
  const rank = int('RANK');
  const backend = env.IPCLIP_DIST_BACKEND;
  return resolveDistributed({
    rank, worldSize: int('WORLD_SIZE'), localRank: int('LOCAL_RANK', rank),
    masterAddr: env.MASTER_ADDR || '127.0.0.1', masterPort: int('MASTER_PORT', DEFAULT_PORT),
    timeoutMs: int('IPCLIP_DIST_TIMEOUT_MS', DEFAULT_TIMEOUT_MS),
    agentStore: env.TORCHELASTIC_USE_AGENT_STORE === 'True', attempt: int('TORCHELASTIC_RESTART_COUNT', 0),
    ...(backend ? { backend: backend as DistributedBackend } : {}),
  });
}

/**
 * Validates a {@link TrainerOptions.distributed} value and fills in the defaults; null for a single process
 * (undefined, `'env'` without `WORLD_SIZE`, or a world of 1).
 * @category Training
 * @throws IpclipError `ERR_INVALID_ARGUMENT` naming the first bad field.
 */
export function resolveDistributed(opt: DistributedOptions | 'env' | undefined): ResolvedDistributed | null {
  check(!(opt instanceof DataParallel), 'resolveDistributed: this is a joined DataParallel already');
  if (opt === undefined) return null;
  if (opt === 'env') return distributedFromEnv();
  check(opt !== null && typeof opt === 'object', "distributed must be 'env' or { rank, worldSize, ... }");
  const backend = opt.backend ?? 'gloo';
  check(backend === 'gloo' || backend === 'nccl', `distributed.backend must be 'gloo' or 'nccl', got ${String(backend)}`);
  const { worldSize, rank } = opt;
  check(Number.isInteger(worldSize) && worldSize >= 1, `distributed.worldSize must be a positive integer, got ${String(worldSize)}`);
  check(Number.isInteger(rank) && rank >= 0 && rank < worldSize, `distributed.rank must be an integer in [0, ${worldSize}), got ${String(rank)}`);
  const localRank = opt.localRank ?? rank;
  check(Number.isInteger(localRank) && localRank >= 0, `distributed.localRank must be a non-negative integer, got ${String(localRank)}`);
  const masterAddr = opt.masterAddr ?? '127.0.0.1';
  check(typeof masterAddr === 'string' && masterAddr.length > 0, 'distributed.masterAddr must be a host name or address');
  const masterPort = opt.masterPort ?? DEFAULT_PORT;
  check(Number.isInteger(masterPort) && masterPort >= 1 && masterPort <= 65535, `distributed.masterPort must be an integer in [1, 65535], got ${String(masterPort)}`);
  const timeoutMs = opt.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  check(Number.isInteger(timeoutMs) && timeoutMs >= 1, `distributed.timeoutMs must be a positive integer, got ${String(timeoutMs)}`);
  const agentStore = opt.agentStore ?? false;
  check(typeof agentStore === 'boolean', `distributed.agentStore must be a boolean, got ${String(agentStore)}`);
  const attempt = opt.attempt ?? 0;
  check(Number.isInteger(attempt) && attempt >= 0, `distributed.attempt must be a non-negative integer, got ${String(attempt)}`);
  if (worldSize === 1) return null;
  return { backend, rank, worldSize, localRank, masterAddr, masterPort, timeoutMs, agentStore, attempt };
}

/**
 * What a `distributed` option ({@link TrainerOptions.distributed}, the benchmark's) names, checked: the caller's
 * joined {@link DataParallel}, a job to join, or null for a single process.
 * @throws IpclipError `ERR_INVALID_ARGUMENT` as {@link resolveDistributed}.
 */
export function dataParallelOption(opt: DistributedOptions | 'env' | DataParallel | undefined): ResolvedDistributed | DataParallel | null {
  return opt instanceof DataParallel ? opt : resolveDistributed(opt);
}

/**
 * Runs `fn` as a member of the job `job` names: the caller's group as it is (left open for the caller), or one
 * joined for `fn` and left after it; `fn(null)` for a single process.
 */
export async function withDataParallel<T>(job: ResolvedDistributed | DataParallel | null, fn: (dp: DataParallel | null) => Promise<T>): Promise<T> {
  if (job === null || job instanceof DataParallel) return fn(job);
  const dp = await DataParallel.join(job);
  try {
    return await fn(dp);
  } finally {
    await dp.close();
  }
}

/**
 * Rank `rank`'s share `[start, end)` of `n` items over `world` ranks: contiguous, in rank order, sizes
 * differing by at most one (the first `n mod world` ranks take one more).
 * @category Training
 */
export function shardRange(n: number, rank: number, world: number): [number, number] {
  const base = Math.floor(n / world), extra = n % world;
  const start = rank * base + Math.min(rank, extra);
  return [start, start + base + (rank < extra ? 1 : 0)];
}

/**
 * Refuses a layout where some rank's slice of a global batch would have fewer than 2 samples (the enhancement
 * branch normalises over each rank's batch).
 * @throws IpclipError `ERR_INVALID_ARGUMENT`.
 */
export function checkShardable(loader: { batchesPerEpoch(): number; batchRange(b: number): [number, number] }, world: number): void {
  for (let b = 0; b < loader.batchesPerEpoch(); b++) {
    const [start, end] = loader.batchRange(b);
    const smallest = Math.floor((end - start) / world);
    check(smallest >= 2, `data parallelism over ${world} ranks: global batch ${b} has ${end - start} samples, so a rank ` +
      `would get ${smallest} (each needs at least 2); use fewer ranks, or a dataset size or batchSize that leaves a last batch of at least ${2 * world}`);
  }
}

/** A 48-bit digest of `text` (exact in a float64). */
function digest(text: string): number {
  return createHash('sha256').update(text).digest().readUIntBE(0, 6);
}

/**
 * One rank's membership of a running job: the native process group and the sharding rule. Every method except
 * {@link DataParallel.shard} and {@link DataParallel.close} is a collective (every rank calls it, in the same
 * order). Join with {@link DataParallel.join}; pass it to {@link TrainerOptions.distributed} and
 * {@link EvaluatorOptions.group} to train and evaluate over the same ranks.
 * @category Training
 */
export class DataParallel {
  private constructor(
    /** @internal The native process group. */
    readonly group: NativeProcessGroup,
    readonly options: ResolvedDistributed,
  ) {}

  /**
   * Joins the job (the rendezvous waits up to `timeoutMs` for every rank).
   * @throws IpclipError `ERR_DEVICE` (a backend this build lacks), `ERR_DISTRIBUTED` (the rendezvous failed).
   */
  static async join(o: ResolvedDistributed): Promise<DataParallel> {
    const addon = loadNative();
    const group = await callNative(() => addon.createProcessGroup({
      backend: o.backend, rank: o.rank, worldSize: o.worldSize, masterAddr: o.masterAddr, masterPort: o.masterPort, timeoutMs: o.timeoutMs,
      agentStore: o.agentStore, attempt: o.attempt,
    }));
    return new DataParallel(group, o);
  }

  get rank(): number {
    return this.options.rank;
  }

  get worldSize(): number {
    return this.options.worldSize;
  }

  /** This rank's contiguous slice of a global batch. */
  shard<T>(items: readonly T[]): T[] {
    const [start, end] = shardRange(items.length, this.rank, this.worldSize);
    return items.slice(start, end);
  }

  /**
   * Checks that every rank has the same value of each field (compared by digest): a rank started with another
   * CLIP, class list, seed or settings is refused before anything is trained.
   * @throws IpclipError `ERR_MISMATCH` naming the first field that differs and the ranks.
   */
  async agree(fields: Record<string, string>): Promise<void> {
    const names = Object.keys(fields);
    const mine = Float64Array.from(names, (n) => digest(fields[n]!));
    const all = await callNative(() => this.group.allGather(mine));
    for (let r = 1; r < all.length; r++) {
      const i = names.findIndex((_, k) => all[r]![k] !== all[0]![k]);
      if (i >= 0) {
        const detail = r === this.rank || this.rank === 0 ? `; this rank's is ${fields[names[i]!]!.slice(0, 200)}` : '';
        throw new IpclipError('ERR_MISMATCH', `data-parallel ranks 0 and ${r} differ in ${names[i]!}: every rank must ` +
          `train the same run (same CLIP, classes, seed, settings and data)${detail}`);
      }
    }
  }

  /**
   * Every rank's {@link shardRange} slice of an `n`-item result, concatenated in rank order: the whole result on
   * every rank (`mine` is this rank's slice; integers, exact in the float64 transport).
   */
  async gatherShards(mine: Int32Array, n: number): Promise<Int32Array> {
    const [start, end] = shardRange(n, this.rank, this.worldSize);
    check(mine.length === end - start, `gatherShards: this rank holds ${end - start} of the ${n} items, got ${mine.length}`);
    const width = Math.ceil(n / this.worldSize);
    const padded = new Float64Array(Math.max(1, width));
    padded.set(mine);
    const all = await callNative(() => this.group.allGather(padded));
    const out = new Int32Array(n);
    all.forEach((part, r) => {
      const [s, e] = shardRange(n, r, this.worldSize);
      for (let i = s; i < e; i++) out[i] = part[i - s]!;
    });
    return out;
  }

  /** Whether `flag` holds on any rank. */
  async any(flag: boolean): Promise<boolean> {
    const sum = await callNative(() => this.group.allReduce(Float64Array.of(flag ? 1 : 0)));
    return sum[0]! > 0;
  }

  barrier(): Promise<void> {
    return callNative(() => this.group.barrier());
  }

  /** Leaves the job (not a collective); later calls reject. */
  async close(): Promise<void> {
    await callNative(() => this.group.close()).catch(() => undefined);
    this.group.dispose();
  }
}
