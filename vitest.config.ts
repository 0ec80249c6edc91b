import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    // Integration tests start PostgreSQL clusters, base backups and s3rver.
    testTimeout: 180_000,
    hookTimeout: 180_000,
    // Child processes and process 'exit' hooks (cluster cleanup) behave
    // predictably in forked workers, unlike worker threads. Two cores: two
    // files at a time keeps PostgreSQL start-up timing sane.
    pool: 'forks',
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    maxWorkers: 2,
  },
});
