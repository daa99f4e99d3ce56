import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { IpclipError } from '../lib/core/errors.js';
import { Rng } from '../lib/core/rng.js';
import {
  SYNTH_CLASSES, SYNTH_COLOURS, SYNTH_DOMAINS, SYNTH_VERSION, captionFor, generateSynthDomains,
  renderContactSheet, renderSynthImage, synthFileName, type SynthDomain, type SynthManifest,
} from '../lib/tools/synth/synth.js';

const SIZE = 64;
let tmp: string;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'ipclip-synth-'));
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

/** Decodes a PNG to raw RGB, failing if it is not `size`×`size` with 3 channels. */
async function decode(png: Buffer | string, size = SIZE): Promise<Buffer> {
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  expect([info.width, info.height, info.channels]).toEqual([size, size, 3]);
  return data;
}

async function expectInvalid(p: Promise<unknown> | (() => unknown)): Promise<void> {
  const run = typeof p === 'function' ? Promise.resolve().then(p) : p;
  const err = await run.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(IpclipError);
  expect((err as IpclipError).code).toBe('ERR_INVALID_ARGUMENT');
}

async function listPngs(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(root, { recursive: true, withFileTypes: true })) {
    if (e.isFile() && e.name.endsWith('.png')) out.push(path.relative(root, path.join(e.parentPath, e.name)));
  }
  return out.sort();
}

async function mtimes(root: string, files: string[]): Promise<number[]> {
  return Promise.all(files.map(async (f) => (await fs.stat(path.join(root, f))).mtimeMs));
}

describe('captions', () => {
  it('follow "a {domainWord} of a {colour} {class}." with "an" before vowels', () => {
    expect(captionFor('product', 'star', 'red')).toBe('a product photo of a red star.');
    expect(captionFor('photo', 'arrow', 'orange')).toBe('a photo of an orange arrow.');
    expect(captionFor('clipart', 'moon', 'gray')).toBe('a clipart of a gray moon.');
    expect(captionFor('sketch', 'arrow', null)).toBe('a sketch of an arrow.');
    expect(captionFor('sketch', 'heart')).toBe('a sketch of a heart.');
  });

  it('reject unknown domains and colours', async () => {
    await expectInvalid(() => captionFor('painting' as SynthDomain, 'star', 'red'));
    await expectInvalid(() => captionFor('photo', 'star', 'teal'));
  });
});

describe('renderSynthImage', () => {
  it('is deterministic for a seed and varies with the image index', async () => {
    for (const domain of SYNTH_DOMAINS) {
      const a = await renderSynthImage(domain, 'star', new Rng(5).fork(`${domain}/star/0`), SIZE);
      const b = await renderSynthImage(domain, 'star', new Rng(5).fork(`${domain}/star/0`), SIZE);
      const c = await renderSynthImage(domain, 'star', new Rng(5).fork(`${domain}/star/1`), SIZE);
      expect(a.png.equals(b.png)).toBe(true);
      expect(a.caption).toBe(b.caption);
      expect(a.png.equals(c.png)).toBe(false);
      await decode(a.png);
    }
  });

  it('honours the size and names the colour it painted', async () => {
    const { png, caption, colour } = await renderSynthImage('clipart', 'ring', new Rng(1), 32);
    await decode(png, 32);
    expect(SYNTH_COLOURS).toContain(colour);
    expect(caption).toBe(`a clipart of a ${colour} ring.`);
  });

  it('rejects unknown classes, domains, sizes and generators', async () => {
    await expectInvalid(renderSynthImage('photo', 'dragon', new Rng(1)));
    await expectInvalid(renderSynthImage('oil' as SynthDomain, 'star', new Rng(1)));
    await expectInvalid(renderSynthImage('photo', 'star', new Rng(1), 8));
    await expectInvalid(renderSynthImage('photo', 'star', new Rng(1), 64.5));
    await expectInvalid(renderSynthImage('photo', 'star', { next: () => 0.5 } as unknown as Rng));
  });
});

