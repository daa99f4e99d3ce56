// The CLI runs from dist/ (bin/ipclip.js imports dist/cli/index.js): tests that spawn it compile lib/ first when needed.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** Newest modification time (ms) of any file under `dir`. */
function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/**
 * Compiles lib/ into dist/ (`tsc -p tsconfig.build.json`) when dist/cli/index.js is missing or older than a source file,
 * so a stale dist/ never tests old code.
 */
export function ensureDist(root: string): void {
  const cli = join(root, 'dist', 'cli', 'index.js');
  if (existsSync(cli) && statSync(cli).mtimeMs >= newest(join(root, 'lib'))) return;
  // tsc's exit status is not checked: what matters is that dist/cli/index.js was emitted (type errors fail typecheck).
  spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'ignore' });
  if (!existsSync(cli)) throw new Error('dist/cli/index.js was not produced by `tsc -p tsconfig.build.json`');
}
