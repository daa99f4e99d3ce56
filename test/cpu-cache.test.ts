// The CPU caching allocator (native/clip/cpu_cache.*): blocks of >= 1 MiB are reused instead of mapped afresh.
// Each case runs test/helpers/cpu-cache-child.mjs in its own process, since the cap is read once per process
// (IPCLIP_CPU_CACHE_MB) and the allocator is process-wide.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { runtimeInfo } from '../lib/native/load.js';
import { CLIP_TINY, HAVE_SHARED } from './helpers/fixtures.js';

const CHILD = fileURLToPath(new URL('./helpers/cpu-cache-child.mjs', import.meta.url));
interface Stats { installed: boolean; capBytes: number; cachedBytes: number; liveBytes: number; hits: number; misses: number }
interface ChildOut { runs: string[]; before: Stats; after: Stats; released: Stats }

function child(cacheMb?: string): ChildOut {
  const env = { ...process.env };
  delete env.IPCLIP_CPU_CACHE_MB;
  if (cacheMb !== undefined) env.IPCLIP_CPU_CACHE_MB = cacheMb;
  const r = spawnSync(process.execPath, [CHILD, CLIP_TINY.openaiSafetensors], { env, encoding: 'utf8', timeout: 120_000 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as ChildOut;
}

describe('CPU caching allocator', () => {
  it('is installed in this process with the default 1 GiB cap unless IPCLIP_CPU_CACHE_MB says otherwise', () => {
    const info = runtimeInfo().cpuCache;
    if (process.env.IPCLIP_CPU_CACHE_MB === undefined) expect(info).toMatchObject({ installed: true, capBytes: 1024 * 2 ** 20 });
    expect(info.cachedBytes).toBeLessThanOrEqual(info.capBytes);
  });

  describe.skipIf(!HAVE_SHARED)('in a process of its own', () => {
    // The children run in beforeAll, not at collection: a skipped suite's body is still collected.
    let cached: ChildOut;
    let plain: ChildOut;
    beforeAll(() => {
      cached = child();
      plain = child('0');
    }, 240_000);

    it('serves repeated forwards from the cache and gives bit-identical embeddings to the default allocator', () => {
      expect(cached.after.installed).toBe(true);
      // Three forwards of the same batch: the second and third find the first one's blocks.
      expect(cached.after.hits - cached.before.hits).toBeGreaterThan(0);
      expect(plain.after).toMatchObject({ installed: false, hits: 0, misses: 0 });
      expect(cached.runs[1]).toBe(cached.runs[0]);
      expect(cached.runs[2]).toBe(cached.runs[0]);
      expect(cached.runs[0]).toBe(plain.runs[0]);
    });

    it('returns every block after the forwards: live bytes are back to the model weights alone', () => {
      expect(cached.after.liveBytes).toBe(cached.before.liveBytes);
    });

    it('keeps at most the cap while idle, and releaseCpuCache returns all of it', () => {
      expect(cached.after.cachedBytes).toBeLessThanOrEqual(cached.after.capBytes);
      expect(cached.released.cachedBytes).toBe(0);
      expect(cached.released.liveBytes).toBe(cached.after.liveBytes);
      const small = child('2');
      expect(small.after.capBytes).toBe(2 * 2 ** 20);
      expect(small.after.cachedBytes).toBeLessThanOrEqual(2 * 2 ** 20);
      expect(small.runs[0]).toBe(plain.runs[0]);
    });

    it('an IPCLIP_CPU_CACHE_MB that is not a non-negative integer means the default', () => {
      expect(child('lots').after).toMatchObject({ installed: true, capBytes: 1024 * 2 ** 20 });
    });
  });
});
