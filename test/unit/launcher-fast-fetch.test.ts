import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig, storeFingerprint } from '../../src/config/index.js';
import { clusterSpoolPath } from '../../src/spool/cluster.js';
import { applyEvent, emptyState, isStateEvent } from '../../src/spool/state-model.js';
import { launcherCopy, launcherFunctions, nodeRan } from '../support/launcher.js';
import { syntheticSegment } from '../support/synthetic-wal.js';

/**
 * bin/walship's fast_fetch hands a pooled segment to PostgreSQL without Node.
 * It is the hot path of every archive recovery, so it is written to run as
 * few programs as it can; these pin that every check it makes still refuses
 * what it must, run on the launcher's own functions in a synthetic data
 * directory (the integration tests do the same with a real server).
 */
const functions = launcherFunctions();

const base = mkdtempSync(join(tmpdir(), 'walship-fastfetch-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));
const name = '000000020000000100000003';
const segSize = 1 << 20;
const sysid = 7301234567890123456n;
const data = join(base, 'data');
const pool = join(data, 'pg_wal', 'walship-prefetch');
const spool = join(base, 'spool');
const env = { WALSHIP_STORE: `file://${base}/store`, WALSHIP_SPOOL_DIR: spool };
const aid = '0123456789abcdef0123456789abcdef';
const fp = storeFingerprint(loadConfig({ env }));
let events: string;
let holder: ChildProcess | undefined;

function fastFetch(target = 'pg_wal/RECOVERYXLOG', extraEnv: Record<string, string> = {}): string {
  const script = `set -C\ncmd=fetch config_arg=\nspool=$WALSHIP_SPOOL_DIR\n${functions}\nfast_fetch ${name} ${target} && echo yes || echo no`;
  return execFileSync('/bin/sh', ['-c', script], {
    env: { PATH: process.env.PATH!, WALSHIP_LOG_LEVEL: 'silent', ...env, ...extraEnv },
    cwd: data,
    encoding: 'utf8',
  }).trim();
}

function writeOwner(over: { archiveId?: string; sysid?: string; fp?: string; pid?: string; start?: string } = {}): void {
  writeFileSync(join(pool, 'owner'), `v1 ${over.archiveId ?? aid} ${over.sysid ?? sysid} ${over.fp ?? fp} ${over.pid ?? '4242'} ${over.start ?? '1764700000'}\n`);
}

function writeControl(id: bigint, size = 8192): void {
  const control = Buffer.alloc(size);
  control.writeBigUInt64LE(id);
  writeFileSync(join(data, 'global', 'pg_control'), control);
}

/** Holds the pool's worker lock, as a live filler does. */
async function holdLock(): Promise<void> {
  // Its own process group, so that stopping it stops sleep(1) too, which inherits the locked descriptor.
  holder = spawn('flock', ['-x', join(pool, 'worker.lock'), 'sleep', '600'], { stdio: 'ignore', detached: true });
  // A generous bound: starting flock(1) can take a while on a busy 2-core machine.
  for (const deadline = Date.now() + 60_000; Date.now() < deadline; ) {
    try {
      execFileSync('flock', ['-n', '-E', '75', join(pool, 'worker.lock'), 'true']);
    } catch {
      return; // 75: someone holds it
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('the lock holder did not take worker.lock');
}

beforeEach(async () => {
  rmSync(base, { recursive: true, force: true });
  mkdirSync(join(data, 'global'), { recursive: true });
  mkdirSync(pool, { recursive: true });
  writeControl(sysid);
  writeFileSync(join(data, 'recovery.signal'), '');
  writeFileSync(join(data, 'postmaster.pid'), `4242\n${data}\n1764700000\n5432\n`);
  writeFileSync(join(data, 'walship.archive'), `v1 ${aid} x\n`);
  writeFileSync(join(pool, name), syntheticSegment({ name, segmentSize: segSize, systemIdentifier: sysid }));
  writeOwner();
  mkdirSync(spool, { mode: 0o700 });
  chmodSync(spool, 0o700);
  events = join(await clusterSpoolPath(spool, data), 'state', 'events');
  mkdirSync(events, { recursive: true });
  await holdLock();
});

function releaseLock(): void {
  if (holder?.pid) process.kill(-holder.pid, 'SIGKILL');
  holder = undefined;
}
afterEach(releaseLock);

describe('bin/walship fast_fetch', () => {
  it('hands over a whole segment of this cluster under a live filler, says which it was and records one hit', () => {
    const want = syntheticSegment({ name, segmentSize: segSize, systemIdentifier: sysid });
    expect(fastFetch()).toBe('yes');
    expect(readFileSync(join(data, 'pg_wal', 'RECOVERYXLOG')).equals(want)).toBe(true);
    expect(existsSync(join(pool, name))).toBe(false);
    expect(readFileSync(join(pool, 'want'), 'utf8').trim()).toBe(name);
    const recorded = readdirSync(events).filter((n) => !n.startsWith('.'));
    expect(recorded.every((n) => /^\d{13}-\d+-[0-9a-f]{8}\.json$/.test(n))).toBe(true);
    const parsed = recorded.map((n) => JSON.parse(readFileSync(join(events, n), 'utf8')) as unknown);
    expect(parsed.every(isStateEvent)).toBe(true);
    expect(parsed).toContainEqual(expect.objectContaining({ kind: 'fetch', file: name, outcome: 'ok', rawBytes: segSize }));
    const t = (parsed[0] as { t: number }).t;
    expect(Math.abs(t - Date.now())).toBeLessThan(60_000);
    // Folded as metrics and status fold them: one delivery, one prefetch hit.
    const state = emptyState();
    for (const e of parsed) if (isStateEvent(e)) applyEvent(state, e);
    expect(state.fetch.calls.ok).toBe(1);
    expect(state.prefetch).toEqual({ hits: 1, misses: 0 });
    expect(state.fetch.last).toMatchObject({ file: name, t });
  });

  it('logs one line on stderr naming the file, with the time', () => {
    const script = `set -C\ncmd=fetch config_arg=\nspool=$WALSHIP_SPOOL_DIR\n${functions}\nfast_fetch ${name} pg_wal/RECOVERYXLOG`;
    const r = execFileSync('/bin/sh', ['-c', `${script} 2>&1 >/dev/null`], { env: { PATH: process.env.PATH!, ...env }, cwd: data, encoding: 'utf8' });
    const line = JSON.parse(r.trim()) as { level: string; time: string; file: string; prefetched: boolean };
    expect(line).toMatchObject({ level: 'info', file: name, prefetched: true });
    expect(Math.abs(Date.parse(line.time) - Date.now())).toBeLessThan(60_000);
    expect(line.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it('hands nothing over when no filler holds the lock', () => {
    releaseLock();
    // flock(2) is released when the holder's process is gone; give it a moment.
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; ) {
      try {
        execFileSync('flock', ['-n', '-E', '75', join(pool, 'worker.lock'), 'true']);
        break;
      } catch {
        execFileSync('sleep', ['0.01']);
      }
    }
    expect(fastFetch()).toBe('no');
    expect(existsSync(join(pool, name))).toBe(true);
  });

  it.each([
    ['another store configuration', { fp: 'f'.repeat(16) }],
    ['another archive', { archiveId: 'f'.repeat(32) }],
    ['another server lifetime (pid)', { pid: '4243' }],
    ['another server lifetime (start)', { start: '1764700001' }],
    ['another cluster', { sysid: '7301234567890123457' }],
  ])('refuses a pool whose owner record names %s', (_what, over) => {
    writeOwner(over);
    expect(fastFetch()).toBe('no');
    expect(existsSync(join(pool, name))).toBe(true);
    expect(existsSync(join(data, 'pg_wal', 'RECOVERYXLOG'))).toBe(false);
  });

  it('refuses when pg_control names another system than the owner record and the segment', () => {
    writeControl(sysid + 1n);
    expect(fastFetch()).toBe('no');
  });

  it('refuses a pg_control that is not the 8 KiB PostgreSQL writes', () => {
    writeControl(sysid, 4096);
    expect(fastFetch()).toBe('no');
  });

  it.each([
    ['another timeline', { headerTimeline: 1 }],
    ['another system', { systemIdentifier: sysid + 1n }],
    ['a bad magic', { magic: 0x1234 }],
  ])('refuses a segment whose header says %s', (_what, over) => {
    writeFileSync(join(pool, name), syntheticSegment({ name, segmentSize: segSize, systemIdentifier: sysid, ...over }));
    expect(fastFetch()).toBe('no');
  });

  it('refuses another segment of the same cluster under this name (its page address differs)', () => {
    writeFileSync(join(pool, name), syntheticSegment({ name: '000000020000000100000004', segmentSize: segSize, systemIdentifier: sysid }));
    expect(fastFetch()).toBe('no');
  });

  it('refuses a torn segment and a 32-byte file', () => {
    writeFileSync(join(pool, name), syntheticSegment({ name, segmentSize: segSize, systemIdentifier: sysid }).subarray(0, segSize - 8192));
    expect(fastFetch()).toBe('no');
    writeFileSync(join(pool, name), syntheticSegment({ name, segmentSize: segSize, systemIdentifier: sysid }).subarray(0, 32));
    expect(fastFetch()).toBe('no');
  });

  it('refuses a symlink in the pool', () => {
    renameSync(join(pool, name), join(base, 'elsewhere'));
    symlinkSync(join(base, 'elsewhere'), join(pool, name));
    expect(fastFetch()).toBe('no');
  });

  it('refuses outside recovery, and a target outside pg_wal', () => {
    expect(fastFetch('/tmp/x')).toBe('no');
    rmSync(join(data, 'recovery.signal'));
    expect(fastFetch()).toBe('no');
  });

  it('still hands over when the spool may be written by others, but records nothing there', () => {
    chmodSync(spool, 0o777);
    expect(fastFetch()).toBe('yes');
    expect(readdirSync(events)).toEqual([]);
  });
});

/**
 * The whole launcher, with a stand-in for Node (dist/main.mjs) that says it
 * ran: what PostgreSQL's call does when the shortcut cannot answer.
 */
describe('bin/walship fetch, the whole script', () => {
  const root = join(tmpdir(), `walship-launcher-root-${process.pid}`);
  const fakeBin = join(root, 'fake-bin');
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  beforeEach(() => {
    rmSync(root, { recursive: true, force: true });
    launcherCopy(root);
  });
  const run = (extraEnv: Record<string, string> = {}, path = process.env.PATH!) =>
    spawnSync('/bin/sh', [join(root, 'bin', 'walship'), 'fetch', name, 'pg_wal/RECOVERYXLOG'], {
      cwd: data,
      env: { PATH: path, HOME: base, WALSHIP_LOG_LEVEL: 'silent', ...env, ...extraEnv },
      encoding: 'utf8',
    });

  it('answers from the pool without Node', () => {
    const r = run();
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('');
    expect(existsSync(join(data, 'pg_wal', 'RECOVERYXLOG'))).toBe(true);
  });

  it('a file gone between the checks (pg_control, with the spool usable) goes to Node, never exit 2', () => {
    // Before the fix, stat's three lines were taken for four and the shell
    // stopped with status 2, which PostgreSQL reads as "not in the archive".
    renameSync(join(data, 'global', 'pg_control'), join(data, 'global', 'pg_control.away'));
    const r = run();
    expect(r.stdout).toBe(nodeRan(`fetch ${name} pg_wal/RECOVERYXLOG`));
    expect(r.status).toBe(0);
    expect(existsSync(join(pool, name))).toBe(true);
    expect(readdirSync(pool).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('any shell error in the shortcut hands the call to Node with its own arguments (here: od printing nonsense)', () => {
    writeFileSync(join(fakeBin, 'od'), '#!/bin/sh\ni=0; while [ $i -lt 2048 ]; do printf "0 "; i=$((i+1)); done; echo "1+ 0 0 0 0 0 0 0 0 0"\n');
    chmodSync(join(fakeBin, 'od'), 0o755);
    writeOwner({ sysid: '0' });
    const r = run({}, `${fakeBin}:${process.env.PATH!}`);
    expect(r.stderr).toMatch(/arithmetic/);
    expect(r.stdout).toBe(nodeRan(`fetch ${name} pg_wal/RECOVERYXLOG`));
    expect(r.status).toBe(0);
    expect(existsSync(join(pool, name))).toBe(true);
  });

  it('once the segment is in place, an error in logging or statistics does not change the answer (a copy with a broken log_line)', () => {
    const script = join(root, 'bin', 'walship');
    writeFileSync(script, readFileSync(script, 'utf8').replace(/^log_line\(\) \{/m, 'log_line() {\n  x=$((1+))'));
    const r = run();
    expect(r.stderr).toMatch(/arithmetic/);
    expect(r.stdout).toBe('');
    expect(r.status).toBe(0);
    expect(existsSync(join(data, 'pg_wal', 'RECOVERYXLOG'))).toBe(true);
  });

  it('ignores the names it uses when the server environment happens to set them', () => {
    const r = run({ seq: 'x+', hpath: '000000000000', cdir: join(base, 'elsewhere'), spool_checked: 'yes' });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('');
    expect(readdirSync(events).filter((n) => !n.startsWith('.'))).toHaveLength(1);
  });
});
