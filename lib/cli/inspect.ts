/**
 * `ipclip predict` (classify images with a protected prompt) and `ipclip info` (what a checkpoint holds).
 */
import { existsSync, statSync } from 'node:fs';
import { readCheckpoint } from '../ipclip/checkpoint.js';
import { IpclipError } from '../core/errors.js';
import { PromptModel } from '../ipclip/prompt-model.js';
import { UsageError, bool, int, required, type Command, type Io, type Parsed } from './args.js';
import { CLIP_FLAGS, JSON_FLAG, loadClipFromFlags, pct, printJson, resolveCheckpoint, table } from './common.js';

/** `ipclip predict`. */
export const predictCommand: Command = {
  name: 'predict',
  summary: 'Classify images with a trained (protected) prompt.',
  usage: 'predict <image...> --checkpoint FILE [--top K] [flags]',
  positionals: true,
  flags: {
    checkpoint: { type: 'string', value: 'file', help: 'the trained prompt (a checkpoint, or a run folder)' },
    top: { type: 'string', value: 'k', help: 'also list the k most likely classes (default 1)' },
    ...CLIP_FLAGS,
    ...JSON_FLAG,
  },
  details: 'Images are read from files (PNG, JPEG, WebP, ...) and go through CLIP\'s test transform.',
  async run(p: Parsed, io: Io): Promise<number> {
    const file = resolveCheckpoint(required(p, 'checkpoint', 'the trained prompt'));
    if (p.positionals.length === 0) throw new UsageError('no images given: ipclip predict <image...> --checkpoint FILE');
    const top = int(p, 'top', 1, 1);
    for (const img of p.positionals) {
      if (!existsSync(img)) throw new IpclipError('ERR_FILE_NOT_FOUND', `image not found: ${img}`);
      if (!statSync(img).isFile()) throw new IpclipError('ERR_INVALID_ARGUMENT', `not a file: ${img}`);
    }
    const clip = await loadClipFromFlags(p);
    try {
      using prompt = await PromptModel.load(clip, file);
      const preds = await prompt.classify(p.positionals);
      const results = preds.map((pr, i) => {
        const ranked = pr.scores.map((score, c) => ({ label: prompt.classNames[c]!, score })).sort((x, y) => y.score - x.score);
        return { image: p.positionals[i]!, label: pr.label, index: pr.index, score: pr.scores[pr.index]!, top: ranked.slice(0, top) };
      });
      if (bool(p, 'json')) {
        printJson(io, results);
        return 0;
      }
      io.stdout.write(`${table(['image', 'prediction', 'score', ...(top > 1 ? ['next'] : [])], results.map((r) => [
        r.image, r.label, pct(r.score),
        ...(top > 1 ? [r.top.slice(1).map((t) => `${t.label} ${pct(t.score)}`).join(', ')] : []),
      ]))}\n`);
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
        scenario: t.scenario, preset: t.preset, epoch: t.epoch, epochs: t.epochs, iteration: t.iteration,
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
        `training    epoch ${t.epoch}/${t.epochs}, iteration ${t.iteration}/${t.totalIterations}${info.training!.complete ? ' (complete)' : ' (resumable)'}, ` +
          `batch ${t.batchSize}, lr ${t.lr}, seed ${t.seed}${t.skippedUpdates ? `, ${t.skippedUpdates} skipped updates` : ''}`,
      );
      if (last) lines.push(`last epoch  loss ${last.terms.loss?.toFixed(4)}, ceA ${last.terms.ceA?.toFixed(4)}, lr ${last.lr.toExponential(2)}`);
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
