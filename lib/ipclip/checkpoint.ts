/**
 * IP-CLIP checkpoints: one safetensors file holding the prompt, the enhancement module and the banks under
 * the release's names (method §8), optionally Adam's moments (`optim.exp_avg.<name>`, `optim.exp_avg_sq.<name>`),
 * and JSON metadata under the `ipclip` key (class names, the CLIP it was trained on, the training position).
 *
 * The authors' release state converted to safetensors (same names, no metadata) reads as well: its unused
 * `style_mapping_tokens.*`, BatchNorm running statistics and `attn_block.logit_scale` are dropped.
 *
 * Metadata is data only: it is parsed, every field is type-checked, and nothing in it is ever used as a path
 * or evaluated.
 */
import { SPLIT_PRESETS, SPLIT_RULE, type BadImage, type DomainDataset, type SplitInfo } from '../data/dataset.js';
import { IpclipError, check } from '../core/errors.js';
import type { ClipActivation, ClipConfig } from '../native/types.js';
import { readSafetensors, writeSafetensors, type SafetensorsTensor } from '../io/safetensors.js';
import type { FloatTensor, Tensor } from '../core/tensor.js';
import { resolveDisguise, type DisguiseOptions, type ResolvedDisguise } from './trainer/disguise.js';

/** Version of the `ipclip` metadata written by this module. */
export const CHECKPOINT_FORMAT = 1;

/** Metadata key of the JSON document. */
export const METADATA_KEY = 'ipclip';

/** Prefix of Adam's moments in the file. */
export const OPTIMIZER_PREFIX = 'optim.';

/** Names of the release's state that are accepted and ignored on import. */
export function isIgnoredReleaseName(name: string): boolean {
  return name.startsWith('style_mapping_tokens.') || name === 'attn_block.logit_scale'
    || /\.(running_mean|running_var|num_batches_tracked)$/.test(name);
}

/**
 * Mean terms of one epoch, for the training report.
 * @category Checkpoints
 */
export interface EpochRecord {
  epoch: number;
  iterations: number;
  /** Updates skipped because the loss or a gradient was not finite. */
  skipped: number;
  /** Mean of each term over the epoch's non-skipped iterations (NaN when all were skipped). */
  terms: Record<string, number>;
  /** Learning rate of the epoch's last iteration. */
  lr: number;
  /** The scores on the validation data at the epoch's end, when the run had validation data. */
  validation?: EpochValidation;
}

/**
 * Accuracies (fractions) on a run's validation data at an epoch's end, and the score epochs are chosen by.
 * @category Training
 */
export interface EpochValidation {
  authorized: number;
  /** Null when the run had no unauthorized validation data. */
  unauthorized: number | null;
  /**
   * Higher is better: authorized − max(0, unauthorized − chance) for a protection scenario, else the authorized
   * accuracy.
   */
  score: number;
}

/**
 * Running sums of the epoch in progress, so a resumed run reports the same history.
 * @category Checkpoints
 */
export interface EpochAccumulator {
  sums: Record<string, number>;
  count: number;
  skipped: number;
}

/**
 * Where a training run stands (present in checkpoints written by the trainer).
 * @category Checkpoints
 */
export interface TrainingMeta {
  scenario: string;
  preset: string;
  epochs: number;
  batchSize: number;
  lr: number;
  weightDecay: number;
  trainEnhancer: boolean;
  /** Whether the run trains from cached vision features (frozen augmentation; see IPTrainer's `featureCache`). */
  featureCache: boolean;
  /** How U's samples line up with A's (lib/ipclip/trainer/streams.ts); absent in checkpoints written before it was recorded. */
  pairing?: string;
  /** Scenario `reference` only: the protection scenario whose authorized stream the reference trains on. */
  referenceFor?: string;
  /** The disguised-unauthorized defence's settings (lib/ipclip/trainer/disguise.ts); absent when off. */
  disguisedUnauthorized?: ResolvedDisguise;
  /** CE_U bounded per sample (`clampPerSample`, beyond the paper); absent when off. */
  clampPerSample?: boolean;
  /** Iterations done (the next step is this one, 0-based). */
  iteration: number;
  /** Epoch of the next iteration. */
  epoch: number;
  /** Seed of the data streams (the prompt's own seed is the document's `seed`). */
  seed: number;
  totalIterations: number;
  /** Adam's step count. */
  optimizerStep: number;
  /** Learning rate of the last step taken. */
  lastLr: number;
  skippedUpdates: number;
  /** The CLIP's compute dtype (`float32`, `bfloat16`, `float16`); absent in older files. Resuming needs the same. */
  dtype?: string;
  /** The float16 dynamic loss scale at the checkpoint (absent in older files). */
  lossScale?: { scale: number; goodSteps: number };
  /** The data streams' loader seeds (derived from the run seed; recorded to detect a changed setup). */
  streamSeeds: { authorized: number; unauthorized: number };
  history: EpochRecord[];
  accumulator: EpochAccumulator;
}