describe('generateSynthDomains', () => {
  let root: string;
  let manifest: SynthManifest;

  beforeAll(async () => {
    const progress: number[] = [];
    const res = await generateSynthDomains({ out: path.join(tmp, 'a'), perClass: 2, seed: 11, onProgress: (d) => progress.push(d) });
    root = res.root;
    expect(res).toEqual({ root, classes: [...SYNTH_CLASSES], domains: [...SYNTH_DOMAINS], count: 80, reused: false });
    expect(progress).toEqual(Array.from({ length: 80 }, (_, i) => i + 1));
    manifest = JSON.parse(await fs.readFile(path.join(root, 'synth.json'), 'utf8'));
  });

  it('uses the default classes in order', () => {
    expect(SYNTH_CLASSES).toEqual(['circle', 'square', 'triangle', 'star', 'heart', 'arrow', 'cross', 'ring', 'moon', 'lightning']);
    expect(SYNTH_DOMAINS).toEqual(['photo', 'clipart', 'sketch', 'product']);
    expect(SYNTH_COLOURS.length).toBeGreaterThanOrEqual(8);
  });

  it('writes <domain>/<class>/<class>_<iiii>.png and a manifest captioning every file', async () => {
    const expected = SYNTH_DOMAINS.flatMap((d) => SYNTH_CLASSES.flatMap((c) => [0, 1].map((i) => path.join(d, c, `${c}_000${i}.png`)))).sort();
    expect(await listPngs(root)).toEqual(expected);
    expect(synthFileName('star', 12)).toBe('star_0012.png');
    expect(manifest).toMatchObject({ version: SYNTH_VERSION, seed: 11, size: SIZE, perClass: 2, classes: [...SYNTH_CLASSES], domains: [...SYNTH_DOMAINS] });
    expect(Object.keys(manifest.captions).sort()).toEqual(expected.map((f) => f.split(path.sep).join('/')));
    const words: Record<string, string> = { photo: 'photo', clipart: 'clipart', sketch: 'sketch', product: 'product photo' };
    const colours = new Set<string>();
    for (const [key, caption] of Object.entries(manifest.captions)) {
      const [domain, cls] = key.split('/');
      if (domain === 'sketch') {
        expect(caption).toBe(`a sketch of ${/^[aeiou]/.test(cls) ? 'an' : 'a'} ${cls}.`);
      } else {
        const m = caption.match(new RegExp(`^a ${words[domain]} of an? (\\w+) ${cls}\\.$`));
        expect(m, caption).not.toBeNull();
        expect(SYNTH_COLOURS).toContain(m![1]);
        colours.add(m![1]);
      }
    }
    expect(colours.size).toBeGreaterThanOrEqual(5); // 60 coloured images: the colour really varies
    // The manifest agrees with rendering the same image directly from the documented fork key.
    const direct = await renderSynthImage('photo', 'moon', new Rng(11).fork('photo/moon/1'), SIZE);
    expect(direct.png.equals(await fs.readFile(path.join(root, 'photo/moon/moon_0001.png')))).toBe(true);
    expect(manifest.captions['photo/moon/moon_0001.png']).toBe(direct.caption);
  });

  it('is byte-identical for the same seed and differs for another', async () => {
    const same = await generateSynthDomains({ out: path.join(tmp, 'b'), perClass: 2, seed: 11, concurrency: 1 });
    const other = await generateSynthDomains({ out: path.join(tmp, 'c'), perClass: 2, seed: 12, classes: ['star'], domains: ['clipart'] });
    for (const f of await listPngs(root)) {
      expect((await fs.readFile(path.join(same.root, f))).equals(await fs.readFile(path.join(root, f))), f).toBe(true);
    }
    expect(await fs.readFile(path.join(same.root, 'synth.json'), 'utf8')).toBe(await fs.readFile(path.join(root, 'synth.json'), 'utf8'));
    const f = 'clipart/star/star_0000.png';
    expect((await fs.readFile(path.join(other.root, f))).equals(await fs.readFile(path.join(root, f)))).toBe(false);
  });

  it('styles the domains as specified', async () => {
    type Stats = { spreadMax: number; spreadMean: number; borderMean: number; borderMin: number; borderSd: number; top3: number };
    const stats: Record<string, Stats[]> = {};
    for (const key of Object.keys(manifest.captions)) {
      const px = await decode(path.join(root, key));
      let spreadMax = 0, spreadSum = 0, borderMin = 255;
      const border: number[] = [];
      const counts = new Map<number, number>();
      for (let y = 0; y < SIZE; y++) for (let x = 0; x < SIZE; x++) {
        const p = (y * SIZE + x) * 3;
        const [r, g, b] = [px[p], px[p + 1], px[p + 2]];
        const spread = Math.max(r, g, b) - Math.min(r, g, b);
        spreadMax = Math.max(spreadMax, spread);
        spreadSum += spread;
        counts.set((r << 16) | (g << 8) | b, (counts.get((r << 16) | (g << 8) | b) ?? 0) + 1);
        if (x < 3 || y < 3 || x >= SIZE - 3 || y >= SIZE - 3) {
          border.push((r + g + b) / 3);
          borderMin = Math.min(borderMin, r, g, b);
        }
      }
      const borderMean = border.reduce((s, v) => s + v, 0) / border.length;
      const borderSd = Math.sqrt(border.reduce((s, v) => s + (v - borderMean) ** 2, 0) / border.length);
      const top3 = [...counts.values()].sort((a, b) => b - a).slice(0, 3).reduce((s, v) => s + v, 0) / (SIZE * SIZE);
      (stats[key.split('/')[0]] ??= []).push({ spreadMax, spreadMean: spreadSum / (SIZE * SIZE), borderMean, borderMin, borderSd, top3 });
    }
    const mean = (d: string, k: keyof Stats) => stats[d].reduce((s, v) => s + v[k], 0) / stats[d].length;
    for (const s of stats.product) expect(s.borderMin).toBeGreaterThanOrEqual(245);       // clean white surround
    for (const s of stats.sketch) {
      expect(s.spreadMax).toBeLessThanOrEqual(12);                                         // grey graphite on neutral paper
      expect(s.borderMean).toBeGreaterThan(220);                                           // light paper
    }
    for (const s of stats.clipart) {
      expect(s.borderSd).toBeLessThan(1);                                                  // one flat background colour
      expect(s.top3).toBeGreaterThan(0.8);                                                 // background, fill, outline
    }
    for (const s of stats.photo) {
      expect(s.borderSd).toBeGreaterThan(3);                                               // textured background
      expect(s.top3).toBeLessThan(0.3);
    }
    // Coloured domains show colour; sketch does not.
    for (const d of ['photo', 'clipart', 'product']) expect(mean(d, 'spreadMean')).toBeGreaterThan(3 * mean('sketch', 'spreadMean'));
  });

  it('reuses a complete dataset without rewriting a file', async () => {
    const files = [...await listPngs(root), 'synth.json'];
    const before = await mtimes(root, files);
    await new Promise((r) => setTimeout(r, 20)); // so a rewrite would show in the modification time
    const res = await generateSynthDomains({ out: root, perClass: 2, seed: 11 });
    expect(res).toEqual({ root, classes: [...SYNTH_CLASSES], domains: [...SYNTH_DOMAINS], count: 80, reused: true });
    expect(await mtimes(root, files)).toEqual(before);
  });

  it('renders a contact sheet with one row per domain and one column per class', async () => {
    const file = path.join(tmp, 'sheet.png');
    const { width, height } = await renderContactSheet(root, file, { cell: SIZE, labels: false, index: 1 });
    const pad = 4;
    expect([width, height]).toEqual([pad + 10 * (SIZE + pad), pad + 4 * (SIZE + pad)]);
    const meta = await sharp(file).metadata();
    expect([meta.width, meta.height]).toEqual([width, height]);
    // At cell = image size, the tile in row "sketch", column "heart" is that image, pixel for pixel.
    const [row, col] = [SYNTH_DOMAINS.indexOf('sketch'), SYNTH_CLASSES.indexOf('heart')];
    const tile = await sharp(file).removeAlpha()
      .extract({ left: pad + col * (SIZE + pad), top: pad + row * (SIZE + pad), width: SIZE, height: SIZE }).raw().toBuffer();
    expect(tile.equals(await decode(path.join(root, 'sketch/heart/heart_0001.png')))).toBe(true);
    await expect(renderContactSheet(path.join(tmp, 'nothing'), file)).rejects.toMatchObject({ code: 'ERR_FILE_NOT_FOUND' });
  });
});

