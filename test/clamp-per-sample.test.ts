// TrainerOptions.clampPerSample (beyond the paper, docs/method.md §9): a `paper` preset option, validated like the
// others, recorded in the resolved settings (so a checkpoint of another setting is not resumed as this run).
import { describe, expect, it } from 'vitest';
import { IpclipError } from '../lib/core/errors.js';
import { resolveTrainerOptions } from '../lib/ipclip/trainer/options.js';

const codeOf = (f: () => unknown): string | null => {
  try { f(); return null; } catch (e) { expect(e).toBeInstanceOf(IpclipError); return (e as IpclipError).code; }
};

describe('clampPerSample', () => {
  it('is off by default and on when asked, under the paper preset', () => {
    expect(resolveTrainerOptions({ scenario: 'target-specified' }, 0).options.clampPerSample).toBe(false);
    expect(resolveTrainerOptions({ scenario: 'target-specified', clampPerSample: true }, 0).options.clampPerSample).toBe(true);
    expect(resolveTrainerOptions({ scenario: 'target-free', clampPerSample: false }, 0).options.clampPerSample).toBe(false);
  });
  it("is refused with the 'official' preset (the release's numerics) and when not a boolean", () => {
    expect(codeOf(() => resolveTrainerOptions({ scenario: 'target-specified', preset: 'official', clampPerSample: true }, 0))).toBe('ERR_INVALID_ARGUMENT');
    expect(codeOf(() => resolveTrainerOptions({ scenario: 'target-specified', clampPerSample: 'yes' as unknown as boolean }, 0))).toBe('ERR_INVALID_ARGUMENT');
  });
});