/**
 * What data a training run used (written by the trainer next to {@link TrainingMeta}): enough to cut the same
 * test splits again and to tell whether an image was a training image.
 * @category Checkpoints
 */
export interface RunRecord {
  scenario: string;
  /** The dataset root as given and resolved; null when the datasets were not read from folders. */
  data: { root: string; resolved: string } | null;
  /** The authorized domain (the dataset's `domain`). */
  authorized: string;
  /** The unauthorized domain where the scenario has its own (target-specified), else null. */
  unauthorized: string | null;
  /** How the authorized training split was cut (rule, seed, sizes or fraction, header check, counts, key range). */
  split: SplitInfo | null;
  /** The same for the unauthorized domain (null where there is none). */
  unauthorizedSplit: SplitInfo | null;
  /** Images left out by the header check (`onBadImage: 'skip'`), of both domains. */
  skippedImages: BadImage[];
}

/**
 * The `ipclip` metadata document.
 * @category Checkpoints
 */
export interface CheckpointMeta {
  format: number;
  classNames: string[];
  clip: { config: ClipConfig; fingerprint: string };
  seed: number;
  nCtx: number;
  training?: TrainingMeta;
  run?: RunRecord;
}

/** The run record of training on `authorized` (and target-specified's own `unauthorized`). */
export function runRecordOf(scenario: string, authorized: DomainDataset, unauthorized?: DomainDataset): RunRecord {
  const fromFolder = authorized.root !== '' && authorized.splitInfo !== null;
  const skipped = [...authorized.skipped, ...(unauthorized?.skipped ?? [])];
  return {
    scenario,
    data: fromFolder ? { root: authorized.rootGiven, resolved: authorized.root } : null,
    authorized: authorized.domain,
    unauthorized: unauthorized ? unauthorized.domain : null,
    split: authorized.splitInfo,
    unauthorizedSplit: unauthorized?.splitInfo ?? null,
    skippedImages: skipped.filter((b, i) => skipped.findIndex((x) => x.path === b.path) === i),
  };
}

/**
 * The first setting in which two run records differ, as `[what, was, now]` (data root, domains, split rule,
 * seed, sizes, fraction, header check), or null when they describe the same run.
 */
export function runDifference(was: RunRecord, now: RunRecord): [string, unknown, unknown] | null {
  const splitOf = (r: SplitInfo | null) => r && {
    rule: `${r.rule}/${r.version}`, seed: r.seed, sizes: r.sizes && `${r.sizes.train}/${r.sizes.test}`,
    trainFraction: r.trainFraction, onBadImage: r.onBadImage,
    heldOut: r.heldOut ? `${r.heldOut.part} of a ${r.heldOut.fraction} hold-out, seed ${r.heldOut.seed}` : 'none',
  };
  const pairs: [string, unknown, unknown][] = [
    ['the data root', was.data?.resolved ?? null, now.data?.resolved ?? null],
    ['the authorized domain', was.authorized, now.authorized],
    ['the unauthorized domain', was.unauthorized, now.unauthorized],
  ];
  for (const [which, a, b] of [['', was.split, now.split], ['unauthorized ', was.unauthorizedSplit, now.unauthorizedSplit]] as const) {
    const x = splitOf(a), y = splitOf(b);
    if ((x === null) !== (y === null)) pairs.push([`the ${which}split`, x, y]);
    else if (x && y) {
      for (const k of ['rule', 'seed', 'sizes', 'trainFraction', 'onBadImage', 'heldOut'] as const) pairs.push([`the ${which}split ${k}`, x[k], y[k]]);
    }
  }
  for (const [what, a, b] of pairs) if (a !== b) return [what, a, b];
  return null;
}

