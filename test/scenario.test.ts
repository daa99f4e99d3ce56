// A scenario is one descriptor (lib/ipclip/scenario.ts) and the descriptor table is the only list of scenarios:
// every descriptor is complete and consistent, says what method §4–§5 say (checked against hand-written copies of
// the spec's tables, not against the code), and the CLI's choices, help, usage rules and evaluation sets, and
// the trainer's bank pass and stream sources, follow the table for every scenario in it.
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError, parseCommand, type Io } from '../lib/cli/args.js';
import { evalCommand } from '../lib/cli/evaluate.js';
import { trainCommand } from '../lib/cli/train.js';
import { Clip } from '../lib/clip/clip.js';
import { DomainDataset, type Sample } from '../lib/data/dataset.js';
import { PromptModel } from '../lib/ipclip/prompt-model.js';
import {
  LOSS_WEIGHT_NAMES, PROTECTION_SCENARIOS, SCENARIOS, SCENARIO_DESCRIPTORS, WATERMARK_SUFFIX, describeEvaluation, evaluationSets,
  isProtectionScenario, needsOtherDomains, resolveScenario, stepLoss, type EvaluationSpec, type Scenario,
} from '../lib/ipclip/scenario.js';
import { IPTrainer, type StepTerms, type TrainBatch } from '../lib/ipclip/trainer/trainer.js';
import { lossWeights } from './helpers/exactness.js';
import { CLIP_TINY, HAVE_SHARED, TEST_DEVICE, VOCAB_PATH } from './helpers/fixtures.js';

const W = WATERMARK_SUFFIX;

