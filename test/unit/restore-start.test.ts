import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startAndWait } from '../../src/restore/index.js';

// A cluster laid out the Debian way (postgresql.conf in /etc/postgresql/…)
// restores into a data directory without postgresql.conf; pg_ctl would then
// fail with a bare "cannot access the server configuration file".
describe('restore --start on a directory without postgresql.conf', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('is not started, and says where the configuration is and how to start it', async () => {
    dir = await mkdtemp(join(tmpdir(), 'walship-start-'));
    await mkdir(join(dir, 'global'));
    await writeFile(join(dir, 'PG_VERSION'), '15\n');
    await writeFile(join(dir, 'postgresql.auto.conf'), "restore_command = 'walship fetch %f %p'\n");
    const seen: string[] = [];
    const outcome = await startAndWait(dir, 15, false, (l) => seen.push(l));
    expect(outcome.state).toBe('not-started');
    expect(outcome.lines.join('\n')).toMatch(/no postgresql\.conf/);
    expect(outcome.lines.join('\n')).toMatch(/pg_ctlcluster/);
    // Nothing was run: no server log was created in the directory.
    expect(existsSync(join(dir, 'walship-restore-start.log'))).toBe(false);
    expect(existsSync(join(dir, 'postmaster.pid'))).toBe(false);
  });
});
