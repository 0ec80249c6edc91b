import { execFile, spawn } from 'node:child_process';
import { cp, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { bundleChildScript } from '../support/child-script.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StoreUnavailableError } from '../../src/errors.js';
import { compactState, readState, recordFetch, recordPrefetch, recordPush, recordPushFailure, stateDir } from '../../src/spool/state.js';

const run = promisify(execFile);
const dirs: string[] = [];
async function spool(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'walship-state-'));
  dirs.push(d);
  return d;
}
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function warnings(): { log: Parameters<typeof recordPush>[2]; messages: string[] } {
  const messages: string[] = [];
  return { log: { warn: (m: string) => messages.push(m) } as unknown as Parameters<typeof recordPush>[2], messages };
}

const seg = (n: number) => `0000000100000000${n.toString(16).toUpperCase().padStart(8, '0')}`;

describe('spool state: what push and fetch record for metrics and status', () => {
  it('adds up pushes, failures by code, bytes, durations, fetches and prefetch hits; "last" is the newest', async () => {
    const dir = await spool();
    await recordPush(dir, { file: seg(1), outcome: 'archived', rawBytes: 16, storedBytes: 4, ms: 30 });
    await recordPush(dir, { file: seg(2), outcome: 'already-archived', rawBytes: 16, storedBytes: 5, ms: 700 });
    await recordPushFailure(dir, { file: seg(3), error: new StoreUnavailableError('disk gone', { file: seg(3), hint: 'mount it' }), ms: 12 });
    // Records are ordered by their millisecond timestamp: keep "newest" unambiguous.
    await new Promise((r) => setTimeout(r, 5));
    await recordPushFailure(dir, { file: seg(3), error: new Error('boom'), ms: 1 });
    await recordFetch(dir, { file: seg(1), outcome: 'ok', rawBytes: 16, storedBytes: 4, ms: 3 });
    await recordFetch(dir, { file: seg(9), outcome: 'not-found', ms: 2 });
    await recordPrefetch(dir, true);
    await recordPrefetch(dir, false);
    await recordPrefetch(dir, true);

    const { state, exists, pending } = await readState(dir);
    expect(exists).toBe(true);
    expect(pending).toBe(9);
    expect(state.push.calls).toEqual({ archived: 1, 'already-archived': 1, 'archived-ahead': 0, failed: 2 });
    expect(state.push.failuresByCode).toEqual({ STORE_UNAVAILABLE: 1, INTERNAL: 1 });
    expect(state.push.rawBytes).toBe(32);
    expect(state.push.storedBytes).toBe(9);
    expect(state.push.duration.count).toBe(4);
    expect(state.push.duration.sum).toBeCloseTo(0.743, 6);
    // 0.001 and 0.012 s fall in the first two buckets, 0.03 s in le=0.05, 0.7 s in le=1.
    expect(state.push.duration.counts.slice(0, 7)).toEqual([1, 1, 1, 0, 0, 0, 1]);
    expect(state.push.last).toMatchObject({ file: seg(2), outcome: 'already-archived' });
    expect(state.push.lastFailure?.error).toEqual({ code: 'INTERNAL', message: 'boom' });
    expect(state.fetch.calls).toEqual({ ok: 1, 'not-found': 1, failed: 0 });
    expect(state.fetch.last?.file).toBe(seg(1));
    expect(state.prefetch).toEqual({ hits: 2, misses: 1 });

    // Folding changes nothing that is reported.
    expect(await compactState(dir)).toBe('compacted');
    const after = await readState(dir);
    expect(after.pending).toBe(0);
    expect(after.state).toEqual(state);
    expect(await readdir(join(stateDir(dir), 'events'))).toEqual([]);
  });

  it('an empty spool reads as nothing recorded', async () => {
    const s = await readState(join(await spool(), 'never-used'));
    expect(s.exists).toBe(false);
    expect(s.state.push.calls.archived).toBe(0);
  });

  it('recording never throws: an unusable spool directory is a warning', async () => {
    const dir = await spool();
    const notADir = join(dir, 'file');
    await writeFile(notADir, 'x');
    const { log, messages } = warnings();
    await expect(recordPush(notADir, { file: seg(1), outcome: 'archived', rawBytes: 1, storedBytes: 1, ms: 1 }, log)).resolves.toBeUndefined();
    await expect(recordPushFailure(notADir, { file: seg(1), error: new Error('x'), ms: 1 }, log)).resolves.toBeUndefined();
    expect(messages).toHaveLength(2);
    expect(messages[0]).toMatch(/could not record/);
  });

  it('events folded before a crash (totals written, files not yet deleted) are never counted twice', async () => {
    const dir = await spool();
    for (let i = 0; i < 5; i++) await recordPush(dir, { file: seg(i), outcome: 'archived', rawBytes: 10, storedBytes: 1, ms: 1 });
    const events = join(stateDir(dir), 'events');
    const saved = join(dir, 'saved');
    await cp(events, saved, { recursive: true });
    await compactState(dir);
    // Put the folded files back, as if the folder died before deleting them, plus one new event.
    await cp(saved, events, { recursive: true });
    await recordPush(dir, { file: seg(9), outcome: 'archived', rawBytes: 10, storedBytes: 1, ms: 1 });
    expect((await readState(dir)).state.push.rawBytes).toBe(60);
    await compactState(dir);
    expect((await readState(dir)).state.push.rawBytes).toBe(60);
    expect(await readdir(events)).toEqual([]);
  });

  it('an unparsable record is dropped and counted as discarded, not summed', async () => {
    const dir = await spool();
    await recordPush(dir, { file: seg(1), outcome: 'archived', rawBytes: 10, storedBytes: 1, ms: 1 });
    await writeFile(join(stateDir(dir), 'events', `${String(Date.now()).padStart(13, '0')}-1-deadbeef.json`), '{"kind":"push","t":1,"rawBytes":"lots"');
    const s = await readState(dir);
    expect(s.state.push.rawBytes).toBe(10);
    expect(s.discarded).toBe(1);
    await compactState(dir);
    expect((await readState(dir)).discarded).toBe(1);
  });

  it('a corrupt totals file is set aside and counting continues', async () => {
    const dir = await spool();
    await recordPush(dir, { file: seg(1), outcome: 'archived', rawBytes: 10, storedBytes: 1, ms: 1 });
    await compactState(dir);
    await writeFile(join(stateDir(dir), 'totals.json'), '');
    expect((await readState(dir)).totalsCorrupt).toBe(true);
    await recordPush(dir, { file: seg(2), outcome: 'archived', rawBytes: 5, storedBytes: 1, ms: 1 });
    expect(await compactState(dir)).toBe('compacted');
    const s = await readState(dir);
    expect(s.totalsCorrupt).toBe(false);
    expect(s.state.push.rawBytes).toBe(5);
    expect((await readdir(stateDir(dir))).some((n) => n.startsWith('totals.json.corrupt-'))).toBe(true);
  });

  describe('the compaction lock', () => {
    const lockPath = (dir: string) => join(stateDir(dir), 'compact.lock');

    async function deadPid(): Promise<number> {
      const child = spawn(process.execPath, ['-e', '0']);
      await new Promise((r) => child.once('exit', r));
      return child.pid!;
    }

    it('a live holder makes compaction report busy and leaves its lock alone', async () => {
      const dir = await spool();
      await recordPush(dir, { file: seg(1), outcome: 'archived', rawBytes: 1, storedBytes: 1, ms: 1 });
      const held = JSON.stringify({ pid: process.pid, host: hostname(), token: 'held', t: Date.now() });
      await writeFile(lockPath(dir), held);
      expect(await compactState(dir)).toBe('busy');
      expect(await readFile(lockPath(dir), 'utf8')).toBe(held);
      expect((await readState(dir)).pending).toBe(1);
    });

    it('a lock whose process is gone is broken and compaction proceeds', async () => {
      const dir = await spool();
      await recordPush(dir, { file: seg(1), outcome: 'archived', rawBytes: 1, storedBytes: 1, ms: 1 });
      await writeFile(lockPath(dir), JSON.stringify({ pid: await deadPid(), host: hostname(), token: 'dead', t: Date.now() }));
      expect(await compactState(dir)).toBe('compacted');
      expect((await readState(dir)).pending).toBe(0);
      expect((await readdir(stateDir(dir))).filter((n) => n.includes('lock'))).toEqual([]);
    });

    it('an old lock (holder on another host, or hung) is broken after the stale period', async () => {
      const dir = await spool();
      await recordPush(dir, { file: seg(1), outcome: 'archived', rawBytes: 1, storedBytes: 1, ms: 1 });
      await writeFile(lockPath(dir), JSON.stringify({ pid: 1, host: 'elsewhere', token: 'old', t: 0 }));
      expect(await compactState(dir)).toBe('busy');
      const old = new Date(Date.now() - 120_000);
      await utimes(lockPath(dir), old, old);
      expect(await compactState(dir)).toBe('compacted');
    });
  });

  describe('many processes at once', () => {
    let script: string;

    beforeAll(async () => {
      script = join(await spool(), 'state-child.mjs');
      await bundleChildScript('state-child.ts', script);
    });

    it('writers, folders and readers in separate processes: counters add up exactly and never go backwards', async () => {
      const dir = await spool();
      const stop = join(dir, 'stop');
      const writers = 6;
      const count = 150; // 6 x (150 + 75 + 50) = 1650 events: writers fold too (every 256 pending)
      const background = [
        run(process.execPath, [script, 'compact', dir, stop]),
        run(process.execPath, [script, 'compact', dir, stop]),
        run(process.execPath, [script, 'read', dir, stop]),
      ];
      const written = await Promise.all(Array.from({ length: writers }, (_, w) => run(process.execPath, [script, 'write', dir, String(w + 1), String(count)])));
      for (const w of written) expect(w.stderr).toBe('');
      await writeFile(stop, '');
      const [c1, c2, reader] = await Promise.all(background);
      const folds = [c1!, c2!].map((c) => JSON.parse(c.stdout) as { compacted: number; busy: number });
      expect(folds.reduce((n, f) => n + f.compacted, 0)).toBeGreaterThan(0);
      expect((JSON.parse(reader!.stdout) as { reads: number }).reads).toBeGreaterThan(0);

      await compactState(dir);
      const { state, pending, discarded } = await readState(dir);
      const failures = writers * Math.floor(count / 5);
      const pushes = writers * count - failures;
      expect(pending).toBe(0);
      expect(discarded).toBe(0);
      expect(state.push.calls.archived).toBe(pushes);
      expect(state.push.calls.failed).toBe(failures);
      expect(state.push.failuresByCode).toEqual({ STORE_UNAVAILABLE: failures });
      expect(state.push.rawBytes).toBe(pushes);
      expect(state.push.storedBytes).toBe(3 * pushes);
      expect(state.push.duration.count).toBe(writers * count);
      expect(state.fetch.calls.ok).toBe(writers * Math.ceil(count / 2));
      expect(state.fetch.rawBytes).toBe(7 * writers * Math.ceil(count / 2));
      expect(state.prefetch.hits).toBe(writers * Math.ceil(count / 3));
      expect(await readdir(join(stateDir(dir), 'events'))).toEqual([]);
    });
  });
});