describe('the scenario table', () => {
  it('is the only list: names, protection scenarios and references all come from it, and it is frozen', () => {
    expect([...SCENARIOS]).toEqual(Object.keys(SCENARIO_DESCRIPTORS));
    expect([...SCENARIOS]).toEqual(['target-specified', 'ownership', 'target-free', 'authorization', 'reference']);
    expect([...PROTECTION_SCENARIOS]).toEqual(SCENARIOS.filter((s) => SCENARIO_DESCRIPTORS[s].referenceOf === null));
    expect(Object.isFrozen(SCENARIO_DESCRIPTORS)).toBe(true);
    for (const s of SCENARIOS) {
      const d = SCENARIO_DESCRIPTORS[s];
      expect(Object.isFrozen(d) && Object.isFrozen(d.loss.weights.paper) && Object.isFrozen(d.progressTerms), s).toBe(true);
      expect(() => { (d.loss.weights.paper as { ceU: number }).ceU = 3; }).toThrow(TypeError);
    }
  });

  it('every descriptor is complete and consistent', () => {
    const termNames = ['loss', 'ceA', 'ceU', 'ceSelf', 'ceCross', 'mse', 'kl', 'entropy'];
    for (const s of SCENARIOS) {
      const d = SCENARIO_DESCRIPTORS[s];
      expect(d.summary.length, s).toBeGreaterThan(10);
      expect(d.label.length, s).toBeGreaterThan(0);
      // A reference borrows its streams and sets from a protection scenario; a protection scenario has its own.
      expect(d.streams === null, s).toBe(d.referenceOf !== null);
      expect(d.evaluation === null, s).toBe(d.referenceOf !== null);
      if (d.referenceOf) expect(isProtectionScenario(d.referenceOf.default), s).toBe(true);
      for (const preset of ['paper', 'official'] as const) {
        const w = d.loss.weights[preset];
        expect(Object.keys(w).sort(), s).toEqual([...LOSS_WEIGHT_NAMES].sort());
        for (const k of LOSS_WEIGHT_NAMES) expect(Number.isFinite(w[k]), `${s} ${preset} ${k}`).toBe(true);
        // Without an unauthorized batch every other term is absent from the loss.
        if (!d.loss.unauthorized) for (const k of LOSS_WEIGHT_NAMES) expect(w[k], `${s} ${k}`).toBe(0);
      }
      // The banks feed CE_self and CE_cross (method §3): built exactly where one of them has a weight.
      const usesBanks = (['paper', 'official'] as const).some((p) => d.loss.weights[p].ceSelf !== 0 || d.loss.weights[p].ceCross !== 0);
      expect(d.buildsBanks, s).toBe(usesBanks);
      // Ownership evidence compares the authorized test split clean with it watermarked.
      if (d.ownershipEvidence) {
        expect(d.evaluation, s).toEqual({ authorized: { watermark: false }, unauthorized: [{ domain: 'authorized', watermark: true }] });
      }
      expect(d.progressTerms.length, s).toBeGreaterThan(0);
      for (const t of d.progressTerms) expect(termNames, s).toContain(t);
      const r = resolveScenario(s);
      // A U dataset of its own is what the prompt is scored against (with the other domains when not recorded).
      if (r.streams.source === 'own') expect(needsOtherDomains(r.evaluation), s).toBe(true);
      // Evaluation sets are named uniquely and never reuse the authorized set's name.
      const sets = evaluationSets(r.evaluation, 'photo', ['sketch', 'clipart']);
      const names = [sets.authorized.name, ...sets.unauthorized.map((u) => u.name)];
      expect(new Set(names).size, s).toBe(names.length);
    }
  });

  it('holds method §5: each scenario\'s streams and test sets (hand-written from the spec\'s table)', () => {
    const clean = { augment: 'train' }, marked = { watermark: true, augment: 'train' };
    const streams: Record<Scenario, [unknown, unknown, string]> = {
      'target-specified': [clean, clean, 'own'],
      ownership: [clean, marked, 'authorized'],
      'target-free': [clean, { augment: 'strong' }, 'authorized'],
      authorization: [marked, 'authorization-mixture', 'authorized'],
      reference: [clean, clean, 'authorized'], // the default reference: target-specified's A stream, U the same
    };
    const sets: Record<Scenario, [string, string[]]> = {
      'target-specified': ['photo', ['sketch', 'clipart']],
      ownership: ['photo', [`photo${W}`]],
      'target-free': ['photo', ['sketch', 'clipart']],
      authorization: [`photo${W}`, ['photo', 'sketch', `sketch${W}`, 'clipart', `clipart${W}`]],
      reference: ['photo', ['sketch', 'clipart']],
    };
    for (const s of SCENARIOS) {
      const r = resolveScenario(s);
      expect([r.streams.authorized, r.streams.unauthorized, r.streams.source], s).toEqual(streams[s]);
      const got = evaluationSets(r.evaluation, 'photo', ['sketch', 'clipart']);
      expect([got.authorized.name, got.unauthorized.map((u) => u.name)], s).toEqual(sets[s]);
      // The watermark flag and the domain travel with the name.
      for (const set of [got.authorized, ...got.unauthorized]) {
        expect(set.name, s).toBe(set.watermark ? set.domain + W : set.domain);
      }
    }
    // A reference of authorization trains on watermarked images and is scored on authorization's sets.
    const ref = resolveScenario('reference', 'authorization');
    expect([ref.streams.authorized, ref.streams.unauthorized, ref.referenceFor]).toEqual([marked, marked, 'authorization']);
    expect(evaluationSets(ref.evaluation, 'photo', ['sketch']).authorized.name).toBe(`photo${W}`);
    expect(() => resolveScenario('ownership', 'authorization')).toThrow(/reference scenario only/);
    expect(() => resolveScenario('reference', 'reference' as 'ownership')).toThrow(/referenceFor must be one of/);
    expect(() => resolveScenario('nope' as Scenario)).toThrow(/scenario must be one of target-specified, ownership/);
  });

  it('holds method §4: the loss weights per scenario and preset (the test helper\'s copy of the spec table)', () => {
    for (const s of SCENARIOS) {
      for (const preset of ['paper', 'official'] as const) {
        const loss = stepLoss(s, preset);
        if (!loss.unauthorized) continue; // the reference: CE_A alone (checked above: every other weight 0)
        const { ceA, ...rest } = lossWeights(s, preset);
        expect(ceA).toBe(1);
        expect(loss.lossWeights, `${s} ${preset}`).toEqual(rest);
      }
    }
    expect(stepLoss('reference', 'paper').unauthorized).toBe(false);
  });

  it('plans and describes any set rules, e.g. a deployment-time authorization scored only on its key', () => {
    // A fifth scenario's sets are data of the same shape: nothing else has to know them.
    const keyOnly: EvaluationSpec = { authorized: { watermark: true }, unauthorized: [{ domain: 'authorized', watermark: false }] };
    expect(needsOtherDomains(keyOnly)).toBe(false);
    expect(evaluationSets(keyOnly, 'art', ['clipart'])).toEqual({
      authorized: { name: `art${W}`, domain: 'art', watermark: true },
      unauthorized: [{ name: 'art', domain: 'art', watermark: false }],
    });
    expect(describeEvaluation(keyOnly)).toBe('the authorized test split watermarked, against it clean');
    expect(describeEvaluation(SCENARIO_DESCRIPTORS.authorization.evaluation!))
      .toBe('the authorized test split watermarked, against it clean and every other domain clean and watermarked');
  });
});

