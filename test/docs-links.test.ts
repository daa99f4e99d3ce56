// Links that work in the generated reference: every local markdown file the README and ARCHITECTURE.md link to is a
// typedoc project document (rendered as a page, not copied as raw .md), every relative link target exists, and the
// published build emits no source or declaration maps (they would point into lib/, which is not shipped).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const read = (f: string) => readFileSync(join(ROOT, f), 'utf8');

/** Relative link targets of a markdown file (no URLs, no pure anchors), without their `#anchor`. */
function relativeLinks(file: string): string[] {
  const text = read(file).replace(/^```[\s\S]*?^```$/gm, '');
  const out: string[] = [];
  for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
    const target = m[1]!;
    if (/^[a-z]+:/i.test(target) || target.startsWith('#')) continue;
    out.push(normalize(join(dirname(file), target.split('#')[0]!)));
  }
  return out;
}

describe('documentation links', () => {
  const documents = new Set<string>((JSON.parse(read('typedoc.json')) as { projectDocuments?: string[] }).projectDocuments ?? []);
  const sources = ['README.md', 'ARCHITECTURE.md', ...documents];

  it('every relative link target exists', () => {
    for (const f of sources) for (const t of relativeLinks(f)) expect(existsSync(join(ROOT, t)), `${f} → ${t}`).toBe(true);
  });

  it('every linked markdown file is a typedoc project document', () => {
    for (const f of sources) {
      for (const t of relativeLinks(f).filter((x) => x.endsWith('.md') && x !== 'README.md')) expect(documents.has(t), `${f} → ${t}`).toBe(true);
    }
  });

  it('the published build has no source or declaration maps, and lib/ is not shipped', () => {
    const build = JSON.parse(read('tsconfig.build.json')) as { compilerOptions: Record<string, unknown> };
    expect(build.compilerOptions.sourceMap ?? false).toBe(false);
    expect(build.compilerOptions.declarationMap ?? false).toBe(false);
    expect(build.compilerOptions.inlineSourceMap ?? false).toBe(false);
    const files = (JSON.parse(read('package.json')) as { files: string[] }).files;
    expect(files.some((f) => f.replace(/\/$/, '') === 'lib')).toBe(false);
    expect((JSON.parse(read('typedoc.json')) as { tsconfig: string }).tsconfig).toBe('tsconfig.build.json');
  });
});
