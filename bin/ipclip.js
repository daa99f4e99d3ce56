#!/usr/bin/env node
// The `ipclip` command. A launcher only: `ipclip build` builds the native addon; everything else is the CLI in
// the package's `ipclip/cli` entry (dist/cli/index.js, compiled from lib/cli/index.ts), which exports `main(argv)`. Until that exists, `ipclip demo` runs the
// zero-shot example.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const [command, ...rest] = process.argv.slice(2);

/** Runs a Node script of this package with the same Node, passing the exit status through. */
function runScript(relative, args) {
  const res = spawnSync(process.execPath, [join(root, relative), ...args], { stdio: 'inherit' });
  process.exit(res.status ?? 1);
}

if (command === 'build') runScript('scripts/build-addon.mjs', rest);

const cli = join(root, 'dist', 'cli', 'index.js');
if (existsSync(cli)) {
  const mod = await import(pathToFileURL(cli).href);
  if (typeof mod.main === 'function') {
    const code = await mod.main(process.argv.slice(2));
    if (typeof code === 'number') process.exitCode = code;
  }
} else if (command === 'demo') {
  runScript('examples/zero-shot.mjs', rest);
} else {
  console.error([
    'usage: ipclip build [--debug]     build the native addon (needs cmake, g++, libtorch)',
    '       ipclip demo                run the demo',
    '',
    `The full command line is compiled from lib/cli/index.ts into dist/cli/index.js, which is missing: run \`npm run build:ts\`` +
      ' in a clone (installed packages ship dist/).',
  ].join('\n'));
  process.exit(command === undefined || command === 'help' || command === '--help' ? 0 : 1);
}
