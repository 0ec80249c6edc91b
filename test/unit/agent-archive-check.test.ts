import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { runLoop } from '../../src/agent/loop.js';
import { agentPaths } from '../../src/agent/paths.js';
import type { Pusher } from '../../src/agent/pusher.js';
import { ArchiveMissingError, StoreUnavailableError } from '../../src/errors.js';
import { createLogger } from '../../src/log/index.js';
import { fileIdentity, PushMarkers } from '../../src/spool/push-markers.js';

/**
 * On S3, bin/walship answers PostgreSQL from a status record only after the
 * agent read the store's walship.json again for that call (agent/checked,
 * "v1 <archiveId> <ms the look began>"): the store behind the same URL may
 * have been wiped, re-created or replaced since the record was written.
 * These pin the agent's side of that: the look happens for a waiting call
 * whose file has a record, and a store that is no longer the archive
 * revokes every record, fails the call and stops the agent.
 */
const base = mkdtempSync(join(tmpdir(), 'walship-archivecheck-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));
const A = '000000010000000000000005';
const B = '000000010000000000000006';
const aid = '0123456789abcdef0123456789abcdef';
const log = createLogger('test', 'silent');
const data = join(base, 'data');
const cdir = join(base, 'cluster');
const paths = agentPaths(cdir);
let markers: PushMarkers;
let archived: string[];

const pusher: Pusher = {
  slots: 1,
  archive: async (path) => {
    archived.push(path);
    throw new Error('not expected: every file here has a record');
  },
  close: async () => undefined,
};

beforeEach(async () => {
  rmSync(base, { recursive: true, force: true });
  mkdirSync(join(data, 'pg_wal', 'archive_status'), { recursive: true });
  mkdirSync(paths.dir, { recursive: true });
  markers = new PushMarkers(cdir, { archiveId: aid, storeFingerprint: 'fp' });
  archived = [];
  for (const n of [A, B]) {
    writeFileSync(join(data, 'pg_wal', n), Buffer.alloc(4096, 1));
    writeFileSync(join(data, 'pg_wal', 'archive_status', `${n}.ready`), '');
    await markers.record(n, await fileIdentity(join(data, 'pg_wal', n)), 'ab'.repeat(32), 100);
  }
});

/** Runs the loop until `done()` holds (or 20 s pass); returns why it stopped. */
async function loopUntil(check: () => Promise<void>, done: () => boolean): Promise<string> {
  const t0 = Date.now();
  return runLoop({
    dataDir: data,
    paths,
    markers,
    pusher,
    log,
    idleMs: 0,
    scanMs: 20,
    archiveCheck: { archiveId: aid, check },
    shouldStop: async () => (done() ? 'done' : Date.now() - t0 > 20_000 ? 'gave up' : undefined),
  });
}

describe('the agent looks at an S3 store again for each waiting call', () => {
  it('no call waiting: no look; a call waiting on a recorded file: one look, begun after the request, and agent/checked says so', async () => {
    let looks = 0;
    const idle = await loopUntil(async () => void looks++, () => true);
    expect(idle).toBe('done');
    expect(looks).toBe(0);

    const asked = Date.now();
    writeFileSync(paths.want, `${A}\n`);
    const r = await loopUntil(async () => void looks++, () => existsSync(paths.checked));
    expect(r).toBe('done');
    expect(looks).toBe(1);
    const [v, id, ms] = readFileSync(paths.checked, 'utf8').trim().split(' ');
    expect([v, id]).toEqual(['v1', aid]);
    expect(Number(ms)).toBeGreaterThanOrEqual(asked);
    expect(archived).toEqual([]);
    expect(existsSync(join(cdir, 'pushed', A))).toBe(true);
  });

  it('a store that holds no archive (or another one): the call fails with that error, every record is revoked, the agent stops', async () => {
    writeFileSync(paths.want, `${A}\n`);
    const r = await loopUntil(
      async () => {
        throw new ArchiveMissingError('no walship archive at s3://walship/x (no walship.json)');
      },
      () => false,
    );
    expect(r).toMatch(/no longer holds archive .*ARCHIVE_MISSING/);
    expect(readFileSync(join(paths.failedDir, A), 'utf8')).toMatch(/^ARCHIVE_MISSING no walship archive/);
    expect(existsSync(join(cdir, 'pushed', A))).toBe(false);
    expect(existsSync(join(cdir, 'pushed', B))).toBe(false);
    expect(existsSync(paths.checked)).toBe(false);
  });

  it('a store that is no longer the archive: no file is archived again while, or after, its records are revoked', async () => {
    // Hundreds of records, so that revoking them takes long enough for a scan
    // to run meanwhile (before 4a4cec3 that scan archived the files whose
    // records were already gone, into the store that is not the archive).
    for (let i = 0; i < 400; i++) {
      const n = `00000001000000010000${i.toString(16).toUpperCase().padStart(4, '0')}`;
      writeFileSync(join(data, 'pg_wal', n), Buffer.alloc(512, 2));
      writeFileSync(join(data, 'pg_wal', 'archive_status', `${n}.ready`), '');
      await markers.record(n, await fileIdentity(join(data, 'pg_wal', n)), 'cd'.repeat(32), 50);
    }
    writeFileSync(paths.want, `${A}\n`);
    const r = await loopUntil(
      async () => {
        throw new ArchiveMissingError('no walship archive at s3://walship/x (no walship.json)');
      },
      () => false,
    );
    expect(r).toMatch(/no longer holds archive/);
    expect(archived).toEqual([]);
    expect(existsSync(join(cdir, 'pushed'))).toBe(false);
  });

  it('a file already being archived when the look fails gets no record, not even once it is stored', async () => {
    const C = '000000010000000000000007';
    writeFileSync(join(data, 'pg_wal', C), Buffer.alloc(4096, 3));
    writeFileSync(join(data, 'pg_wal', 'archive_status', `${C}.ready`), '');
    writeFileSync(paths.want, `${A}\n`);
    let started!: () => void;
    const pushing = new Promise<void>((r) => (started = r));
    const slow: Pusher = {
      slots: 1,
      archive: async (path) => {
        archived.push(path);
        started();
        await new Promise((r) => setTimeout(r, 400));
        return { file: C, outcome: 'archived', rawBytes: 4096, storedBytes: 100, blake3: 'ef'.repeat(32) };
      },
      close: async () => undefined,
    };
    const r = await runLoop({
      dataDir: data,
      paths,
      markers,
      pusher: slow,
      log,
      idleMs: 0,
      scanMs: 20,
      archiveCheck: {
        archiveId: aid,
        // The look fails while C is on its way to the store.
        check: async () => {
          await pushing;
          throw new ArchiveMissingError('no walship archive at s3://walship/x (no walship.json)');
        },
      },
      shouldStop: async () => undefined,
    });
    expect(r).toMatch(/no longer holds archive/);
    expect(archived).toEqual([join(data, 'pg_wal', C)]);
    expect(existsSync(join(cdir, 'pushed', C))).toBe(false);
    expect(existsSync(join(cdir, 'pushed', A))).toBe(false);
  });

  it('a store that cannot be read: the call fails, the records stay (the next call looks again)', async () => {
    writeFileSync(paths.want, `${A}\n`);
    const r = await loopUntil(
      async () => {
        throw new StoreUnavailableError('connection refused');
      },
      () => existsSync(join(paths.failedDir, A)),
    );
    expect(r).toBe('done');
    expect(readFileSync(join(paths.failedDir, A), 'utf8')).toMatch(/^STORE_UNAVAILABLE /);
    expect(existsSync(join(cdir, 'pushed', B))).toBe(true);
    expect(existsSync(paths.checked)).toBe(false);
  });
});