/**
 * What {@link readCheckpoint} returns.
 * @category Checkpoints
 */
export interface CheckpointContent {
  /** Prompt, enhancement module and banks (float32), release names. */
  state: Record<string, Tensor>;
  /** Adam's moments keyed `exp_avg.<name>` / `exp_avg_sq.<name>`, when the file has them. */
  optimizer?: Record<string, Tensor>;
  /** Absent for the release's state (no `ipclip` metadata). */
  meta?: CheckpointMeta;
  /** Names found in the file and dropped (release-only parameters). */
  ignored: string[];
}

/**
 * Writes a checkpoint atomically (temporary file, fsync, rename: a crash leaves the old file or the new one,
 * never half of one). `optimizer` names (`exp_avg.<name>`) get the `optim.` prefix.
 * @throws IpclipError `ERR_IO` when the write fails, `ERR_INVALID_ARGUMENT` for bad tensors.
 */
export async function writeCheckpoint(
  file: string,
  content: { state: Record<string, FloatTensor>; optimizer?: Record<string, FloatTensor>; meta: CheckpointMeta },
): Promise<void> {
  const tensors: Record<string, FloatTensor> = {};
  for (const [name, t] of Object.entries(content.state)) {
    check(!name.startsWith(OPTIMIZER_PREFIX), `state name ${name} clashes with the optimiser prefix`);
    tensors[name] = t;
  }
  for (const [name, t] of Object.entries(content.optimizer ?? {})) tensors[OPTIMIZER_PREFIX + name] = t;
  await writeSafetensors(file, tensors, { [METADATA_KEY]: JSON.stringify(content.meta) });
}

/**
 * Reads a checkpoint written by the trainer (`writeCheckpoint`), or the release's state (no metadata).
 * @throws IpclipError `ERR_FILE_NOT_FOUND`, `ERR_BAD_FILE` (unreadable file or malformed metadata),
 * `ERR_BAD_WEIGHTS` (a parameter that is not floating point).
 * @category Checkpoints
 */
export async function readCheckpoint(file: string): Promise<CheckpointContent> {
  const raw = await readSafetensors(file);
  refuseClipWeights(file, Object.keys(raw.tensors));
  const state: Record<string, Tensor> = {};
  const optimizer: Record<string, Tensor> = {};
  const ignored: string[] = [];
  for (const [name, t] of Object.entries(raw.tensors)) {
    if (isIgnoredReleaseName(name)) { ignored.push(name); continue; }
    const f = toFloat32(name, t, file);
    if (name.startsWith(OPTIMIZER_PREFIX)) optimizer[name.slice(OPTIMIZER_PREFIX.length)] = f;
    else state[name] = f;
  }
  const text = raw.metadata[METADATA_KEY];
  const meta = text === undefined ? undefined : parseMeta(text, file);
  return { state, ...(Object.keys(optimizer).length > 0 ? { optimizer } : {}), ...(meta ? { meta } : {}), ignored };
}

/** Tensor names only CLIP weights have (OpenAI's and Hugging Face's layouts). */
const CLIP_NAME = /^(visual\.|transformer\.resblocks\.|vision_model\.|text_model\.|token_embedding\.|positional_embedding$|text_projection$|logit_scale$)/;

/** `ERR_BAD_FILE` "a CLIP model, not a prompt checkpoint" for a weights file given where a prompt belongs. */
function refuseClipWeights(file: string, names: string[]): void {
  if (names.some((n) => n.startsWith('domain_tokens.') || n.startsWith('image_tokens.'))) return;
  if (names.filter((n) => CLIP_NAME.test(n)).length >= Math.max(1, names.length / 2)) {
    throw new IpclipError('ERR_BAD_FILE', `${file} is a CLIP model, not a prompt checkpoint: give it as the CLIP ` +
      '(--clip, Clip.load or { clip }) and pass the trained prompt (prompt.safetensors, last.safetensors or its run folder) as the checkpoint');
  }
}

