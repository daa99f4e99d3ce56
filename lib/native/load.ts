/**
 * Finding and loading the native addon (once per process or worker thread), and the two process-wide runtime
 * calls: {@link runtimeInfo} and {@link setThreads}.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { IpclipError } from '../core/errors.js';
import { packageRoot } from '../core/fs.js';
import { assertIntegerInRange } from '../core/is.js';
import { callNativeSync } from './errors.js';
import type { NativeAddon, RuntimeInfo } from './types.js';

// ---------------------------------------------------------------------------------------------------------------
// Loading

/** Where the addon is loaded from: `$IPCLIP_ADDON` if set, else `<package>/build/Release/ipclip.node`. */
export function addonPath(): string {
  const override = process.env.IPCLIP_ADDON;
  if (override) return resolve(override);
  let root: string;
  try {
    root = packageRoot();
  } catch (err) {
    throw new IpclipError('ERR_ADDON_MISSING', (err as Error).message, { cause: err });
  }
  return join(root, 'build', 'Release', 'ipclip.node');
}

const BUILD_HELP =
  'Build it with `npx ipclip build` (in a clone of the repository: `npm run build:native`). ' +
  'It needs cmake, a C++17 compiler and libtorch; on Debian/Ubuntu: ' +
  '`sudo apt-get install cmake g++ libtorch-dev libopenblas-dev`.';

let cached: NativeAddon | undefined;

/**
 * Loads the native addon once per process (or worker thread) and returns it.
 * Throws `ERR_ADDON_MISSING` (naming the build command) when it is not built or cannot be loaded.
 */
export function loadNative(): NativeAddon {
  if (cached) return cached;
  const path = addonPath();
  if (!existsSync(path)) {
    throw new IpclipError('ERR_ADDON_MISSING', `the ipclip native addon is not built (${path} is missing). ${BUILD_HELP}`);
  }
  try {
    cached = createRequire(import.meta.url)(path) as NativeAddon;
  } catch (err) {
    // Typically a libtorch shared library that moved or was uninstalled since the build.
    const why = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new IpclipError('ERR_ADDON_MISSING', `the ipclip native addon at ${path} cannot be loaded (${why}). ${BUILD_HELP}`, { cause: err });
  }
  return cached;
}

// ---------------------------------------------------------------------------------------------------------------
// Runtime (public)

/**
 * The libtorch version, CUDA availability and thread count of the loaded addon.
 * @category Errors, tensors, runtime
 */
export function runtimeInfo(): RuntimeInfo {
  return callNativeSync(() => loadNative().runtimeInfo());
}

/**
 * Returns the CPU tensor cache's idle blocks to the system now: after a large job, in a process that goes on
 * with other work. Live tensors are untouched; later model work refills the cache. See `runtimeInfo().cpuCache`.
 * @category Errors, tensors, runtime
 */
export function releaseCpuCache(): void {
  callNativeSync(() => loadNative().releaseCpuCache());
}

/**
 * Sets libtorch's intra-op thread count for the whole process (1–1024).
 * @category Errors, tensors, runtime
 */
export function setThreads(n: number): void {
  assertIntegerInRange(n, 'threads', 1, 1024);
  callNativeSync(() => loadNative().setThreads(n));
}
