import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readArchived } from '../../src/pipeline/fetch.js';
import type { Store } from '../../src/store/index.js';
import { PgCluster } from '../support/pg-cluster.js';
import { basePostgresEnv, chownTreeToPostgres, postgresIds } from '../support/postgres-user.js';
import { faultIterations, faultSeed, prng } from '../support/prng.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { startS3Server, type S3Server } from '../support/s3-server.js';
import { scratch } from '../support/scratch.js';
import { fileArchive, initArchiveFor, runWalship, s3Archive, walshipBin, type TestArchive } from '../support/walship.js';

/**
 * kill -9 of `walship push` and `walship fetch` at random moments (seeded:
 * WALSHIP_FAULT_SEED replays a run; WALSHIP_FAULT_ITERATIONS sets how many),
 * on the file store and on S3. After every kill the operation is run again,
 * as PostgreSQL would, and must succeed; what it left must be whole:
 *
 * - push: the object in the store decodes to exactly the segment, and the
 *   whole archive passes `verify --deep` at the end;
 * - fetch: the target path is either absent or the complete, verified
 *   segment, never a partial file.
 *
 * The segments are real 16 MiB WAL from a real PostgreSQL 15, given new
 * positions (the first page's address and the name) so that each iteration
 * archives a fresh name: the kills exercise walship's writing and reading,
 * not WAL replay (faults-s3 restores real WAL under faults).
 */
const ITERATIONS = faultIterations(20);
const SEED = faultSeed();
const SEGMENT = 16 << 20;

interface Run {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stderr: string;
}

