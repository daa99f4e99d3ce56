// The default intra-op thread count (native/binding/addon.cpp): the physical cores this process may use, read
// from /proc/cpuinfo, rather than libtorch's own guess (which a 2-core AMD EPYC VM reported as 1); OMP_NUM_THREADS
// wins when set. Each case is a fresh process: the default is applied when the addon first loads.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';

const ADDON = new URL('../build/Release/ipclip.node', import.meta.url).pathname;

function threadsIn(env: Record<string, string | undefined>): { threads: number; physicalCores: number } {
  const clean = { ...process.env, ...env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete clean[k];
  const r = spawnSync(process.execPath, ['-e', `const i = require(${JSON.stringify(ADDON)}).runtimeInfo(); console.log(JSON.stringify({ threads: i.threads, physicalCores: i.cpu.physicalCores }))`],
    { env: clean, encoding: 'utf8', timeout: 60_000 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { threads: number; physicalCores: number };
}

/** Distinct (physical id, core id) pairs in /proc/cpuinfo: the machine's physical cores. */
function coresFromCpuinfo(): number {
  const pairs = new Set<string>();
  for (const block of readFileSync('/proc/cpuinfo', 'utf8').split(/\n\s*\n/)) {
    const get = (k: string) => block.match(new RegExp(`^${k}\\s*:\\s*(.*)$`, 'm'))?.[1];
    if (get('core id') !== undefined) pairs.add(`${get('physical id') ?? ''}/${get('core id')}`);
  }
  return pairs.size;
}

describe.skipIf(process.platform !== 'linux')('default thread count', () => {
  it("is the machine's physical cores without OMP_NUM_THREADS, and OMP_NUM_THREADS otherwise", () => {
    const cores = coresFromCpuinfo();
    const plain = threadsIn({ OMP_NUM_THREADS: undefined });
    // This process may use every CPU here (no taskset), so the affinity mask does not narrow the count.
    if (availableParallelism() === readFileSync('/proc/cpuinfo', 'utf8').match(/^processor\s*:/gm)!.length) {
      expect(plain.physicalCores).toBe(cores);
    }
    if (cores > 0) expect(plain.threads).toBe(plain.physicalCores);
    expect(threadsIn({ OMP_NUM_THREADS: '1' }).threads).toBe(1);
  });

  it.skipIf(!existsSync('/usr/bin/taskset'))('counts only the CPUs of the affinity mask (taskset -c 0: one core, one thread)', () => {
    const r = spawnSync('/usr/bin/taskset', ['-c', '0', process.execPath, '-e',
      `const i = require(${JSON.stringify(ADDON)}).runtimeInfo(); console.log(JSON.stringify([i.threads, i.cpu.physicalCores]))`],
    { env: { ...process.env, OMP_NUM_THREADS: '' }, encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([1, 1]);
  });
});
