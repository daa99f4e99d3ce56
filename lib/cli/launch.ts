/**
 * `ipclip train --nproc-per-node N`: starts N local ranks of one data-parallel job, each the same `ipclip train`
 * command with torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and its share of
 * the CPU threads, and waits for them. Rank 0 writes to this terminal; a rank that fails stops the others.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';
import type { Io } from './args.js';

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
export async function launchLocal(n: number, opts: { port: number; threads?: number; io: Io }): Promise<number> {
  const threads = Math.max(1, Math.floor((opts.threads ?? cpus().length) / n));
  const args = [...process.execArgv, ...rankArgs(process.argv.slice(1), threads)];
  opts.io.stderr.write(`ipclip train: ${n} local ranks on 127.0.0.1:${opts.port}, ${threads} thread${threads === 1 ? '' : 's'} each\n`);
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