describe('nothing outside the table branches on a scenario name', () => {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const files = (dir: string, ends: string[]): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name), ends) : ends.some((x) => e.name.endsWith(x)) ? [join(dir, e.name)] : []);
  const names = SCENARIOS.map((n) => n.replace(/[-]/g, '\\-')).join('|');
  const offenders = (paths: string[], pattern: RegExp) => paths.flatMap((f) => readFileSync(f, 'utf8').split('\n')
    .map((line, i) => ({ line, where: `${relative(root, f)}:${i + 1}` })).filter((l) => pattern.test(l.line)).map((l) => `${l.where}: ${l.line.trim()}`));

  it('no comparison with, case on or list of scenario names in lib/ but lib/ipclip/scenario.ts', () => {
    const q = `'(${names})'`;
    const pattern = new RegExp(`[!=]==\\s*${q}|${q}\\s*[!=]==|case\\s+${q}|${q}\\s*[,|]\\s*${q}`);
    const lib = files(join(root, 'lib'), ['.ts']).filter((f) => relative(root, f) !== join('lib', 'ipclip', 'scenario.ts'));
    expect(lib.length).toBeGreaterThan(40);
    expect(offenders(lib, pattern)).toEqual([]);
  });

  it('native code knows no scenario: the step gets the table\'s weights as data', () => {
    const native = files(join(root, 'native'), ['.cpp', '.h']);
    expect(native.length).toBeGreaterThan(20);
    expect(offenders(native, new RegExp(`"(${names})"|\\bScenario::`))).toEqual([]);
  });
});

describe('the CLI reads the table', () => {
  const io = { stdout: { write: () => true }, stderr: { write: () => true } } as unknown as Io;
  const train = (...args: string[]) => trainCommand.run(parseCommand(trainCommand, ['--data', '/nonexistent', '--authorized', 'photo', ...args]), io);

  it('lists every scenario with its summary, and every protection scenario\'s sets in eval --help', () => {
    expect(trainCommand.flags.scenario!.help).toContain(SCENARIOS.join(' | '));
    for (const s of SCENARIOS) expect(trainCommand.details).toContain(`${s.padEnd(17)} ${SCENARIO_DESCRIPTORS[s].summary}`);
    for (const s of PROTECTION_SCENARIOS) expect(evalCommand.details).toContain(describeEvaluation(SCENARIO_DESCRIPTORS[s].evaluation!));
  });

  it('asks for --unauthorized exactly where the scenario has a U domain of its own', async () => {
    for (const s of SCENARIOS) {
      if (resolveScenario(s).streams.source === 'own') {
        await expect(train('--scenario', s), s).rejects.toThrow(new RegExp(`--unauthorized is required for the ${s} scenario`));
        await expect(train('--scenario', s, '--unauthorized', 'sketch', '--pairing', 'paired'), s).rejects.toThrow(/--pairing paired/);
      } else {
        await expect(train('--scenario', s, '--unauthorized', 'sketch'), s).rejects.toThrow(new RegExp(`only used by [^;]+; ${s} draws its unauthorized`));
      }
      if (!SCENARIO_DESCRIPTORS[s].referenceOf) {
        await expect(train('--scenario', s, '--reference-for', 'ownership'), s).rejects.toThrow(UsageError);
      }
    }
    await expect(train('--scenario', 'nope')).rejects.toThrow(new RegExp(`--scenario must be one of ${SCENARIOS.join(', ')}`));
  });
});

type Rgb = { r: number; g: number; b: number };

/** `n` small in-memory solid images of the given colours (cycled), labels alternating. */
async function dataset(n: number, domain: string, classes: string[], colours: Rgb[]): Promise<DomainDataset> {
  const samples: Sample[] = [];
  for (let i = 0; i < n; i++) {
    const buffer = await sharp({ create: { width: 34, height: 34, channels: 3, background: colours[i % colours.length]! } }).png().toBuffer();
    samples.push({ buffer, label: i % classes.length });
  }
  return DomainDataset.fromSamples(samples, classes, { domain });
}

