import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { installForPostgres, removeInstall } from './postgres-install.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Absolute path of bin/walship in a copy the postgres OS user can execute. */
    walshipBin: string;
  }
}

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * Builds the bundle once per run and installs it where the postgres OS user
 * can run it (the checkout may sit under a 0700 home directory): the
 * integration tests run the same bundle PostgreSQL would run in production.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  execFileSync(process.execPath, [join(repoRoot, 'scripts', 'build.mjs')], { stdio: 'inherit' });
  const install = await installForPostgres(repoRoot);
  project.provide('walshipBin', install.bin);
  return async () => {
    await removeInstall(install.dir);
  };
}
