#!/usr/bin/env node
// Builds the native addon (build/Release/ipclip.node) with cmake-js against libtorch.
//   node scripts/build-addon.mjs              incremental build (fast when nothing changed)
//   node scripts/build-addon.mjs --if-missing only when the addon is not built yet (npm's install hook)
//   node scripts/build-addon.mjs --debug      a Debug build
//   node scripts/build-addon.mjs --slim       afterwards keep only build/Release/ipclip.node
// An install build (--if-missing, npm's install hook) of ipclip installed as a dependency (scripts/install-hygiene.mjs
// says how that is told) then removes the build intermediates: the precompiled header and objects, ~450 MB for a
// 1.4 MB addon. A clone keeps them for fast incremental rebuilds; IPCLIP_KEEP_BUILD=1 keeps them in any case.
// libtorch is found by CMake: Torch_DIR, CMAKE_PREFIX_PATH or LIBTORCH, else the system one (libtorch-dev).
// Nothing is downloaded: Node-API headers come from the node-api-headers and node-addon-api packages.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { installedAsDependency, slimBuild } from './install-hygiene.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const addon = join(root, 'build', 'Release', 'ipclip.node');

if (args.includes('--if-missing') && existsSync(addon)) process.exit(0);
if (process.env.IPCLIP_SKIP_BUILD) {
  console.log('ipclip: IPCLIP_SKIP_BUILD is set, not building the addon (build later with `npx ipclip build`).');
  process.exit(0);
}

let cmakeJs;
try {
  cmakeJs = join(dirname(createRequire(import.meta.url).resolve('cmake-js/package.json')), 'bin', 'cmake-js');
} catch {
  console.error('ipclip: cmake-js is not installed. Run `npm ci` (or `npm install`) in the package first.');
  process.exit(1);
}
if (spawnSync('cmake', ['--version'], { stdio: 'ignore' }).status !== 0) {
  console.error('ipclip: cmake is not installed. Debian/Ubuntu: apt-get install cmake g++ libtorch-dev libopenblas-dev');
  process.exit(1);
}

// One build at a time per checkout: two cmake-js runs in one build folder corrupt each other's objects
// (and the precompiled header). A lock folder holds the builder's pid; a dead builder's lock is taken over.
const lock = join(root, 'build', '.build-lock');
function acquireLock() {
  mkdirSync(join(root, 'build'), { recursive: true });
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, 'pid'), String(process.pid));
      return;
    } catch {
      let pid = 0;
      try { pid = Number(readFileSync(join(lock, 'pid'), 'utf8')); } catch { /* being written */ }
      let alive = false;
      try { if (pid > 0) { process.kill(pid, 0); alive = true; } } catch { alive = false; }
      if (pid > 0 && !alive) { rmSync(lock, { recursive: true, force: true }); continue; }
      spawnSync('sleep', ['1']);
    }
  }
}
acquireLock();
process.on('exit', () => rmSync(lock, { recursive: true, force: true }));

const defines = [];
const haveCcache = spawnSync('ccache', ['--version'], { stdio: 'ignore' }).status === 0;
if (haveCcache) defines.push('--CDCMAKE_CXX_COMPILER_LAUNCHER=ccache');
if (process.env.Torch_DIR) defines.push(`--CDTorch_DIR=${process.env.Torch_DIR}`);
if (process.env.IPCLIP_PCH === '0') defines.push('--CDIPCLIP_PCH=OFF');
const debug = args.includes('--debug');

// A libtorch TU needs about 1 GB of memory; keep parallelism within cores.
const jobs = String(Math.max(1, Math.min(cpus().length, Number(process.env.IPCLIP_BUILD_JOBS) || cpus().length)));
const res = spawnSync(process.execPath, [cmakeJs, 'compile', '--directory', root, '--out', join(root, 'build'),
  ...(debug ? ['--debug'] : []), '--parallel', jobs, ...defines], {
  stdio: 'inherit',
  env: { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: jobs },
});
if (res.status !== 0) {
  console.error('\nipclip: building the native addon failed. Needs cmake, a C++17 compiler and libtorch:\n' +
    '  Debian/Ubuntu: sudo apt-get install cmake g++ libtorch-dev libopenblas-dev\n' +
    '  Other systems: LIBTORCH=/path/to/libtorch npx ipclip build  (see README, "Installation")');
  process.exit(res.status ?? 1);
}

const slim = args.includes('--slim') ||
  (args.includes('--if-missing') && process.env.IPCLIP_KEEP_BUILD !== '1' && installedAsDependency(root));
if (slim) {
  const sizes = slimBuild(join(root, 'build'), ['.build-lock']);
  const mb = (n) => (n / 2 ** 20).toFixed(1);
  if (sizes) {
    console.log(`ipclip: install build: removed ${mb(sizes.before - sizes.after)} MB of build intermediates, kept ` +
      `build/Release/ipclip.node (${mb(sizes.after)} MB); IPCLIP_KEEP_BUILD=1 keeps them`);
  }
}
