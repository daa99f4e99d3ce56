// ipclip convert / convertToSafetensors: a torch.save file to safetensors, checked against the same state dict
// the authors saved as safetensors themselves (../shared/fixtures/release-checkpoint), and the refusals.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Clip } from '../lib/clip/clip.js';
import { convertToSafetensors } from '../lib/io/convert.js';
import { readSafetensors } from '../lib/io/safetensors.js';
import { ensureDist } from './helpers/dist.js';
import { CLIP_TINY, HAVE_SHARED, shared } from './helpers/fixtures.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RELEASE = shared('fixtures', 'release-checkpoint');

describe.skipIf(!HAVE_SHARED)('convert', () => {
  let dir: string;
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'ipclip-convert-')); });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a Dassl torch.save checkpoint becomes its state dict as safetensors, equal to the authors\' own export', async () => {
    const out = join(dir, 'release.safetensors');
    const r = await convertToSafetensors(join(RELEASE, 'model.pth.tar-50'), out);
    const got = await readSafetensors(out);
    const want = await readSafetensors(join(RELEASE, 'prompt_learner.safetensors'));
    expect(Object.keys(got.tensors).sort()).toEqual(Object.keys(want.tensors).sort());
    for (const [name, t] of Object.entries(want.tensors)) {
      expect(got.tensors[name]!.shape, name).toEqual(t.shape);
      expect(Array.from(got.tensors[name]!.data as Float32Array), name).toEqual(Array.from(t.data as Float32Array));
    }
    expect(r.tensors).toBe(Object.keys(want.tensors).length);
    expect(r.dropped).toBeGreaterThan(0); // the optimiser's moments are not part of the state dict
    expect(readdirSync(dir)).toEqual(['release.safetensors']); // no temporary file left beside it
  });

  it('refuses a TorchScript archive unless asked (naming the option), and a file that is not torch.save, writing nothing', async () => {
    const out = join(dir, 'ts.safetensors');
    await expect(convertToSafetensors(CLIP_TINY.torchscript, out)).rejects.toMatchObject({ code: 'ERR_BAD_FILE', message: expect.stringMatching(/TorchScript.*torchScript: true.*--torchscript/) });
    const junk = join(dir, 'junk.pt');
    writeFileSync(junk, 'not a checkpoint');
    await expect(convertToSafetensors(junk, out)).rejects.toMatchObject({ code: 'ERR_BAD_FILE' });
    expect(existsSync(out)).toBe(false);
    await expect(convertToSafetensors(junk, junk)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });

  it("with torchScript: true, OpenAI's TorchScript archive becomes OpenAI safetensors: the fixture's own tensors, the same CLIP", async () => {
    const out = join(dir, 'from-torchscript.safetensors');
    const r = await convertToSafetensors(CLIP_TINY.torchscript, out, { torchScript: true });
    expect(r.reader).toBe('torchscript');
    const got = await readSafetensors(out);
    const want = await readSafetensors(CLIP_TINY.openaiSafetensors);
    // Every tensor of the fixture's safetensors export (made from the same model) is in the archive, unchanged.
    for (const [name, t] of Object.entries(want.tensors)) {
      expect(got.tensors[name], name).toBeDefined();
      expect(got.tensors[name]!.shape, name).toEqual(t.shape);
      expect(Array.from(got.tensors[name]!.data as Float32Array), name).toEqual(Array.from(t.data as Float32Array));
    }
    const [a, b] = [await Clip.load(out), await Clip.load(CLIP_TINY.torchscript)];
    try {
      expect(a.info.fingerprint).toBe(b.info.fingerprint);
      const ids = { data: Float32Array.from({ length: 2 * 3 * 32 * 32 }, (_, i) => Math.sin(i)), shape: [2, 3, 32, 32] };
      const [ea, eb] = [await a.encodeImage(ids), await b.encodeImage(ids)];
      expect(Array.from(ea.data)).toEqual(Array.from(eb.data));
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it('ipclip convert writes the file and refuses to overwrite without --force', () => {
    ensureDist(ROOT);
    const out = join(dir, 'cli.safetensors');
    const run = (...args: string[]) => spawnSync(process.execPath, [join(ROOT, 'bin', 'ipclip.js'), 'convert', ...args], { encoding: 'utf8' });
    const a = run(join(RELEASE, 'model.pth.tar-50'), out, '--json');
    expect(a.status, a.stderr).toBe(0);
    expect(JSON.parse(a.stdout)).toMatchObject({ output: out, widened: [] });
    const b = run(join(RELEASE, 'model.pth.tar-50'), out);
    expect(b.status).toBe(1);
    expect(b.stderr).toMatch(/exists; pass --force/);
    expect(run(join(RELEASE, 'model.pth.tar-50'), out, '--force').status).toBe(0);
  });
});