describe('generateSynthDomains: regeneration', () => {
  const opts = { perClass: 2, seed: 3, classes: ['heart', 'ring'], domains: ['sketch', 'product'] as SynthDomain[] };

  it('regenerates a dataset whose manifest is missing, restoring damaged images', async () => {
    const out = path.join(tmp, 'partial');
    await generateSynthDomains({ out, ...opts });
    const file = path.join(out, 'product/ring/ring_0001.png');
    const good = await fs.readFile(file);
    await fs.writeFile(file, 'half-written');
    await fs.rm(path.join(out, 'synth.json'));
    const res = await generateSynthDomains({ out, ...opts });
    expect(res.reused).toBe(false);
    expect((await fs.readFile(file)).equals(good)).toBe(true);
    expect(JSON.parse(await fs.readFile(path.join(out, 'synth.json'), 'utf8')).seed).toBe(3);
  });

  it('regenerates when an image is missing or a parameter changed, leaving no stale images', async () => {
    const out = path.join(tmp, 'changed');
    await generateSynthDomains({ out, ...opts });
    await fs.rm(path.join(out, 'sketch/heart/heart_0000.png'));
    expect((await generateSynthDomains({ out, ...opts })).reused).toBe(false);
    expect((await generateSynthDomains({ out, ...opts })).reused).toBe(true);
    const res = await generateSynthDomains({ out, ...opts, perClass: 1, domains: ['product'] });
    expect(res).toMatchObject({ count: 2, reused: false });
    expect(await listPngs(out)).toEqual([path.join('product', 'heart', 'heart_0000.png'), path.join('product', 'ring', 'ring_0000.png')]);
    const sized = await generateSynthDomains({ out, ...opts, perClass: 1, domains: ['product'], size: 32 });
    expect(sized.reused).toBe(false);
    await decode(path.join(out, 'product/ring/ring_0000.png'), 32);
  });

  it('an aborted run leaves no manifest and is regenerated next time', async () => {
    const out = path.join(tmp, 'aborted');
    const ctl = new AbortController();
    const run = generateSynthDomains({ out, ...opts, concurrency: 1, onProgress: (done) => { if (done === 3) ctl.abort(); }, signal: ctl.signal });
    await expect(run).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    await expect(fs.access(path.join(out, 'synth.json'))).rejects.toThrow();
    expect((await listPngs(out)).length).toBe(3);
    const res = await generateSynthDomains({ out, ...opts });
    expect(res).toMatchObject({ count: 8, reused: false });
    expect((await listPngs(out)).length).toBe(8);
  });

  it('rejects bad options with ERR_INVALID_ARGUMENT', async () => {
    const out = path.join(tmp, 'bad');
    await expectInvalid(generateSynthDomains({ out, perClass: 0 }));
    await expectInvalid(generateSynthDomains({ out, perClass: 1.5 }));
    await expectInvalid(generateSynthDomains({ out, perClass: 1, classes: ['star', 'dragon'] }));
    await expectInvalid(generateSynthDomains({ out, perClass: 1, classes: [] }));
    await expectInvalid(generateSynthDomains({ out, perClass: 1, classes: ['star', 'star'] }));
    await expectInvalid(generateSynthDomains({ out, perClass: 1, domains: ['oil' as SynthDomain] }));
    await expectInvalid(generateSynthDomains({ out, perClass: 1, size: 4 }));
    await expectInvalid(generateSynthDomains({ out, perClass: 1, seed: -1 }));
    await expectInvalid(generateSynthDomains({ out, perClass: 1, concurrency: 0 }));
    await expectInvalid(generateSynthDomains({ out: '', perClass: 1 }));
    await expectInvalid(generateSynthDomains(undefined as never));
    await expect(fs.access(out)).rejects.toThrow(); // nothing was written
  });
});
