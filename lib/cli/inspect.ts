/**
 * `ipclip predict` (classify images with a protected prompt), `ipclip classify` (zero-shot CLIP) and `ipclip info`
 * (what a checkpoint holds).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { readCheckpoint } from '../ipclip/checkpoint.js';
import type { Prediction, RankedLabel } from '../clip/prediction.js';
import { listImageFiles } from '../data/files.js';
import { PromptModel } from '../ipclip/prompt-model.js';
import { UsageError, bool, int, list, required, str, type Command, type Io, type Parsed } from './args.js';
import {
  CLIP_FLAGS, JSON_FLAG, loadClipFromFlags, pct, printJson, progressOf, refuseNonPrompt, resolveCheckpoint, table, withInterrupt,
} from './common.js';

/** One row of `predict` / `classify` output. */
interface PredictionRow {
  image: string;
  label: string;
  index: number;
  score: number;
  top: RankedLabel[];
}

function rowOf(image: string, p: Prediction): PredictionRow {
  return { image, label: p.label, index: p.index, score: p.score, top: p.top };
}

/** Prints prediction rows: JSON, or a table with the runners-up when `--top` > 1. */
function printPredictions(io: Io, rows: PredictionRow[], top: number, json: boolean): void {
  if (json) {
    printJson(io, rows);
    return;
  }
  io.stdout.write(`${table(['image', 'prediction', 'score', ...(top > 1 ? ['next'] : [])], rows.map((r) => [
    r.image, r.label, pct(r.score),
    ...(top > 1 ? [r.top.slice(1).map((t) => `${t.label} ${pct(t.score)}`).join(', ')] : []),
  ]))}\n`);
}

const IMAGES_DETAILS = `Each IMAGE is a file (PNG, JPEG, WebP, ...), a folder (its image files, recursively) or a glob pattern
in quotes ('data/sketch/**/*.png'); files are listed in sorted order and go through CLIP's test transform, a
batch at a time (--batch-size).`;

const BATCH_FLAG = {
  'batch-size': { type: 'string', value: 'n', help: 'images per forward pass (default 32)' },
} as const;

/** `ipclip predict`. */
export const predictCommand: Command = {
  name: 'predict',
  summary: 'Classify images (files, folders, globs) with a trained (protected) prompt.',
  usage: 'predict <image|dir|glob...> --checkpoint FILE [--top K] [flags]',
  positionals: true,
  flags: {
    checkpoint: { type: 'string', value: 'file', help: 'the trained prompt (a checkpoint, or a run folder)' },
    top: { type: 'string', value: 'k', help: 'also list the k most likely classes (default 1)' },
    ...BATCH_FLAG,
    ...CLIP_FLAGS,
    ...JSON_FLAG,
  },
  details: IMAGES_DETAILS,
  async run(p: Parsed, io: Io): Promise<number> {
    const file = resolveCheckpoint(required(p, 'checkpoint', 'the trained prompt'));
    if (p.positionals.length === 0) throw new UsageError('no images given: ipclip predict <image|dir|glob...> --checkpoint FILE');
    const top = int(p, 'top', 1, 1);
    const batchSize = int(p, 'batch-size', 32, 1);
    const json = bool(p, 'json');
    const images = await listImageFiles(p.positionals);
    await refuseNonPrompt(file);
    const clip = await loadClipFromFlags(p);
    try {
      using prompt = await PromptModel.load(clip, file);
      const progress = progressOf(io, 'predict', json);
      const preds = await withInterrupt(io, (signal) => prompt.classify(images, { batchSize, topK: top, onProgress: progress.onProgress, signal }))
        .finally(progress.done);
      printPredictions(io, preds.map((pr, i) => rowOf(images[i]!, pr)), top, json);
      return 0;
    } finally {
      clip.dispose();
    }
  },
};

/** `ipclip classify`: zero-shot CLIP. */
export const classifyCommand: Command = {
  name: 'classify',
  summary: 'Zero-shot CLIP: rank the labels you give for each image (no prompt, no training).',
  usage: 'classify <image|dir|glob...> --labels a,b,... [--template T] [--top K] [flags]',
  positionals: true,
  flags: {
    labels: { type: 'string', value: 'list', help: 'the labels, comma-separated (or a file: one per line)', multiple: true },
    template: { type: 'string', value: 'text', help: "text around each label, {} marks it (default 'a photo of a {}.')" },
    top: { type: 'string', value: 'k', help: 'also list the k most likely labels (default 1)' },
    ...BATCH_FLAG,
    ...CLIP_FLAGS,
    ...JSON_FLAG,
  },
  details: IMAGES_DETAILS,
  async run(p: Parsed, io: Io): Promise<number> {
    if (p.positionals.length === 0) throw new UsageError('no images given: ipclip classify <image|dir|glob...> --labels a,b');
    let labels = list(p, 'labels');
    if (labels === undefined) throw new UsageError('--labels is required (comma-separated, e.g. --labels cat,dog)');
    if (labels.length === 1 && existsSync(labels[0]!) && statSync(labels[0]!).isFile()) {
      labels = readFileSync(labels[0]!, 'utf8').split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length > 0);
    }
    if (new Set(labels).size !== labels.length) throw new UsageError('--labels must be distinct');
    const template = str(p, 'template') ?? 'a photo of a {}.';
    if (!template.includes('{}')) throw new UsageError(`--template must contain {} where the label goes; got '${template}'`);
    const top = Math.min(int(p, 'top', 1, 1), labels.length);
    const batchSize = int(p, 'batch-size', 32, 1);
    const json = bool(p, 'json');
    const images = await listImageFiles(p.positionals);
    const clip = await loadClipFromFlags(p);
    try {
      const progress = progressOf(io, 'classify', json);
      const preds = await withInterrupt(io, (signal) => clip.classify(images, labels, {
        template, topK: top, batchSize, onProgress: progress.onProgress, signal,
      })).finally(progress.done);
      printPredictions(io, preds.map((pr, i) => rowOf(images[i]!, pr)), top, json);
      return 0;
    } finally {
      clip.dispose();
    }
  },
};

