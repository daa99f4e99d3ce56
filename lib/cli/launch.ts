/**
 * Data parallelism in the commands that train (`ipclip train`, `ipclip benchmark`): `--nproc-per-node N` starts
 * N local ranks of one job, each the same command with torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK,
 * MASTER_ADDR, MASTER_PORT) and its share of the CPU threads, and waits for them (rank 0 writes to this terminal;
 * a rank that fails stops the others); a process started with those variables (by that launcher, torchrun or a
 * cluster's) is one rank.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';
import { distributedFromEnv, type ResolvedDistributed } from '../ipclip/trainer/distributed.js';
import { int, str, type FlagSpec, type Io, type Parsed } from './args.js';

/** `--nproc-per-node`, `--master-port`. */
export const DATA_PARALLEL_FLAGS: Record<string, FlagSpec> = {
  'nproc-per-node': { type: 'string', value: 'n', help: 'data parallelism: n local ranks (CPU: --threads split between them)' },
  'master-port': { type: 'string', value: 'n', help: 'with --nproc-per-node: the rendezvous port (default 29500)' },
};

/**
 * With `--nproc-per-node N` (N > 1) runs N local ranks of this command and resolves to the job's exit code;
 * otherwise null: this process is the whole run, or one rank of it.
 */
export async function launchIfAsked(p: Parsed, io: Io, command: string): Promise<number | null> {
  const nproc = int(p, 'nproc-per-node', 1, 1, 1024);
  if (nproc === 1) return null;
  const threads = str(p, 'threads') === undefined ? undefined : int(p, 'threads', 1, 1, 1024);
  return launchLocal(nproc, { command, port: int(p, 'master-port', 29500, 1, 65535), io, ...(threads ? { threads } : {}) });
}

/**
 * This process's rank when the launcher's variables are set (else null): `--device cuda` becomes its local GPU,
 * and a CUDA rank reduces over NCCL unless `IPCLIP_DIST_BACKEND` says otherwise.
 */
export function rankFromEnv(p: Parsed): ResolvedDistributed | null {
  const dist = distributedFromEnv();
  if (!dist) return null;
  if (str(p, 'device') === 'cuda') p.values.device = `cuda:${dist.localRank}`;
  const cuda = str(p, 'device')?.startsWith('cuda') === true;
  return cuda && !process.env.IPCLIP_DIST_BACKEND ? { ...dist, backend: 'nccl' } : dist;
}

/**
 * The command line of one rank: `argv` (the script and its arguments, `process.argv.slice(1)`) without
 * `--nproc-per-node`/`--master-port`, with `--threads` set to `threads`.
 */
export function rankArgs(argv: readonly string[], threads: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [name] = a.split('=', 1);
    if (name === '--nproc-per-node' || name === '--master-port' || name === '--threads') {
      if (!a.includes('=')) i++; // its value
      continue;
    }
    out.push(a);
  }
  return [...out, '--threads', String(threads)];
}

/** Runs `n` ranks on this machine; resolves to the job's exit code (the first failing rank's, else 0). */
export async function launchLocal(n: number, opts: { command: string; port: number; threads?: number; io: Io }): Promise<number> {
  const threads = Math.max(1, Math.floor((opts.threads ?? cpus().length) / n));
  const args = [...process.execArgv, ...rankArgs(process.argv.slice(1), threads)];
  opts.io.stderr.write(`ipclip ${opts.command}: ${n} local ranks on 127.0.0.1:${opts.port}, ${threads} thread${threads === 1 ? '' : 's'} each\n`);
  const children: ChildProcess[] = [];
  let failed = 0;
  const exits = Array.from({ length: n }, (_, rank) => new Promise<number>((resolve) => {
    const child = spawn(process.execPath, args, {
      env: {
        ...process.env, RANK: String(rank), WORLD_SIZE: String(n), LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: String(n),
        MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(opts.port), OMP_NUM_THREADS: String(threads),
      },
      stdio: ['ignore', rank === 0 ? 'inherit' : 'ignore', 'inherit'],
    });
    children.push(child);
    child.on('exit', (code, signal) => {
      const status = code ?? (signal ? 128 + 9 : 1);
      // A failed rank stops the others; one stopped by Ctrl-C (130) leaves them to stop at the same step.
      if (status !== 0 && status !== 130 && failed === 0) {
        failed = status;
        for (const c of children) if (c !== child && c.exitCode === null) c.kill('SIGTERM');
      }
      resolve(status);
    });
  }));
  // Ctrl-C reaches every rank from the terminal (each stops after the same step and rank 0 checkpoints); this
  // launcher waits for them instead of exiting first. SIGTERM is passed on.
  const onInt = () => undefined;
  const onTerm = () => { for (const c of children) if (c.exitCode === null) c.kill('SIGTERM'); };
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  try {
    const codes = await Promise.all(exits);
    return failed || codes.find((c) => c !== 0) || 0;
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }
}
