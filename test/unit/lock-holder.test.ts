import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LockHolder } from '../../src/spool/lock-holder.js';
import { prefetchParallelism } from '../../src/agent/recovery.js';
import { bundleChildScript } from '../support/child-script.js';

/** What flock(1) itself says: 75 while someone holds the lock, 0 when it is free. */
const probe = (lock: string) => spawnSync('flock', ['-n', '-E', '75', lock, 'true']).status;

describe('LockHolder: a flock held for a running process, released when it is gone', () => {
  const dir = mkdtempSync(join(tmpdir(), 'walship-lockholder-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('holds the lock until released; a second taker is told busy', async () => {
    const lock = join(dir, 'a.lock');
    const h = await LockHolder.take(lock);
    expect(h).not.toBe('busy');
    expect(probe(lock)).toBe(75);
    expect(await LockHolder.take(lock)).toBe('busy');
    await (h as LockHolder).release();
    expect(probe(lock)).toBe(0);
    const again = await LockHolder.take(lock);
    expect(again).not.toBe('busy');
    await (again as LockHolder).release();
  });

  it('kill -9 of the process that took it releases the lock (its holder reads EOF and exits)', async () => {
    const lock = join(dir, 'b.lock');
    const script = await bundleChildScript('lock-holder-child.ts', join(dir, 'child.mjs'));
    const child = spawn(process.execPath, [script, lock], { stdio: ['ignore', 'pipe', 'inherit'] });
    const said = await new Promise<string>((resolve) => child.stdout.once('data', (b: Buffer) => resolve(b.toString().trim())));
    expect(said).toBe('held');
    expect(probe(lock)).toBe(75);
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    // The release follows the kill by as long as the holder takes to read EOF: wait for it, without a clock.
    let free = false;
    for (let i = 0; i < 200 && !free; i++) {
      free = probe(lock) === 0;
      if (!free) await new Promise((r) => setTimeout(r, 50));
    }
    expect(free).toBe(true);
  });

  it('downloads at once: a few per core, never more than the pool depth, at least one', () => {
    expect(prefetchParallelism(8, 2)).toBe(4);
    expect(prefetchParallelism(8, 1)).toBe(2);
    expect(prefetchParallelism(3, 16)).toBe(3);
    expect(prefetchParallelism(1, 1)).toBe(1);
    expect(prefetchParallelism(64, 64)).toBe(64);
  });
});
