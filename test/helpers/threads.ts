// The libtorch thread count of a test run. `IPCLIP_THREADS=N` (read here and by test/setup.ts) runs the suite
// with N intra-op threads, so other reduction orders (as another CPU or core count would give) are tried:
// see the README, "Contributor notes: kernel paths".

/** IPCLIP_THREADS as a thread count, or undefined when unset. Throws on a malformed value (a typo must not pass silently). */
export function envThreads(): number | undefined {
  const v = process.env.IPCLIP_THREADS;
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 1024) throw new Error(`IPCLIP_THREADS must be an integer from 1 to 1024, got '${v}'`);
  return n;
}

/** The threads a test file should use: IPCLIP_THREADS when set, else the file's own choice. */
export function testThreads(fallback: number): number {
  return envThreads() ?? fallback;
}
