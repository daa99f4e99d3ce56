// Untrusted checkpoints: nothing in a file's metadata is executed or used as a path. Metadata full of path-like
// and script-like strings loads as plain data, and the paths it names are never created, opened or read.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { METADATA_KEY, readCheckpoint } from '../../lib/ipclip/checkpoint.js';
import { Clip } from '../../lib/clip/clip.js';
import { PromptModel } from '../../lib/ipclip/prompt-model.js';
import { readSafetensors, writeSafetensors } from '../../lib/io/safetensors.js';
import { CLIP_TINY, HAVE_SHARED, TEST_DEVICE, VOCAB_PATH, maxAbsDiff } from '../helpers/fixtures.js';
import { joinSafetensors, splitSafetensors } from './helpers.js';

describe.skipIf(!HAVE_SHARED)('untrusted checkpoint metadata', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'ipclip-untrusted-'));
  const sentinel = join(tmp, 'must-not-exist');
  const fifo = join(tmp, 'fifo'); // opening a FIFO for reading blocks: a loader that followed this path would hang
  let clip: Clip;
  const hostile = () => ({
    path: sentinel, vocab: join(sentinel, 'vocab.txt.gz'), config: `${sentinel}/config.json`, weights: fifo,
    script: `require('child_process').execSync('touch ${sentinel}')`, shell: `$(touch ${sentinel}); \`touch ${sentinel}\``,
    url: `file://${sentinel}`, traversal: '../../../../etc/passwd', ['__proto__']: '{"polluted": true}', constructor: 'x',
  });
  beforeAll(async () => {
    execFileSync('mkfifo', [fifo]);
    clip = await Clip.load(CLIP_TINY.openaiSafetensors, { device: TEST_DEVICE, vocab: VOCAB_PATH });
  });
  afterAll(() => {
    clip?.dispose();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('CLIP weights whose __metadata__ names paths and scripts load and compute exactly as the original', async () => {
    const raw = splitSafetensors(CLIP_TINY.openaiSafetensors);
    const meta: Record<string, string> = { format: 'pt' };
    for (const [k, v] of Object.entries(hostile())) meta[k] = v;
    const file = join(tmp, 'weights.safetensors');
    joinSafetensors(file, { ...raw.header, __metadata__: meta }, raw.data);
    expect((await readSafetensors(file)).metadata.path).toBe(sentinel); // the strings are really in the file
    const loaded = await Clip.load(file, { device: TEST_DEVICE });
    try {
      const ids = { data: Int32Array.from([49406, 320, 1929, 49407]), shape: [1, 4] };
      expect(maxAbsDiff((await loaded.encodeText(ids)).data, (await clip.encodeText(ids)).data)).toBe(0);
      expect(loaded.tokenizer).toBeNull(); // the metadata's "vocab" was not used
    } finally {
      loaded.dispose();
    }
    expect(existsSync(sentinel)).toBe(false);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('a prompt checkpoint with path- and script-like class names and extra metadata is data only', async () => {
    const names = ['../../etc/passwd', `$(touch ${sentinel})`, '<script>alert(1)</script>'];
    using prompt = await PromptModel.create(clip, names, { seed: 1 });
    const file = join(tmp, 'prompt.safetensors');
    const doc = { ...prompt.metadata(), ...hostile() };
    const state = await prompt.state();
    await writeSafetensors(file, state, { [METADATA_KEY]: JSON.stringify(doc), ...hostile() });
    const ck = await readCheckpoint(file);
    expect(ck.meta!.classNames).toEqual(names);
    expect(Object.keys(ck.meta!)).not.toContain('path'); // unknown fields are dropped, not carried along
    using again = await PromptModel.load(clip, file);
    expect(again.classNames).toEqual(names);
    const after = await again.state();
    for (const [k, t] of Object.entries(state)) expect(maxAbsDiff(after[k]!.data, t.data), k).toBe(0);
    expect(existsSync(sentinel)).toBe(false);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