function toFloat32(name: string, t: SafetensorsTensor, file: string): Tensor {
  if (t.data instanceof Float32Array) return { data: t.data, shape: t.shape };
  if (t.data instanceof Float64Array) return { data: Float32Array.from(t.data), shape: t.shape };
  throw new IpclipError('ERR_BAD_WEIGHTS', `${file}: tensor ${name} has dtype ${t.dtype}, expected a floating-point type`);
}

/**
 * Parses and validates the `ipclip` metadata document.
 * @throws IpclipError `ERR_BAD_FILE` naming the first bad field.
 */
export function parseMeta(text: string, file = 'checkpoint'): CheckpointMeta {
  const bad = (why: string) => new IpclipError('ERR_BAD_FILE', `${file}: ipclip metadata ${why}`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw bad('is not valid JSON');
  }
  const obj = (v: unknown, what: string): Record<string, unknown> => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad(`${what} is not an object`);
    return v as Record<string, unknown>;
  };
  const int = (v: unknown, what: string, min = 0): number => {
    if (!Number.isSafeInteger(v) || (v as number) < min) throw bad(`${what} is not an integer ≥ ${min}`);
    return v as number;
  };
  const num = (v: unknown, what: string): number => {
    if (typeof v !== 'number') throw bad(`${what} is not a number`);
    return v;
  };
  const str = (v: unknown, what: string): string => {
    if (typeof v !== 'string') throw bad(`${what} is not a string`);
    return v;
  };
  const m = obj(doc, 'document');
  const format = int(m.format, 'format', 1);
  if (format > CHECKPOINT_FORMAT) throw bad(`has format ${format}; this version reads up to ${CHECKPOINT_FORMAT}`);
  if (!Array.isArray(m.classNames) || m.classNames.length === 0) throw bad('classNames is not a non-empty array');
  const classNames = m.classNames.map((c, i) => str(c, `classNames[${i}]`));
  const clip = obj(m.clip, 'clip');
  const cfg = obj(clip.config, 'clip.config');
  const vision = obj(cfg.vision, 'clip.config.vision');
  const textCfg = obj(cfg.text, 'clip.config.text');
  // Absent in files written before activations were recorded: those CLIPs all ran QuickGELU.
  const activation = (v: unknown, what: string): ClipActivation => {
    if (v === undefined) return 'quick_gelu';
    if (v !== 'quick_gelu' && v !== 'gelu') throw bad(`${what} is not 'quick_gelu' or 'gelu'`);
    return v;
  };
  const config: ClipConfig = {
    embedDim: int(cfg.embedDim, 'clip.config.embedDim', 1),
    vision: {
      width: int(vision.width, 'vision.width', 1), layers: int(vision.layers, 'vision.layers', 1),
      heads: int(vision.heads, 'vision.heads', 1), patchSize: int(vision.patchSize, 'vision.patchSize', 1),
      imageSize: int(vision.imageSize, 'vision.imageSize', 1), activation: activation(vision.activation, 'vision.activation'),
    },
    text: {
      width: int(textCfg.width, 'text.width', 1), layers: int(textCfg.layers, 'text.layers', 1),
      heads: int(textCfg.heads, 'text.heads', 1), contextLength: int(textCfg.contextLength, 'text.contextLength', 1),
      vocabSize: int(textCfg.vocabSize, 'text.vocabSize', 1), activation: activation(textCfg.activation, 'text.activation'),
    },
  };
  const meta: CheckpointMeta = {
    format,
    classNames,
    clip: { config, fingerprint: str(clip.fingerprint, 'clip.fingerprint') },
    seed: int(m.seed, 'seed'),
    nCtx: int(m.nCtx, 'nCtx', 1),
  };
  if (m.training !== undefined) {
    const t = obj(m.training, 'training');
    const seeds = obj(t.streamSeeds, 'training.streamSeeds');
    const acc = obj(t.accumulator, 'training.accumulator');
    if (!Array.isArray(t.history)) throw bad('training.history is not an array');
    const terms = (v: unknown, what: string): Record<string, number> => {
      const o = obj(v, what);
      return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, x === null ? NaN : num(x, `${what}.${k}`)]));
    };
    meta.training = {
      scenario: str(t.scenario, 'training.scenario'),
      preset: str(t.preset, 'training.preset'),
      epochs: int(t.epochs, 'training.epochs', 1),
      batchSize: int(t.batchSize, 'training.batchSize', 1),
      lr: num(t.lr, 'training.lr'),
      weightDecay: num(t.weightDecay, 'training.weightDecay'),
      trainEnhancer: t.trainEnhancer === true,
      featureCache: t.featureCache === true,
      ...(t.pairing !== undefined ? { pairing: str(t.pairing, 'training.pairing') } : {}),
      ...(t.referenceFor !== undefined ? { referenceFor: str(t.referenceFor, 'training.referenceFor') } : {}),
      ...(t.disguisedUnauthorized !== undefined ? { disguisedUnauthorized: (() => {
        try {
          return resolveDisguise(obj(t.disguisedUnauthorized, 'training.disguisedUnauthorized') as DisguiseOptions)!;
        } catch (err) {
          throw bad(`training.disguisedUnauthorized: ${(err as Error).message}`);
        }
      })() } : {}),
      ...(t.clampPerSample === true ? { clampPerSample: true } : {}),
      iteration: int(t.iteration, 'training.iteration'),
      epoch: int(t.epoch, 'training.epoch'),
      seed: int(t.seed, 'training.seed'),
      totalIterations: int(t.totalIterations, 'training.totalIterations'),
      optimizerStep: int(t.optimizerStep, 'training.optimizerStep'),
      lastLr: num(t.lastLr, 'training.lastLr'),
      skippedUpdates: int(t.skippedUpdates, 'training.skippedUpdates'),
      ...(t.dtype === undefined ? {} : { dtype: str(t.dtype, 'training.dtype') }),
      ...(t.lossScale === undefined ? {} : (() => {
        const ls = obj(t.lossScale, 'training.lossScale');
        const scale = num(ls.scale, 'training.lossScale.scale');
        if (!Number.isFinite(scale) || scale < 1) throw bad('training.lossScale.scale is not a finite number ≥ 1');
        return { lossScale: { scale, goodSteps: int(ls.goodSteps, 'training.lossScale.goodSteps') } };
      })()),
      streamSeeds: { authorized: int(seeds.authorized, 'streamSeeds.authorized'), unauthorized: int(seeds.unauthorized, 'streamSeeds.unauthorized') },
      history: t.history.map((h, i) => {
        const r = obj(h, `training.history[${i}]`);
        return {
          epoch: int(r.epoch, `history[${i}].epoch`), iterations: int(r.iterations, `history[${i}].iterations`),
          skipped: int(r.skipped, `history[${i}].skipped`), terms: terms(r.terms, `history[${i}].terms`),
          lr: num(r.lr, `history[${i}].lr`),
          ...(r.validation === undefined ? {} : (() => {
            const v = obj(r.validation, `history[${i}].validation`);
            return { validation: {
              authorized: num(v.authorized, `history[${i}].validation.authorized`),
              unauthorized: v.unauthorized === null ? null : num(v.unauthorized, `history[${i}].validation.unauthorized`),
              score: num(v.score, `history[${i}].validation.score`),
            } };
          })()),
        };
      }),
      accumulator: { sums: terms(acc.sums, 'accumulator.sums'), count: int(acc.count, 'accumulator.count'), skipped: int(acc.skipped, 'accumulator.skipped') },
    };
  }
  if (m.run !== undefined) meta.run = parseRun(obj(m.run, 'run'), bad);
  return meta;
}

