/**
 * Commands people run by hand print their errors for a person when stderr is
 * a terminal (`ERROR: [CODE]: message`, then `HINT: ...`), and JSON records
 * under --json. Run through a pseudo terminal with script(1).
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { tempDir, walshipBin } from '../support/walship.js';

/** Runs walship on a pseudo terminal, with no WALSHIP_* setting (so no store). */
async function onTerminal(args: string): Promise<string> {
  const spool = await tempDir('walship-tty-');
  const cmd = `env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=${spool} WALSHIP_SPOOL_DIR=${spool} ${walshipBin()} ${args}`;
  const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', timeout: 120_000 });
  if (r.error) throw r.error;
  return r.stdout.replace(/\r\n/g, '\n');
}

describe('errors on a terminal', () => {
  it.each(['status', 'list', 'verify', 'prune --dry-run --before 000000010000000000000002', 'key status', 'cat 000000010000000000000001 >/dev/null'])(
    'walship %s: one ERROR line with the code, and a HINT line',
    async (args) => {
      const out = await onTerminal(args);
      const lines = out.split('\n').filter((l) => l !== '');
      expect(lines[0]).toMatch(/^ERROR: \[CONFIG\]: WALSHIP_STORE is not set/);
      expect(lines[1]).toMatch(/^HINT: set it in the environment/);
      expect(out).not.toContain('{"level"');
    },
  );

  it('--json keeps JSON records on a terminal', async () => {
    const out = await onTerminal('status --json');
    const record = out.split('\n').find((l) => l.startsWith('{'));
    expect(record).toBeDefined();
    expect(JSON.parse(record!)).toMatchObject({ level: 'error', cmd: 'status', code: 'CONFIG' });
  });
});
