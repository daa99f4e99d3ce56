import { defineConfig } from 'vitest/config';
import SummaryLineReporter from './test/summary-reporter.js';

// Native code runs in forked processes: a crash in the addon must fail one file, not the runner.
export default defineConfig({
  test: {
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    maxWorkers: 2,
    reporters: ['default', new SummaryLineReporter()],
  },
});
