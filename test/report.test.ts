// The HTML report: rendered from a small fixture result, opened in headless Chromium (no errors, no network,
// the expected charts and cards), screenshotted to out/test-report.png; escaping and validation.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IpclipError } from '../lib/core/errors.js';
import { METRIC_SENTENCES, renderReport, thumbnail, writeReport, type ReportData, type ReportPoint } from '../lib/tools/report/report.js';
import { niceTicks, smooth } from '../lib/tools/report/svg.js';

const CHROMIUM = '/usr/bin/chromium';
const OUT_DIR = fileURLToPath(new URL('../out/', import.meta.url));
const DOMAINS = ['photo', 'sketch', 'clipart', 'product'];
const TERMS = ['loss', 'ceA', 'ceU', 'ceSelf', 'ceCross', 'mse', 'kl', 'entropy'];

/** A solid-colour PNG with a dark square in the middle (a stand-in for a SynthDomains image). */
async function png(colour: [number, number, number]): Promise<Buffer> {
  const square = await sharp({ create: { width: 12, height: 12, channels: 3, background: { r: 30, g: 30, b: 30 } } }).png().toBuffer();
  return sharp({ create: { width: 32, height: 32, channels: 3, background: { r: colour[0], g: colour[1], b: colour[2] } } })
    .composite([{ input: square, left: 10, top: 10 }]).png().toBuffer();
}

/** A training run of `n` iterations with every term decaying from a different start (and the paper's lr shape). */
function run(n: number, scale: number, onlyCe = false): ReportPoint[] {
  return Array.from({ length: n }, (_, i) => {
    const terms: Record<string, number> = {};
    TERMS.forEach((k, j) => { terms[k] = onlyCe && k !== 'ceA' && k !== 'loss' ? 0 : scale * (j + 1) * Math.exp(-i / 30) + 0.05 * Math.sin(i); });
    return { iteration: i + 1, lr: i < 20 ? 0.01 * (i / 20) : 0.005 * (1 + Math.cos((Math.PI * (i - 20)) / (n - 20))), terms };
  });
}

async function fixture(): Promise<ReportData> {
  const colours: [number, number, number][] = [[220, 60, 60], [240, 240, 230], [60, 160, 220], [255, 255, 255]];
  const samples = [];
  for (const [d, domain] of DOMAINS.entries()) {
    const img = await thumbnail(await png(colours[d]!), 72);
    for (let k = 0; k < 5; k++) samples.push({ domain, png: img, label: `class ${k}`, predicted: k % 2 === 0 || domain === 'photo' ? `class ${k}` : 'class 9' });
  }
  return {
    title: 'Report test <fixture>',
    subtitle: 'photo authorized, sketch unauthorized',
    chance: 0.1,
    domains: [
      { name: 'photo', role: 'authorized', zeroShot: 0.62, reference: 0.93, protected: 0.92, n: 200 },
      { name: 'sketch', role: 'unauthorized', zeroShot: 0.55, reference: 0.81, protected: 0.08, n: 200 },
      { name: 'clipart', role: 'unseen', zeroShot: 0.66, reference: 0.88, protected: 0.47, n: 200 },
      { name: 'product', role: 'unseen', zeroShot: 0.71, reference: 0.95, protected: 0.9, n: 200 },
    ],
    metrics: { retention: 0.989, suppression: 1, protection: 0.995, dropA: 0.01, dropU: 0.73 },
    runs: [{ name: 'reference', points: run(150, 1, true) }, { name: 'protected', points: run(150, 2) }],
    samples,
    targets: [{ name: 'authorized retention ≥ 0.95', pass: true, detail: '0.989' }, { name: 'sketch ≤ chance + 10 points', pass: false, detail: '21.0%' }],
    notes: ['clipart (never seen by the protection): partly suppressed.'],
    settings: { epochs: 6, 'batch size': 16 },
    createdAt: '2025-01-01T00:00:00.000Z',
  };
}

