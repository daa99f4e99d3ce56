// The demo: the sentence about unseen domains, and a miniature end-to-end run (clip-tiny fixture, random weights:
// the numbers are meaningless, the files and their shape are what is checked).
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeUnseen, runDemo } from '../lib/tools/demo.js';
import { CLIP_TINY, HAVE_SHARED, VOCAB_PATH } from './helpers/fixtures.js';

describe('describeUnseen', () => {
  it('says whether the protection carried over, from how far accuracy fell towards chance', () => {
    // (0.9 − 0.15) / (0.9 − 0.1) = 0.94 ≥ 0.8: suppressed.
    expect(describeUnseen('clipart', 0.9, 0.15, 0.1)).toMatch(/^clipart \(never seen by the protection\): reference 90\.0%, protected 15\.0%: suppressed too/);
    // (0.9 − 0.85) / 0.8 = 0.06 ≤ 0.2: still works.
    expect(describeUnseen('product', 0.9, 0.85, 0.1)).toMatch(/still works/);
    // (0.9 − 0.5) / 0.8 = 0.5: partly, half-way.
    expect(describeUnseen('product', 0.9, 0.5, 0.1)).toMatch(/partly suppressed \(50% of the way/);
    // A reference at chance: nothing to suppress; at or below chance counts as suppressed.
    expect(describeUnseen('x', 0.1, 0.1, 0.1)).toMatch(/suppressed too/);
  });
});

describe.skipIf(!HAVE_SHARED)('runDemo (miniature)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ipclip-demo-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes demo.json in the documented shape and a report, and prints the table and verdicts', async () => {
    let printed = '';
    const result = await runDemo({
      clip: CLIP_TINY.openaiSafetensors, vocab: VOCAB_PATH, data: join(dir, 'synth'), out: join(dir, 'out'),
      perClass: 3, size: 32, epochs: 1, batchSize: 4, samplesPerDomain: 2,
      stdout: { write: (s: string) => { printed += s; return true; } }, stderr: { write: () => true },
    });
    const json = JSON.parse(readFileSync(join(dir, 'out', 'demo.json'), 'utf8'));
    expect(json.chance).toBe(0.1);
    expect(Object.keys(json.sets)).toEqual(['photo', 'sketch', 'clipart', 'product']);
    for (const s of Object.values(json.sets) as Record<string, number>[]) {
      expect(Object.keys(s).sort()).toEqual(['protected', 'reference', 'zeroShot']);
      // 3 per class × 10 classes, 40% test = 12 images: every accuracy is a multiple of 1/12.
      for (const v of Object.values(s)) expect(Math.abs(v * 12 - Math.round(v * 12))).toBeLessThan(1e-9);
    }
    expect(Object.keys(json.metrics).sort()).toEqual(['protection', 'retention', 'suppression']);
    expect(json.seconds).toBeGreaterThan(0);
    // The targets follow from the numbers.
    // Retention is judged against the better of the reference and zero-shot CLIP on photo.
    const photo = json.sets.photo as { zeroShot: number; reference: number; protected: number };
    const best = Math.max(photo.reference, photo.zeroShot);
    // (The miniature's untrained models may score 0 on photo: nothing to retain then, which counts as kept.)
    const expected = best > 0 ? photo.protected / best : 1;
    expect(result.targets.retention.value).toBeCloseTo(expected, 12);
    expect(result.targets.retention.pass).toBe(expected >= 0.95 - 1e-12);
    expect(result.targets.sketch.pass).toBe(json.sets.sketch.protected <= 0.2 + 1e-12);
    expect(printed).toMatch(new RegExp(`${result.targets.retention.pass ? 'PASS' : 'FAIL'}  authorized retention`));
    expect(printed).toMatch(/clipart \(never seen by the protection\)/);
    expect(printed).toMatch(/product \(never seen by the protection\)/);
    expect(printed).toMatch(/1 epochs per run at lr 0.001 \(the paper: 50 epochs at 0.01/);
    const html = readFileSync(join(dir, 'out', 'report.html'), 'utf8');
    expect(html).toContain('data-group="sketch"');
    expect((html.match(/<figure class="sample/g) ?? []).length).toBe(8);
    expect(existsSync(result.files.report)).toBe(true);
  }, 120_000);
});