/** Whether image `k` of a batch is mostly green (U's own images; A's are red and blue, which no transform turns green). */
function green(images: { data: Float32Array; shape: readonly number[] }, k: number): boolean {
  const [, , h, w] = images.shape as [number, number, number, number];
  const plane = h * w;
  const mean = (c: number) => images.data.subarray((k * 3 + c) * plane, (k * 3 + c + 1) * plane).reduce((x, y) => x + y, 0) / plane;
  return mean(1) > mean(0) && mean(1) > mean(2);
}

describe.skipIf(!HAVE_SHARED)('the trainer reads the table', () => {
  const CLASSES = ['red', 'blue'];
  let clip: Clip;
  let a: DomainDataset;
  let u: DomainDataset;

  beforeAll(async () => {
    clip = await Clip.load(CLIP_TINY.openaiSafetensors, { vocab: VOCAB_PATH, device: TEST_DEVICE });
    [a, u] = await Promise.all([
      dataset(4, 'a', CLASSES, [{ r: 200, g: 30, b: 30 }, { r: 30, g: 30, b: 200 }]),
      dataset(6, 'u', CLASSES, [{ r: 30, g: 200, b: 30 }]),
    ]);
  });
  afterAll(() => clip?.dispose());

  /** Records the bank pass and the batches fit() feeds, instead of running the model. */
  class Recording extends IPTrainer {
    banks = 0;
    /** Per U image fed: whether it came from U's own dataset (green). */
    readonly fromU: boolean[] = [];
    override async step(_a: TrainBatch, b: TrainBatch, opts: { lr?: number } = {}): Promise<StepTerms> {
      for (let k = 0; k < b.labels.length; k++) this.fromU.push(green(b.images, k));
      this.iteration++;
      return { loss: 0, ceA: 0, ceU: 0, ceSelf: 0, ceCross: 0, mse: 0, kl: 0, entropy: 0, lr: opts.lr ?? 0, skipped: false };
    }
    override async buildBanks(): Promise<void> { this.banks++; }
  }

  it('gives the native step each descriptor\'s loss as data (weights of the preset, whether U is read)', async () => {
    for (const s of SCENARIOS) {
      for (const preset of ['paper', 'official'] as const) {
        using prompt = await PromptModel.create(clip, CLASSES, { seed: 1 });
        const native = prompt.native;
        const seen: Record<string, unknown>[] = [];
        const step = native.step.bind(native);
        // The bound method is read-only on the prototype: shadow it with an own property that records the options.
        Object.defineProperty(native, 'step', { value: (...args: Parameters<typeof step>) => { seen.push({ ...args[6] }); return step(...args); } });
        const trainer = new IPTrainer(prompt, { scenario: s, preset });
        const images = { data: new Float32Array(2 * 3 * 32 * 32), shape: [2, 3, 32, 32] };
        const batch = { images, labels: Int32Array.from([0, 1]) };
        await trainer.step(batch, batch, { update: false });
        const loss = SCENARIO_DESCRIPTORS[s].loss;
        expect(seen, `${s} ${preset}`).toHaveLength(1);
        expect(seen[0], `${s} ${preset}`).toMatchObject({ preset, unauthorized: loss.unauthorized, lossWeights: { ...loss.weights[preset] } });
      }
    }
  });

  it('builds banks, needs a U dataset and draws U from it exactly as each descriptor says', async () => {
    for (const s of SCENARIOS) {
      const d = SCENARIO_DESCRIPTORS[s];
      const own = resolveScenario(s).streams.source === 'own';
      using prompt = await PromptModel.create(clip, CLASSES, { seed: 1 });
      const trainer = new Recording(prompt, { scenario: s, epochs: 1, batchSize: 2, workers: 0 });
      expect(trainer.scenario.descriptor, s).toBe(d);
      if (own) await expect(trainer.fit({ authorized: a }), s).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
      else await expect(trainer.fit({ authorized: a, unauthorized: u }), s).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
      await trainer.fit(own ? { authorized: a, unauthorized: u } : { authorized: a });
      expect(trainer.banks, s).toBe(d.buildsBanks ? 1 : 0);
      expect(trainer.fromU, s).toEqual([own, own, own, own]);
    }
  });
});
