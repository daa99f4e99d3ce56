// The package's public surface: the entry names every export (no `export *`), the raw binding and the apps stay
// out of it, and the subpaths `ipclip/cli` and `ipclip/tools` map (package.json "exports") to their entries.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as api from '../lib/index.js';
import * as cli from '../lib/cli/index.js';
import * as tools from '../lib/tools/index.js';

const root = join(import.meta.dirname, '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  exports: Record<string, { types?: string; default?: string } | string>;
};

describe('the public API', () => {
  it('every entry names its exports', () => {
    for (const entry of ['lib/index.ts', 'lib/cli/index.ts', 'lib/tools/index.ts']) {
      expect(readFileSync(join(root, entry), 'utf8'), entry).not.toMatch(/export\s*\*/);
    }
  });

  it('keeps the raw binding, the CLI, the tools and the low-level helpers out of the main entry', () => {
    const internal = ['loadNative', 'callNative', 'callNativeSync', 'wrapNativeError', 'addonPath', 'cliMain', 'main',
      'runDemo', 'ProgressBar', 'renderReport', 'generateSynthDomains', 'ClipPretrainer', 'halfToFloat', 'BYTE_TO_UNICODE',
      'resizeImage', 'randAugment', 'check', 'Rng', 'argmaxRows', 'writeCheckpoint'];
    for (const name of internal) expect(Object.keys(api), name).not.toContain(name);
    for (const name of ['Clip', 'ClipTokenizer', 'PromptModel', 'IPTrainer', 'Evaluator', 'IpclipError', 'DomainDataset',
      'BatchLoader', 'protectionMetrics', 'readCheckpoint', 'importReleaseCheckpoint', 'setThreads']) {
      expect(api, name).toHaveProperty(name);
    }
  });

  it('ipclip/cli is main(argv) and the command list; ipclip/tools holds the apps', () => {
    expect(typeof cli.main).toBe('function');
    expect(cli.COMMANDS.map((c) => c.name)).toContain('train');
    for (const name of ['generateSynthDomains', 'writeReport', 'runDemo', 'ProgressBar', 'ClipPretrainer', 'learnMerges']) {
      expect(tools, name).toHaveProperty(name);
    }
  });

  it("the names the bench and example scripts destructure from dist/ exist in that entry (they run only outside the suite)", () => {
    const entries: Record<string, object> = { index: api, tools };
    let checked = 0;
    for (const dir of ['bench', 'examples', 'scripts']) {
      for (const file of readdirSync(join(root, dir)).filter((f) => f.endsWith('.mjs'))) {
        const text = readFileSync(join(root, dir, file), 'utf8');
        // `const ipclip = await import(join(root, 'dist', 'index.js'));` … `const { A, B } = ipclip;`
        const bound = new Map<string, string>();
        for (const m of text.matchAll(/const (\w+) = await import\(join\(root, 'dist', (?:'(tools)', )?'index\.js'\)\)/g)) bound.set(m[1]!, m[2] ?? 'index');
        const uses: [string, string][] = [];
        for (const [v, entry] of bound) for (const m of text.matchAll(new RegExp(`const \\{([^}]+)\\} = ${v};`, 'g'))) uses.push([m[1]!, entry]);
        for (const m of text.matchAll(/const \{([^}]+)\} = await import\(join\(root, 'dist', (?:'(tools)', )?'index\.js'\)\)/g)) uses.push([m[1]!, m[2] ?? 'index']);
        for (const [names, entry] of uses) {
          for (const name of names.split(',').map((n) => n.trim().split(':')[0]!.trim()).filter(Boolean)) {
            expect(entries[entry], `${dir}/${file}: ${name} from dist/${entry === 'index' ? '' : 'tools/'}index.js`).toHaveProperty(name);
            checked++;
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(10);
  });

  it('package.json "exports" maps each subpath to the compiled entry of its source, with types', () => {
    const sources: Record<string, string> = { '.': 'lib/index.ts', './cli': 'lib/cli/index.ts', './tools': 'lib/tools/index.ts' };
    for (const [subpath, source] of Object.entries(sources)) {
      const target = pkg.exports[subpath] as { types: string; default: string };
      expect(target, subpath).toBeTypeOf('object');
      const compiled = source.replace(/^lib\//, './dist/').replace(/\.ts$/, '');
      expect(target.default).toBe(`${compiled}.js`);
      expect(target.types).toBe(`${compiled}.d.ts`);
      expect(existsSync(join(root, source))).toBe(true);
    }
  });
});