describe('report HTML', () => {
  it('is one document with no external resources, scripts or network URLs', async () => {
    const html = renderReport(await fixture());
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect(html).toContain("default-src 'none'");
    expect(html).not.toMatch(/<script|<link|https?:\/\/(?!www\.w3\.org\/2000\/svg)/i);
    // Every image is inline.
    const srcs = [...html.matchAll(/<img[^>]*src="([^"]+)"/g)].map((m) => m[1]!);
    expect(srcs).toHaveLength(20);
    for (const s of srcs) expect(s.startsWith('data:image/png;base64,')).toBe(true);
  });

  it('escapes text from the data', async () => {
    const data = await fixture();
    data.title = '<script>alert(1)</script>';
    data.domains[0]!.name = 'a"b<c>';
    const html = renderReport(data);
    expect(html).not.toContain('<script>alert(1)</script>');
    expect(html).toContain('&#60;script&#62;alert(1)&#60;/script&#62;');
    expect(html).not.toContain('a"b<c>');
  });

  it('refuses bad data with clear errors', async () => {
    const bad = async (edit: (d: ReportData) => void) => {
      const d = await fixture();
      edit(d);
      try {
        renderReport(d);
      } catch (err) {
        expect(err).toBeInstanceOf(IpclipError);
        return (err as Error).message;
      }
      throw new Error('expected an error');
    };
    expect(await bad((d) => { d.domains[1]!.protected = 1.5; })).toMatch(/sketch\.protected must be an accuracy/);
    expect(await bad((d) => { d.chance = 0; })).toMatch(/chance/);
    expect(await bad((d) => { d.domains = []; })).toMatch(/domains/);
    expect(await bad((d) => { d.samples[0]!.png = '"><img src=x>'; })).toMatch(/base64/);
  });

  it('svg helpers: round ticks and a moving average', () => {
    expect(niceTicks(0, 1, 4)).toEqual([0, 0.25, 0.5, 0.75, 1]);
    // range 11.1 / 4 = 2.78 per tick → the next round step is 5.
    expect(niceTicks(-3.2, 7.9, 4)).toEqual([0, 5]);
    expect(niceTicks(2, 3, 4)).toEqual([2, 2.25, 2.5, 2.75, 3]);
    expect(smooth([{ x: 0, y: 0 }, { x: 1, y: 3 }, { x: 2, y: 6 }], 3).map((p) => p.y)).toEqual([1.5, 3, 4.5]);
  });
});

describe('report in headless Chromium', () => {
  let dir: string;
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'ipclip-report-')); });
  afterAll(() => { rmSync(dir, { recursive: true, force: true }); });

  it('renders without errors or requests, with bars per domain, curves and metrics; screenshot in out/', async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; scripts/ensure.mjs does it) to run the report test`);
    }
    const { chromium } = await import('playwright-core');
    const data = await fixture();
    const file = await writeReport(join(dir, 'report.html'), data);
    // A fresh profile folder per run: nothing from an earlier browser session can leak in.
    const browser = await chromium.launchPersistentContext(join(dir, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1100, height: 900 },
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-dev-shm-usage', '--no-first-run'],
    });
    try {
      const page = await browser.newPage();
      const problems: string[] = [];
      const requests: string[] = [];
      page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`); });
      page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
      page.on('request', (r) => { if (!r.url().startsWith('file:') && !r.url().startsWith('data:')) requests.push(r.url()); });
      await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });

      // Three bars (zero-shot, reference, protected) for each domain, at the data's heights.
      for (const d of data.domains) {
        const bars = page.locator(`rect.bar[data-group="${d.name}"]`);
        await expect(bars.count()).resolves.toBe(3);
        const values = await bars.evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-value'))));
        expect(values).toEqual([d.zeroShot, d.reference, d.protected].map((v) => Number(v!.toFixed(4))));
      }
      // A taller bar for a higher accuracy: rendered geometry follows the numbers.
      const h = async (g: string, s: string) => (await page.locator(`rect.bar[data-group="${g}"][data-series="${s}"]`).boundingBox())!.height;
      expect(await h('sketch', 'reference (unprotected)')).toBeGreaterThan(5 * (await h('sketch', 'IP-CLIP (protected)')));

      // A chart per loss term and one for the learning rate; both runs on the total loss, only the protected run on CE_U.
      for (const k of [...TERMS, 'lr']) await expect(page.locator(`polyline.curve[data-key="${k}"]`).count()).resolves.toBeGreaterThan(0);
      await expect(page.locator('polyline.curve[data-key="loss"]').count()).resolves.toBe(2);
      await expect(page.locator('polyline.curve[data-key="ceU"]').count()).resolves.toBe(1);

      // The three metrics with their sentences.
      for (const k of ['retention', 'suppression', 'protection'] as const) {
        const card = page.locator(`[data-metric="${k}"]`);
        await expect(card.innerText()).resolves.toContain(METRIC_SENTENCES[k]);
        await expect(card.innerText()).resolves.toContain(data.metrics![k].toFixed(3));
      }
      // Samples: one row per domain, correct / wrong marked as in the data.
      for (const d of DOMAINS) {
        const want = data.samples.filter((s) => s.domain === d);
        await expect(page.locator(`[data-domain="${d}"] figure.sample`).count()).resolves.toBe(want.length);
        await expect(page.locator(`[data-domain="${d}"] figure.wrong`).count()).resolves.toBe(want.filter((s) => s.label !== s.predicted).length);
      }
      // Images decoded (naturalWidth > 0): broken data URIs would show as 0.
      const widths = await page.locator('figure.sample img').evaluateAll((els) => els.map((e) => (e as unknown as { naturalWidth: number }).naturalWidth));
      expect(widths.every((w) => w > 0)).toBe(true);
      await expect(page.locator('.fail').count()).resolves.toBe(1);

      mkdirSync(OUT_DIR, { recursive: true });
      await page.screenshot({ path: join(OUT_DIR, 'test-report.png'), fullPage: true });
      expect(problems).toEqual([]);
      expect(requests).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 60_000);
});
