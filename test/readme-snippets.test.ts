// Every ```ts block of the README compiles under `strict` against the package's own entry points (`ipclip`,
// `ipclip/tools`, `ipclip/cli` mapped to lib/): a snippet that names a missing export, a wrong option or a
// possibly-null field fails here. A block without imports is read as the continuation of the last one with them. Snippets may use the placeholders declared in PLACEHOLDERS (a weights path,
// an image buffer, a data root, class names).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Names the README's snippets use without defining them: what the reader brings. */
const PLACEHOLDERS = `declare const path: string;
declare const buffer: Buffer;
declare const root: string;
declare const classNames: string[];
`;

/** The ```ts blocks of a markdown text, with the line each starts on. */
export function tsBlocks(markdown: string): { line: number; code: string }[] {
  const out: { line: number; code: string }[] = [];
  const re = /^```ts\n([\s\S]*?)^```$/gm;
  for (let m = re.exec(markdown); m; m = re.exec(markdown)) out.push({ line: markdown.slice(0, m.index).split('\n').length, code: m[1]! });
  return out;
}

describe('README TypeScript snippets', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ipclip-readme-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('finds the blocks', () => {
    expect(tsBlocks('a\n```ts\nconst x = 1;\n```\nb\n```sh\nls\n```\n```ts\nlet y;\n```\n')).toEqual([
      { line: 2, code: 'const x = 1;\n' }, { line: 9, code: 'let y;\n' },
    ]);
  });

  it('every ```ts block of README.md compiles under strict', () => {
    const blocks = tsBlocks(readFileSync(join(ROOT, 'README.md'), 'utf8'));
    expect(blocks.length).toBeGreaterThanOrEqual(4);
    // A block without imports continues the last block that has them (it uses that block's names); before any
    // such block, it gets `Clip`. `export {}` keeps each snippet a module of its own (top-level await, no clashes).
    let base = "import { Clip } from 'ipclip';\n";
    const files = blocks.map((b) => {
      const name = `readme-${b.line}.mts`;
      const own = /^import /m.test(b.code);
      writeFileSync(join(dir, name), `${PLACEHOLDERS}${own ? '' : base}${b.code}\nexport {};\n`);
      if (own) base = b.code;
      return name;
    });
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
      compilerOptions: {
        target: 'ES2022', lib: ['ES2022', 'ESNext.Disposable'], module: 'NodeNext', moduleResolution: 'NodeNext', strict: true,
        noEmit: true, skipLibCheck: true, types: ['node'], typeRoots: [join(ROOT, 'node_modules', '@types')],
        paths: {
          ipclip: [join(ROOT, 'lib', 'index.ts')],
          'ipclip/tools': [join(ROOT, 'lib', 'tools', 'index.ts')],
          'ipclip/cli': [join(ROOT, 'lib', 'cli', 'index.ts')],
        },
      },
      files,
    }));
    const r = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(dir, 'tsconfig.json')],
      { cwd: dir, encoding: 'utf8' });
    // tsc names the snippet by the README line it starts on (readme-<line>.mts).
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  }, 120_000);
});
