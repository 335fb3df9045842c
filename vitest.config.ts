import { defineConfig } from 'vitest/config';

// One worker, files in sequence: kernel and namespace tests share one machine (2 cores), and
// timing-sensitive network tests must not starve each other. Unit tests are fast either way.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
    globalSetup: ['test/support/global-setup.ts'],
  },
});