/** Starts walship as the postgres OS user directly (no runuser in between), so that its pid is the one killed. */
function startWalship(args: string[], env: Record<string, string>, cwd: string): { kill: () => void; done: Promise<Run> } {
  const { uid, gid } = postgresIds();
  // bin/walship is a sh launcher that ends in `exec node`: the pid stays the same throughout.
  const child = spawn(walshipBin(), args, { cwd, uid, gid, env: { ...basePostgresEnv(), ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const done = new Promise<Run>((resolve) => child.once('close', (code, signal) => resolve({ code, signal, stderr })));
  return { kill: () => child.kill('SIGKILL'), done };
}

function segName(n: number): string {
  return `00000001000000${(n >> 8).toString(16).toUpperCase().padStart(2, '0')}000000${(n & 0xff).toString(16).toUpperCase().padStart(2, '0')}`;
}

/** A real segment moved to position n: long page header address rewritten, everything else as PostgreSQL wrote it. */
function readdress(real: Buffer, n: number): Buffer {
  const b = Buffer.from(real);
  b.writeBigUInt64LE(BigInt(n) * BigInt(SEGMENT), 8);
  return b;
}

/** Whether the store holds exactly this segment under its name, fully verified. */
async function decodes(store: Store, name: string, bytes: Buffer): Promise<boolean> {
  try {
    const r = await readArchived({ name, store, keys: undefined, retries: 0 });
    return r.status === 'found' && r.data.equals(bytes);
  } catch {
    return false;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

describe(`kill -9 at random moments (seed ${SEED}, ${ITERATIONS} iterations per store and command)`, () => {
  const tmp = scratch();
  let server: S3Server;
  let slowLink: FaultProxy;
  const real: Buffer[] = [];
  const stores: { kind: string; archive: TestArchive; store: Store; dir?: string }[] = [];

  beforeAll(async () => {
    server = await startS3Server({ buckets: ['kill'] });
    const pg = await PgCluster.create({ name: 'kill-source', conf: { wal_level: 'replica' } });
    try {
      await pg.start();
      await pg.pgbench(['-i', '-s', '3', '-q']);
      const last = await pg.switchWal();
      const names = readdirSync(join(pg.dataDir, 'pg_wal')).filter((n) => /^[0-9A-F]{24}$/.test(n) && n < last).sort().slice(-3);
      for (const n of names) real.push(await readFile(join(pg.dataDir, 'pg_wal', n)));
    } finally {
      await pg.destroy();
    }
    expect(real.length).toBeGreaterThan(1);
    const file = tmp.archive(await fileArchive({ WALSHIP_PREFETCH: '0', WALSHIP_PUSH_CONCURRENCY: '1', WALSHIP_TIMEOUT: '5' }));
    // S3 through a slow link (4 MiB/s each way), so that kills land in the
    // middle of uploads and downloads, not only in start-up and compression.
    slowLink = await startFaultProxy(server.port);
    slowLink.always({ kind: 'slow', bytesPerSecond: 4 << 20 });
    const s3 = tmp.archive(await s3Archive(server, 'kill', 'archive', { WALSHIP_PREFETCH: '0', WALSHIP_PUSH_CONCURRENCY: '1', WALSHIP_TIMEOUT: '5', WALSHIP_S3_ENDPOINT: slowLink.endpoint }));
    await initArchiveFor(file, real[0]!);
    await initArchiveFor(s3, real[0]!);
    stores.push({ kind: 'file', archive: file, store: await file.store(), dir: file.dir }, { kind: 's3', archive: s3, store: await s3.store() });
  });
  afterAll(async () => {
    await slowLink?.close();
    await server?.stop();
  });

  const summary: string[] = [];
  afterAll(() => {
    if (summary.length) process.stdout.write(`\nkill -9 summary (seed ${SEED}):\n  ${summary.join('\n  ')}\n`);
  });

  for (const kind of ['file', 's3'] as const) {
    it(`push on the ${kind} store: every kill is followed by a successful push, and every archived object is whole`, async () => {
      const { archive, store, dir: storeDir } = stores.find((s) => s.kind === kind)!;
      const rnd = prng(SEED ^ (kind === 'file' ? 0x1111 : 0x2222));
      const dir = await tmp.dir(`walship-kill-push-${kind}-`);
      let position = 0x10;
      const place = async (): Promise<{ name: string; bytes: Buffer }> => {
        const name = segName(position);
        const bytes = readdress(real[position % real.length]!, position);
        position++;
        await writeFile(join(dir, name), bytes);
        await chownTreeToPostgres(dir);
        return { name, bytes };
      };
      // Calibrate: how long an undisturbed push of a fresh segment takes here.
      const durations: number[] = [];
      for (let i = 0; i < 3; i++) {
        const { name } = await place();
        const t0 = performance.now();
        const r = await startWalship(['push', name], archive.env, dir).done;
        durations.push(performance.now() - t0);
        expect(r.code, r.stderr).toBe(0);
      }
      const window = median(durations) * 1.3;

      let killed = 0;
      let finishedFirst = 0;
      let objectAfterKill = 0;
      let partialAfterKill = 0;
      /** Every iteration runs; what went wrong is collected and reported together at the end. */
      const failures: string[] = [];
      for (let i = 0; i < ITERATIONS; i++) {
        const { name, bytes } = await place();
        const key = `wal/00000001/${name}`;
        const delay = rnd() * window;
        const run = startWalship(['push', name], archive.env, dir);
        const timer = setTimeout(run.kill, delay);
        const first = await run.done;
        clearTimeout(timer);
        const at = `iteration ${i} (seed ${SEED}, kill at ${delay.toFixed(0)} ms)`;
        if (first.signal === 'SIGKILL') killed++;
        else {
          finishedFirst++;
          if (first.code !== 0) failures.push(`${at}: undisturbed push exited ${first.code}: ${first.stderr}`);
        }
        if (first.signal === 'SIGKILL') {
          const left = await store.head(key);
          if (left) {
            objectAfterKill++;
            if (!(await decodes(store, name, bytes))) partialAfterKill++;
          }
        }
        // PostgreSQL calls archive_command again: it must now succeed…
        const again = await startWalship(['push', name], archive.env, dir).done;
        if (again.code !== 0) {
          failures.push(`${at}: the retry exited ${again.code}: ${again.stderr}`);
          continue;
        }
        // …and having said 0, what is archived must be exactly this segment.
        if (!(await decodes(store, name, bytes))) {
          const size = (await store.head(key))?.size;
          failures.push(`${at}: push exited 0 but ${key} is not this segment (stored ${size} bytes): ${again.stderr.split('\n').find((l) => l.includes('"msg"')) ?? ''}`);
        }
      }
      const verify = await runWalship(['verify', '--deep'], { env: archive.env });
      if (verify.code !== 0) failures.push(`verify --deep exited ${verify.code}:\n${verify.stdout}${verify.stderr}`);
      summary.push(
        `push/${kind}: ${ITERATIONS} iterations, ${killed} killed (${objectAfterKill} left an object behind, ${partialAfterKill} of them incomplete), ${finishedFirst} finished before the kill; ${failures.length} failures`,
      );
      expect(failures, failures.join('\n\n')).toEqual([]);
      const leftovers = kind === 'file' ? readdirSync(join(storeDir!, 'wal/00000001')).filter((n) => n.startsWith('.tmp.')).length : 0;
      if (kind === 'file') summary.push(`push/file: ${leftovers} unreferenced temporary files left in the store by kills (invisible to listings)`);
    });
  }

  for (const kind of ['file', 's3'] as const) {
    it(`fetch from the ${kind} store: the target is never a partial file, and the retry delivers the segment`, async () => {
      const { archive } = stores.find((s) => s.kind === kind)!;
      const rnd = prng(SEED ^ (kind === 'file' ? 0x3333 : 0x4444));
      // Segments the push test archived (0x10 …); fetch the first few.
      const names = [0x10, 0x11, 0x12].map(segName);
      const expected = names.map((n, i) => readdress(real[(0x10 + i) % real.length]!, 0x10 + i));
      const base = await tmp.dir(`walship-kill-fetch-${kind}-`);
      const durations: number[] = [];
      for (let i = 0; i < 3; i++) {
        const dir = join(base, `cal-${i}`);
        await mkdir(dir);
        await chownTreeToPostgres(dir);
        const t0 = performance.now();
        const r = await startWalship(['fetch', names[0]!, 'RECOVERYXLOG'], archive.env, dir).done;
        durations.push(performance.now() - t0);
        expect(r.code, r.stderr).toBe(0);
      }
      const window = median(durations) * 1.3;
      let killed = 0;
      let completeAfterKill = 0;
      for (let i = 0; i < ITERATIONS; i++) {
        const k = i % names.length;
        const dir = join(base, `it-${i}`);
        await mkdir(dir);
        await chownTreeToPostgres(dir);
        const target = join(dir, 'RECOVERYXLOG');
        const delay = rnd() * window;
        const run = startWalship(['fetch', names[k]!, 'RECOVERYXLOG'], archive.env, dir);
        const timer = setTimeout(run.kill, delay);
        const first = await run.done;
        clearTimeout(timer);
        if (first.signal === 'SIGKILL') killed++;
        else expect(first.code, first.stderr).toBe(0);
        if (existsSync(target)) {
          // Whatever happened, what PostgreSQL would read is the whole, right segment.
          expect((await stat(target)).size, `iteration ${i}: partial file at %p after kill at ${delay.toFixed(0)} ms`).toBe(SEGMENT);
          expect((await readFile(target)).equals(expected[k]!), `iteration ${i}: wrong content at %p`).toBe(true);
          if (first.signal === 'SIGKILL') completeAfterKill++;
        }
        const again = await startWalship(['fetch', names[k]!, 'RECOVERYXLOG'], archive.env, dir).done;
        expect(again.code, `iteration ${i} retry: ${again.stderr}`).toBe(0);
        expect((await readFile(target)).equals(expected[k]!)).toBe(true);
      }
      summary.push(
        `fetch/${kind}: ${ITERATIONS} iterations, ${killed} killed (${completeAfterKill} had already renamed the whole segment into place), ${ITERATIONS - killed} finished first; never a partial %p, every retry delivered the segment`,
      );
    });
  }
});
