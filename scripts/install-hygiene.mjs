// Install hygiene for the native build (used by scripts/build-addon.mjs; Node builtins only).
// An install build of ipclip as a dependency needs build/Release/ipclip.node alone: the precompiled header and the
// objects (~450 MB for a 1.4 MB addon) only speed up rebuilds of a clone.
import { existsSync, lstatSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import { join, sep } from 'node:path';

/**
 * Whether the package at `root` was installed as a dependency rather than checked out: its real path lies inside a
 * node_modules folder (npm, pnpm's store, a global install), or it is no git checkout (an unpacked tarball).
 */
export function installedAsDependency(root) {
  let real = root;
  try { real = realpathSync(root); } catch { /* keep root */ }
  return real.split(sep).includes('node_modules') || !existsSync(join(real, '.git'));
}

/** Bytes under a path (symbolic links are counted as links, not followed). */
export function diskBytes(path) {
  const st = lstatSync(path, { throwIfNoEntry: false });
  if (!st) return 0;
  if (!st.isDirectory()) return st.size;
  let n = 0;
  for (const e of readdirSync(path)) n += diskBytes(join(path, e));
  return n;
}

/**
 * Removes everything in `buildDir` except `Release/ipclip.node` (and the names in `alsoKeep` at the top level,
 * e.g. a build lock). Does nothing, and returns null, when the addon is not there. Returns the bytes before and after.
 */
export function slimBuild(buildDir, alsoKeep = []) {
  const release = join(buildDir, 'Release');
  if (!existsSync(join(release, 'ipclip.node'))) return null;
  const before = diskBytes(buildDir);
  const keep = new Set(['Release', ...alsoKeep]);
  for (const e of readdirSync(buildDir)) if (!keep.has(e)) rmSync(join(buildDir, e), { recursive: true, force: true });
  for (const e of readdirSync(release)) if (e !== 'ipclip.node') rmSync(join(release, e), { recursive: true, force: true });
  return { before, after: diskBytes(buildDir) };
}
