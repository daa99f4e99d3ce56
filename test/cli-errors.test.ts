// The command line's error paths as scripts meet them: a mistyped flag names the flag that was meant, and with
// --json every error is one JSON document on stdout ({ error: { code, message } }) besides the line on stderr.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { nearestName } from '../lib/cli/args.js';
import { ensureDist } from './helpers/dist.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'bin', 'ipclip.js');
const ipclip = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });

describe('nearestName', () => {
  const flags = ['epochs', 'lr', 'batch-size', 'seed', 'scenario', 'authorized', 'unauthorized', 'json'];
  it('finds the flag one or two edits away, or a prefix', () => {
    expect(nearestName('epoch', flags)).toBe('epochs');
    expect(nearestName('epcohs', flags)).toBe('epochs'); // a swap is one edit
    expect(nearestName('lrr', flags)).toBe('lr');
    expect(nearestName('batch', flags)).toBe('batch-size'); // prefix
    expect(nearestName('scenaro', flags)).toBe('scenario');
  });
  it('stays silent when nothing is close', () => {
    expect(nearestName('colour', flags)).toBeNull();
    expect(nearestName('xy', flags)).toBeNull();
    expect(nearestName('jsno', ['json'])).toBe('json');
    expect(nearestName('jz', ['json'])).toBeNull();
  });
});

describe('ipclip error output', () => {
  beforeAll(() => ensureDist(ROOT), 300_000);

  it('suggests the flag that was meant (exit 2)', () => {
    const r = ipclip(['train', '--epoch', '3']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("unknown flag '--epoch': did you mean --epochs?");
  });

  it('with --json, prints the error as JSON on stdout', () => {
    const missing = join(ROOT, 'no-such-checkpoint.safetensors');
    const r = ipclip(['info', missing, '--json']);
    expect(r.status).toBe(1);
    const doc = JSON.parse(r.stdout) as { error: { code: string; message: string } };
    expect(doc.error.code).toBe('ERR_FILE_NOT_FOUND');
    expect(doc.error.message).toContain('no-such-checkpoint');
    expect(r.stderr).toContain('[ERR_FILE_NOT_FOUND]');
    const usage = ipclip(['info', '--json', '--bogus']);
    expect(usage.status).toBe(2);
    expect(JSON.parse(usage.stdout)).toEqual({ error: { code: 'ERR_USAGE', message: "unknown flag '--bogus'" } });
  });
});
