import { rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { afterAll } from 'vitest';
import { tempDir, type TestArchive } from './walship.js';

/**
 * Temporary directories a test file removes itself, in afterAll. The
 * process 'exit' hook in walship.ts does not run when the vitest worker is
 * terminated, and the fault tests write hundreds of MiB of WAL: they must
 * not count on it.
 */
export function scratch(): { dir(prefix: string, mode?: number): Promise<string>; track(path: string): void; archive<T extends TestArchive>(a: T): T } {
  const paths: string[] = [];
  afterAll(async () => {
    if (process.env.WALSHIP_TEST_KEEP_TMP === '1') return;
    for (const p of paths.reverse()) await rm(p, { recursive: true, force: true }).catch(() => undefined);
  });
  return {
    async dir(prefix, mode) {
      const d = await tempDir(prefix, mode);
      paths.push(d);
      return d;
    },
    track(path) {
      paths.push(path);
    },
    /** The archive's own directories: a file store's base, the spool, a key file's directory. */
    archive(a) {
      const dir = (a as { dir?: string }).dir;
      if (dir) paths.push(dirname(dir));
      if (a.env.WALSHIP_SPOOL_DIR) paths.push(a.env.WALSHIP_SPOOL_DIR);
      if (a.env.WALSHIP_KEY_FILE) paths.push(dirname(a.env.WALSHIP_KEY_FILE));
      return a;
    },
  };
}
