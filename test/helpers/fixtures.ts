// Shared test helpers: where ../shared lives, golden tensors, comparisons, and the device tests run on.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { readSafetensors, type SafetensorsContent } from '../../lib/io/safetensors.js';

/** `../shared` beside the repository (read-only material; never copied into the repo). */
export const SHARED_DIR = fileURLToPath(new URL('../../../shared/', import.meta.url));

/** Whether ../shared exists; tests that need it use `describe.skipIf(!HAVE_SHARED)`. */
export const HAVE_SHARED = existsSync(SHARED_DIR);

/** Absolute path of a file under ../shared. */
export function shared(...parts: string[]): string {
  return fileURLToPath(new URL(parts.join('/'), new URL('../../../shared/', import.meta.url)));
}

export const CLIP_TINY = {
  openaiSafetensors: shared('fixtures', 'clip-tiny', 'openai.safetensors'),
  hfDir: shared('fixtures', 'clip-tiny', 'hf'),
  torchscript: shared('fixtures', 'clip-tiny', 'openai.pt'),
  config: shared('fixtures', 'clip-tiny', 'clip-config.json'),
  golden: shared('fixtures', 'clip-tiny', 'golden.safetensors'),
};

export const VOCAB_PATH = shared('vocab', 'bpe_simple_vocab_16e6.txt.gz');

/** The four fixture images of text-image (paths). */
export const FIXTURE_IMAGES = ['small-50x40.png', 'square-224.png', 'tall-120x333.png', 'wide-300x200.png']
  .map((f) => shared('fixtures', 'text-image', f));

/** The device tests run on: `IPCLIP_DEVICE` (scripts/gpu-check.sh sets `cuda`), default `cpu`. */
export const TEST_DEVICE = process.env.IPCLIP_DEVICE || 'cpu';

let golden: Promise<SafetensorsContent> | undefined;
/** clip-tiny's golden.safetensors (read once per test file). */
export function readGolden(): Promise<SafetensorsContent> {
  golden ??= readSafetensors(CLIP_TINY.golden);
  return golden;
}

/** Largest |a_i − b_i|; throws when the lengths differ (a shape bug must not look like agreement). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = d; // NaN propagates as NaN
  }
  return m;
}

/** The Float32Array of a golden tensor (throws if it is missing or not floating point). */
export function floatData(content: SafetensorsContent, name: string): Float32Array {
  const t = content.tensors[name];
  if (!t || !(t.data instanceof Float32Array)) throw new Error(`fixture tensor ${name} missing or not float`);
  return t.data;
}