function parseRun(r: Record<string, unknown>, bad: (why: string) => IpclipError): RunRecord {
  const str = (v: unknown, what: string): string => {
    if (typeof v !== 'string') throw bad(`${what} is not a string`);
    return v;
  };
  const strOrNull = (v: unknown, what: string): string | null => (v === null ? null : str(v, what));
  const int = (v: unknown, what: string): number => {
    if (!Number.isSafeInteger(v) || (v as number) < 0) throw bad(`${what} is not an integer ≥ 0`);
    return v as number;
  };
  const obj = (v: unknown, what: string): Record<string, unknown> => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad(`${what} is not an object`);
    return v as Record<string, unknown>;
  };
  const split = (v: unknown, what: string): SplitInfo | null => {
    if (v === null) return null;
    const o = obj(v, what);
    if (o.rule !== SPLIT_RULE.name) throw bad(`${what}.rule is not '${SPLIT_RULE.name}'`);
    const sizes = o.sizes === null ? null : obj(o.sizes, `${what}.sizes`);
    const fraction = o.trainFraction;
    if (fraction !== null && (typeof fraction !== 'number' || !(fraction >= 0 && fraction <= 1))) throw bad(`${what}.trainFraction is not a fraction`);
    const preset = o.preset;
    if (preset !== null && !(typeof preset === 'string' && preset in SPLIT_PRESETS)) throw bad(`${what}.preset is not a split preset`);
    const onBad = o.onBadImage;
    if (onBad !== null && onBad !== 'error' && onBad !== 'skip') throw bad(`${what}.onBadImage is not 'error', 'skip' or null`);
    const key = (k: unknown, w: string) => {
      const x = strOrNull(k, w);
      if (x !== null && !/^[0-9a-f]{16}$/.test(x)) throw bad(`${w} is not a split key`);
      return x;
    };
    return {
      rule: SPLIT_RULE.name, version: int(o.version, `${what}.version`), seed: int(o.seed, `${what}.seed`),
      sizes: sizes && { train: int(sizes.train, `${what}.sizes.train`), test: int(sizes.test, `${what}.sizes.test`) },
      preset: preset as SplitInfo['preset'], trainFraction: fraction as number | null, onBadImage: onBad as SplitInfo['onBadImage'],
      listed: int(o.listed, `${what}.listed`), nTrain: int(o.nTrain, `${what}.nTrain`), nTest: int(o.nTest, `${what}.nTest`),
      trainFrom: key(o.trainFrom, `${what}.trainFrom`), testUpTo: key(o.testUpTo, `${what}.testUpTo`),
      ...(o.heldOut === undefined ? {} : (() => {
        const h = obj(o.heldOut, `${what}.heldOut`);
        if (typeof h.fraction !== 'number' || !(h.fraction > 0 && h.fraction < 1)) throw bad(`${what}.heldOut.fraction is not a fraction`);
        if (h.part !== 'rest' && h.part !== 'validation') throw bad(`${what}.heldOut.part is not 'rest' or 'validation'`);
        return { heldOut: { fraction: h.fraction, seed: int(h.seed, `${what}.heldOut.seed`), part: h.part } };
      })()),
    };
  };
  const data = r.data === null ? null : obj(r.data, 'run.data');
  if (!Array.isArray(r.skippedImages)) throw bad('run.skippedImages is not an array');
  return {
    scenario: str(r.scenario, 'run.scenario'),
    data: data && { root: str(data.root, 'run.data.root'), resolved: str(data.resolved, 'run.data.resolved') },
    authorized: str(r.authorized, 'run.authorized'),
    unauthorized: strOrNull(r.unauthorized, 'run.unauthorized'),
    split: split(r.split, 'run.split'),
    unauthorizedSplit: split(r.unauthorizedSplit, 'run.unauthorizedSplit'),
    skippedImages: r.skippedImages.map((b, i) => {
      const o = obj(b, `run.skippedImages[${i}]`);
      return { path: str(o.path, `run.skippedImages[${i}].path`), reason: str(o.reason, `run.skippedImages[${i}].reason`) };
    }),
  };
}

/** True when two CLIP architectures are the same. */
export function sameConfig(a: ClipConfig, b: ClipConfig): boolean {
  return a.embedDim === b.embedDim
    && (['width', 'layers', 'heads', 'patchSize', 'imageSize'] as const).every((k) => a.vision[k] === b.vision[k])
    && (['width', 'layers', 'heads', 'contextLength', 'vocabSize'] as const).every((k) => a.text[k] === b.text[k])
    && (a.vision.activation ?? 'quick_gelu') === (b.vision.activation ?? 'quick_gelu')
    && (a.text.activation ?? 'quick_gelu') === (b.text.activation ?? 'quick_gelu');
}