/** `ipclip info`. */
export const infoCommand: Command = {
  name: 'info',
  summary: 'Show what a checkpoint holds: scenario, preset, classes, CLIP fingerprint, training position.',
  usage: 'info <checkpoint> [--json]',
  positionals: true,
  flags: { ...JSON_FLAG },
  async run(p: Parsed, io: Io): Promise<number> {
    if (p.positionals.length !== 1) throw new UsageError('give exactly one checkpoint: ipclip info <checkpoint>');
    const file = resolveCheckpoint(p.positionals[0]!);
    const content = await readCheckpoint(file);
    const meta = content.meta;
    const t = meta?.training;
    const params = Object.values(content.state).reduce((s, x) => s + x.data.length, 0);
    const info = {
      file,
      format: meta ? `ipclip checkpoint v${meta.format}` : "the authors' release state (no ipclip metadata)",
      classNames: meta?.classNames ?? null,
      clip: meta ? { fingerprint: meta.clip.fingerprint, config: meta.clip.config } : null,
      seed: meta?.seed ?? null,
      nCtx: meta?.nCtx ?? null,
      tensors: Object.keys(content.state).length,
      values: params,
      optimizerState: content.optimizer !== undefined,
      training: t ? {
        scenario: t.scenario, preset: t.preset, epoch: t.epoch, epochs: t.epochs,
        // 1-based like the progress line's "epoch N/E": the epoch a resumed run continues in (null when complete).
        epochsDone: Math.min(t.epoch, t.epochs), resumesInEpoch: t.iteration >= t.totalIterations ? null : t.epoch + 1, iteration: t.iteration,
        totalIterations: t.totalIterations, complete: t.iteration >= t.totalIterations, batchSize: t.batchSize, lr: t.lr,
        seed: t.seed, skippedUpdates: t.skippedUpdates,
        lastEpoch: t.history.length > 0 ? t.history[t.history.length - 1] : null,
      } : null,
      run: meta?.run ?? null,
      ignored: content.ignored,
    };
    if (bool(p, 'json')) {
      printJson(io, info);
      return 0;
    }
    const c = meta?.clip.config;
    const lines = [
      `file        ${file}`,
      `format      ${info.format}`,
      `classes     ${meta ? `${meta.classNames.length}: ${meta.classNames.join(', ')}` : 'not recorded (pass them when loading)'}`,
      `clip        ${meta ? `fingerprint ${meta.clip.fingerprint}` : 'not recorded'}` +
        (c ? `; vision ${c.vision.layers}×${c.vision.width} @${c.vision.imageSize}px/${c.vision.patchSize}, text ${c.text.layers}×${c.text.width}, embed ${c.embedDim}` : ''),
      `prompt      ${info.tensors} tensors, ${info.values} values${meta ? `, n_ctx ${meta.nCtx}, seed ${meta.seed}` : ''}`,
    ];
    if (t) {
      const last = info.training!.lastEpoch;
      lines.push(
        `scenario    ${t.scenario} (preset ${t.preset})`,
        `training    ${info.training!.epochsDone}/${t.epochs} epochs done` +
          `${info.training!.complete ? ' (complete)' : `, resumes in epoch ${info.training!.resumesInEpoch}/${t.epochs}`}` +
          `, iteration ${t.iteration}/${t.totalIterations}, ` +
          `batch ${t.batchSize}, lr ${t.lr}, seed ${t.seed}${t.skippedUpdates ? `, ${t.skippedUpdates} skipped updates` : ''}`,
      );
      if (last) {
        lines.push(`last epoch  epoch ${last.epoch + 1}/${t.epochs}: loss ${last.terms.loss?.toFixed(4)}, ceA ${last.terms.ceA?.toFixed(4)}, ` +
          `lr ${last.lr.toExponential(2)} (a negative loss is expected: see the README, "Reading the loss")`);
      }
    } else {
      lines.push('training    no training state (a saved prompt)');
    }
    const run = meta?.run;
    if (run) {
      const sp = run.split;
      const how = sp ? `${sp.rule}/${sp.version}, seed ${sp.seed}, ${sp.preset ?? (sp.sizes ? `sizes ${sp.sizes.train}/${sp.sizes.test}` : `train fraction ${sp.trainFraction}`)}` +
        `: ${sp.nTrain} train / ${sp.nTest} test of ${sp.listed}` : 'not from folders';
      lines.push(
        `data        ${run.data ? `${run.data.root}${run.data.root !== run.data.resolved ? ` (${run.data.resolved})` : ''}` : 'in-memory datasets'}` +
          `, authorized ${run.authorized}${run.unauthorized ? `, unauthorized ${run.unauthorized}` : ''}`,
        `split       ${how}${sp?.onBadImage ? `; header check '${sp.onBadImage}'` : ''}` +
          `${run.skippedImages.length ? `, ${run.skippedImages.length} unreadable images skipped` : ''}`,
      );
    }
    io.stdout.write(`${lines.join('\n')}\n`);
    return 0;
  },
};
