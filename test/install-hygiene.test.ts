// Install hygiene (scripts/install-hygiene.mjs): an install build of ipclip as a dependency keeps only the addon;
// a clone keeps its build intermediates. Checked on hand-made folder trees with known sizes.
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { diskBytes, installedAsDependency, slimBuild } from '../scripts/install-hygiene.mjs';

const dir = mkdtempSync(join(tmpdir(), 'ipclip-hygiene-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(path: string, bytes: number): void {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, Buffer.alloc(bytes, 7));
}

/** Every file below `root`, relative, sorted. */
function files(root: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(root, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...files(root, p));
    else out.push(p);
  }
  return out.sort();
}

describe('installedAsDependency', () => {
  it('is true inside node_modules (npm, a global install, pnpm’s store) and for an unpacked tarball', () => {
    for (const rel of ['app/node_modules/ipclip', 'usr/lib/node_modules/ipclip', 'app/node_modules/.pnpm/ipclip@0.1.0/node_modules/ipclip', 'unpacked/package']) {
      const root = join(dir, 'dep', rel);
      mkdirSync(root, { recursive: true });
      expect(installedAsDependency(root), rel).toBe(true);
    }
  });

  it('is false for a git checkout: a clone (.git folder) and a worktree (.git file)', () => {
    const clone = join(dir, 'clone');
    mkdirSync(join(clone, '.git'), { recursive: true });
    expect(installedAsDependency(clone)).toBe(false);
    const worktree = join(dir, 'worktree');
    file(join(worktree, '.git'), 40);
    expect(installedAsDependency(worktree)).toBe(false);
  });

  it('follows a link: a clone linked into node_modules (npm link, a file: dependency) is a clone', () => {
    const clone = join(dir, 'linked-clone');
    mkdirSync(join(clone, '.git'), { recursive: true });
    mkdirSync(join(dir, 'app2', 'node_modules'), { recursive: true });
    const link = join(dir, 'app2', 'node_modules', 'ipclip');
    symlinkSync(clone, link, 'dir');
    expect(installedAsDependency(link)).toBe(false);
  });
});

describe('slimBuild', () => {
  it('keeps build/Release/ipclip.node (and the lock) and removes every intermediate', () => {
    const build = join(dir, 'slim', 'build');
    file(join(build, 'Release', 'ipclip.node'), 1400);
    file(join(build, 'Release', 'obj', 'ip_clip.o'), 5000);
    file(join(build, 'Release', 'libipclip_core.a'), 3000);
    file(join(build, 'CMakeFiles', 'ipclip.dir', 'cmake_pch.hxx.gch'), 20000);
    file(join(build, 'CMakeFiles', 'ipclip.dir', 'native', 'clip', 'vit.cpp.o'), 7000);
    file(join(build, 'CMakeCache.txt'), 300);
    file(join(build, 'build.ninja'), 200);
    file(join(build, '.build-lock', 'pid'), 5);
    expect(diskBytes(build)).toBe(1400 + 5000 + 3000 + 20000 + 7000 + 300 + 200 + 5);
    const sizes = slimBuild(build, ['.build-lock']);
    expect(files(build)).toEqual(['.build-lock/pid', 'Release/ipclip.node']);
    expect(sizes).toEqual({ before: 36905, after: 1405 });
  });

  it('removes nothing when the addon is not there (a failed build keeps its logs and objects)', () => {
    const build = join(dir, 'failed', 'build');
    file(join(build, 'CMakeFiles', 'CMakeError.log'), 100);
    file(join(build, 'Release', 'obj', 'a.o'), 100);
    expect(slimBuild(build)).toBeNull();
    expect(files(build)).toEqual(['CMakeFiles/CMakeError.log', 'Release/obj/a.o']);
  });
});
