#!/usr/bin/env node
// Makes a clone ready to run (used by `npm test`, `npm run demo`, `npm run bench`), idempotently and quickly when
// everything is in place:
//   1. Debian packages: libtorch-dev libopenblas-dev libgloo-dev libdnnl-dev cmake g++ ccache ninja-build, and chromium (the HTML report
//      test renders with it) unless IPCLIP_NO_BROWSER=1 or --no-browser. Installed with apt-get when root (or via
//      sudo); otherwise the exact command is printed and the script fails.
//   2. `npm ci` when node_modules is missing or older than package-lock.json.
//   3. The native addon (incremental build, fast when nothing changed).
//   4. dist/ (tsc) when lib/ is newer than it: the CLI runs from dist.
//   5. With --bench (`npm run bench`): the Debian package python3-torch joins step 1 (the bench exports its ONNX
//      graph with /usr/bin/python3), and bench/setup.mjs installs onnxruntime-node into bench/.work/node_modules
//      (the bench's own folder, not a dependency of ipclip).
// Node builtins only: node_modules may not exist yet.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));
const withBrowser = args.has('--with-browser') || (!args.has('--no-browser') && process.env.IPCLIP_NO_BROWSER !== '1');

const say = (msg) => console.log(`ipclip ensure: ${msg}`);
function fail(msg) {
  console.error(`ipclip ensure: ${msg}`);
  process.exit(1);
}
function run(cmd, argv, opts = {}) {
  const res = spawnSync(cmd, argv, { stdio: 'inherit', cwd: root, ...opts });
  if (res.error) fail(`cannot run ${cmd}: ${res.error.message}`);
  if (res.status !== 0) fail(`\`${[cmd, ...argv].join(' ')}\` failed (exit ${res.status})`);
}
const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;

// 1. System packages ------------------------------------------------------------------------------------------------
const forBench = args.has('--bench');
const packages = ['libtorch-dev', 'libopenblas-dev', 'libgloo-dev', 'libdnnl-dev', 'cmake', 'g++', 'ccache', 'ninja-build', ...(withBrowser ? ['chromium'] : []),
  ...(forBench ? ['python3-torch'] : [])];
if (have('dpkg-query')) {
  const missing = packages.filter((p) => {
    const res = spawnSync('dpkg-query', ['-W', '-f=${Status}', p], { encoding: 'utf8' });
    return res.status !== 0 || !res.stdout.includes('install ok installed');
  });
  if (missing.length > 0) {
    const install = ['apt-get', 'install', '-y', '--no-install-recommends', ...missing];
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
    if (isRoot || have('sudo')) {
      const prefix = isRoot ? [] : ['sudo', '-E'];
      say(`installing ${missing.join(' ')}`);
      const [cmd, ...rest] = [...prefix, 'apt-get', 'update'];
      run(cmd, rest, { env });
      const [cmd2, ...rest2] = [...prefix, ...install];
      run(cmd2, rest2, { env });
    } else {
      fail(`missing Debian packages. Install them as root, then rerun:\n  sudo apt-get update && sudo ${install.join(' ')}`);
    }
  }
} else {
  say(`not a Debian system: make sure cmake, a C++17 compiler and libtorch are installed (README, "Other systems")`);
}

// 2. npm dependencies -----------------------------------------------------------------------------------------------
const mtime = (p) => (existsSync(p) ? statSync(p).mtimeMs : -Infinity);
const lock = join(root, 'package-lock.json');
const installed = join(root, 'node_modules', '.package-lock.json');
if (!existsSync(join(root, 'node_modules')) || mtime(lock) > mtime(installed)) {
  say('installing npm dependencies (npm ci)');
  // The addon is built below with progress shown; skip the install hook's own build.
  run('npm', ['ci', '--no-audit', '--no-fund'], { env: { ...process.env, IPCLIP_SKIP_BUILD: '1' } });
}

// 3. Native addon ---------------------------------------------------------------------------------------------------
say('building the native addon (incremental)');
run(process.execPath, [join(root, 'scripts', 'build-addon.mjs')]);

// 4. TypeScript → dist ----------------------------------------------------------------------------------------------
function newest(dir) {
  let t = -Infinity;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}
const built = join(root, 'dist', 'index.js');
if (mtime(built) < Math.max(newest(join(root, 'lib')), mtime(join(root, 'tsconfig.build.json')), mtime(lock))) {
  say('compiling TypeScript into dist/');
  run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json']);
}

// 5. The bench's own tools --------------------------------------------------------------------------------------------
if (forBench) {
  const res = spawnSync(process.execPath, [join(root, 'bench', 'setup.mjs')], { stdio: 'inherit', cwd: root });
  if (res.status !== 0) fail('the bench\'s tools are not in place (above); `node bench/run.mjs --skip-ort` runs without them');
}
say('ready');
