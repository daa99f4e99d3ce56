// Runs before every test file (vitest setupFiles): applies IPCLIP_THREADS to libtorch's intra-op pool.
import { envThreads } from './helpers/threads.js';

const threads = envThreads();
if (threads !== undefined) {
  const { setThreads } = await import('../lib/native/load.js');
  setThreads(threads);
}
