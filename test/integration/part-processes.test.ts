import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fileArchive, tempDir, walshipBin } from '../support/walship.js';

/**
 * The hidden part commands as backup and restore run them
 * (src/child/): the job is the first line on stdin, which the parent keeps
 * open; the answer is JSON lines on stdout. The installed build, as root.
 */
async function partProcess(command: string, env: Record<string, string>, job: string, endStdin: 'after-job' | 'never' | 'later'): Promise<{ code: number | null; lines: unknown[] }> {
  const child = spawn(walshipBin(), [command], { env: { PATH: process.env.PATH!, HOME: env.WALSHIP_SPOOL_DIR!, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stdin.write(`${job}\n`);
  if (endStdin === 'after-job') child.stdin.end();
  const done = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
  if (endStdin === 'later') {
    // The job is read and running (it blocks on a FIFO); then the parent "dies".
    while (!out.includes('"bytes"') && child.exitCode === null) await new Promise((r) => setTimeout(r, 100));
    child.stdin.end();
  }
  const code = await done;
  return { code, lines: out.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as unknown) };
}

const upload = (over: Record<string, unknown>) =>
  JSON.stringify({ backupId: '20261202T000000Z-00000000', n: 2, entries: [], systemIdentifier: '1', compression: 'lz4', encrypted: false, createdBy: 'walship/0.1.0', ...over });

describe('part processes (walship backup-part, restore-part)', () => {
  it('refuse a job from another walship version, or one whose encryption differs from their configuration', async () => {
    const archive = await fileArchive({ WALSHIP_ENCRYPTION: 'none' });
    const other = await partProcess('backup-part', archive.env, upload({ createdBy: 'walship/0.0.1' }), 'never');
    expect(other.code).toBe(1);
    expect(other.lines).toEqual([{ error: expect.objectContaining({ code: 'CONFIG', message: expect.stringMatching(/walship\/0\.0\.1.*upgraded during the backup/) }) }]);
    const version = (other.lines[0] as { error: { message: string } }).error.message.match(/this part process (walship\/\S+)/)![1]!;
    const encOnly = await partProcess('backup-part', archive.env, upload({ encrypted: true, createdBy: version }), 'never');
    expect(encOnly.code).toBe(1);
    expect(encOnly.lines).toEqual([{ error: expect.objectContaining({ code: 'CONFIG', message: expect.stringMatching(/encrypts.*WALSHIP_ENCRYPTION changed/) }) }]);
  });

  it('a job that is not JSON is refused with an error line, not a crash', async () => {
    const archive = await fileArchive({ WALSHIP_ENCRYPTION: 'none' });
    const r = await partProcess('restore-part', archive.env, 'not json', 'never');
    expect(r.code).toBe(1);
    expect(r.lines).toEqual([{ error: expect.objectContaining({ code: 'INTERNAL' }) }]);
  });

  it('stops when its parent is gone (stdin ends while the job runs), without reporting ok', async () => {
    const archive = await fileArchive({ WALSHIP_ENCRYPTION: 'none' });
    const dir = await tempDir('walship-parent-gone-');
    // 2 GiB of sparse zeros: seconds of work, while the parent "dies" right
    // after the first progress line (8 MiB). (A FIFO that blocks the read
    // would not do: a thread stuck in open() keeps any Node process from exiting.)
    const big = join(dir, 'big');
    expect(spawnSync('truncate', ['-s', '2G', big]).status).toBe(0);
    const refused = await partProcess('backup-part', archive.env, upload({ createdBy: 'x' }), 'never');
    const version = /this part process (walship\/\S+)/.exec((refused.lines[0] as { error: { message: string } }).error.message)![1]!;
    const r = await partProcess(
      'backup-part',
      archive.env,
      upload({ createdBy: version, entries: [{ path: 'big', abs: big, type: 'file', mode: 0o600, size: 2 * 1024 ** 3, mtime: 0 }] }),
      'later',
    );
    expect(r.code).toBe(70);
    expect(r.lines.some((l) => typeof l === 'object' && l !== null && 'ok' in l)).toBe(false);
  }, 600_000);
});
