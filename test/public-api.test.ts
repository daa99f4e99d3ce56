// The package's public surface: the entry names every export (no `export *`), the raw binding and the apps stay
// out of it, and the subpaths `ipclip/cli` and `ipclip/tools` map (package.json "exports") to their entries.
import { existsSync, readFileSync } from 'node:fs';
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
