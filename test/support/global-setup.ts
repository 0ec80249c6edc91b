import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
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
  // Every temporary file of this run goes under one directory, removed at
  // the end: vitest's forked workers never run process 'exit' handlers, so
  // per-file clean-up hooks cannot be relied on. Workers inherit TMPDIR.
  const runDir = mkdtempSync(join(tmpdir(), 'walship-run-'));
  chmodSync(runDir, 0o755);
  process.env.TMPDIR = runDir;
  execFileSync(process.execPath, [join(repoRoot, 'scripts', 'build.mjs')], { stdio: 'inherit' });
  const install = await installForPostgres(repoRoot);
  project.provide('walshipBin', install.bin);
  return async () => {
    stopLeftoverServers(runDir);
    await removeInstall(install.dir);
    if (process.env.WALSHIP_TEST_KEEP_TMP !== '1') rmSync(runDir, { recursive: true, force: true });
  };
}

/** A test that crashed before its teardown may have left PostgreSQL running. */
function stopLeftoverServers(dir: string, depth = 0): void {
  if (depth > 3) return;
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return;
  }
  if (entries.includes('postmaster.pid')) {
    spawnSync('runuser', ['-u', 'postgres', '--', '/usr/lib/postgresql/15/bin/pg_ctl', '-D', dir, '-m', 'immediate', 'stop'], { stdio: 'ignore' });
    return;
  }
  for (const e of entries) {
    const p = join(dir, e);
    if (existsSync(join(p, '.')) && !e.startsWith('.')) stopLeftoverServers(p, depth + 1);
  }
}
