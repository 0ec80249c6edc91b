import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig, storeFingerprint } from '../../src/config/index.js';
import { clusterSpoolPath } from '../../src/spool/cluster.js';
import { fileIdentity } from '../../src/spool/push-markers.js';
import { launcherCopy, launcherFunctions, nodeRan } from '../support/launcher.js';

/**
 * bin/walship's fast_push answers PostgreSQL from a status record without
 * Node (the agent's records and look-ahead markers). It checks the file, the
 * marker's age and the stored object with one stat(1): these pin that every
 * check still refuses what it must, run on the launcher's own functions.
 */
const functions = launcherFunctions();

const base = mkdtempSync(join(tmpdir(), 'walship-fastpush-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));
const name = '000000010000000000000007';
const data = join(base, 'data');
const spool = join(base, 'spool');
const store = join(base, 'store');
const env = { WALSHIP_STORE: `file://${store}`, WALSHIP_SPOOL_DIR: spool };
const aid = '0123456789abcdef0123456789abcdef';
let marker: string;

/** `call`: what agent_push sets before it checks (t0, when the call began; adir, the agent's directory). */
function fastPush(storeEnv: Record<string, string> = env, call = ''): string {
  const script = `set -C\ncmd=push config_arg=\nspool=$WALSHIP_SPOOL_DIR\n${functions}\n${call}\nfast_push pg_wal/${name} && echo yes || echo no`;
  return execFileSync('/bin/sh', ['-c', script], { env: { PATH: process.env.PATH!, WALSHIP_LOG_LEVEL: 'silent', ...storeEnv }, cwd: data, encoding: 'utf8' }).trim();
}

async function writeMarker(over: { archiveId?: string; storedBytes?: number } = {}, storeEnv: Record<string, string> = env): Promise<void> {
  const id = await fileIdentity(join(data, 'pg_wal', name));
  const fp = storeFingerprint(loadConfig({ env: storeEnv }));
  writeFileSync(
    marker,
    `v2 ${over.archiveId ?? aid} ${fp} ${id.dev} ${id.ino} ${id.size} ${id.mtimeNs} ${id.ctimeNs} ${'ab'.repeat(32)} ${over.storedBytes ?? 1234} ${new Date().toISOString()}\n`,
  );
}

beforeEach(async () => {
  rmSync(base, { recursive: true, force: true });
  mkdirSync(join(data, 'global'), { recursive: true });
  mkdirSync(join(data, 'pg_wal'));
  const control = Buffer.alloc(16);
  control.writeBigUInt64LE(7301234567890123456n);
  writeFileSync(join(data, 'global', 'pg_control'), control);
  writeFileSync(join(data, 'pg_wal', name), Buffer.alloc(4096, 1));
  writeFileSync(join(data, 'walship.archive'), `v1 ${aid} x\n`);
  mkdirSync(spool, { mode: 0o700 });
  chmodSync(spool, 0o700);
  const cdir = await clusterSpoolPath(spool, data);
  mkdirSync(join(cdir, 'pushed'), { recursive: true });
  marker = join(cdir, 'pushed', name);
  mkdirSync(join(store, 'wal', '00000001'), { recursive: true });
  writeFileSync(join(store, 'walship.json'), '{}');
  writeFileSync(join(store, 'wal', '00000001', name), Buffer.alloc(1234));
});

describe('bin/walship fast_push', () => {
  it('answers from a record that matches the file, the archive, the configuration and the stored object, and consumes it', async () => {
    await writeMarker();
    expect(fastPush()).toBe('yes');
    expect(existsSync(marker)).toBe(false);
  });

  it('refuses a record of another archive', async () => {
    await writeMarker({ archiveId: 'f'.repeat(32) });
    expect(fastPush()).toBe('no');
  });

  it('refuses when the stored object is not at the confirmed size, or gone', async () => {
    await writeMarker({ storedBytes: 1233 });
    expect(fastPush()).toBe('no');
    await writeMarker();
    rmSync(join(store, 'wal', '00000001', name));
    expect(fastPush()).toBe('no');
  });

  it('refuses when the file changed after the record was written', async () => {
    await writeMarker();
    writeFileSync(join(data, 'pg_wal', name), Buffer.alloc(4096, 2));
    expect(fastPush()).toBe('no');
  });

  it('refuses a record older than ten minutes', async () => {
    await writeMarker();
    const old = new Date(Date.now() - 11 * 60_000);
    utimesSync(marker, old, old);
    expect(fastPush()).toBe('no');
    expect(existsSync(marker)).toBe(true);
  });

  it('refuses when the spool may be written by others', async () => {
    await writeMarker();
    chmodSync(spool, 0o777);
    expect(fastPush()).toBe('no');
  });
});

describe('bin/walship fast_push on S3, where it cannot look into the store', () => {
  const s3env = { WALSHIP_STORE: 's3://walship/prefix', WALSHIP_S3_ENDPOINT: 'http://127.0.0.1:9000', WALSHIP_SPOOL_DIR: spool };
  let adir: string;
  const call = (t0: number) => `t0=${t0} adir=${adir}`;
  beforeEach(async () => {
    adir = join(await clusterSpoolPath(spool, data), 'agent');
    mkdirSync(adir, { recursive: true });
  });

  it('never answers from a record alone: the store behind the same URL may since have been wiped, re-created or replaced', async () => {
    // Everything the record binds matches (archive, configuration, file); before the fix this answered yes.
    await writeMarker({}, s3env);
    expect(fastPush(s3env)).toBe('no');
    expect(fastPush(s3env, call(Date.now()))).toBe('no');
    expect(existsSync(marker)).toBe(true);
  });

  it('answers once the agent found this archive in the store in a look begun after the call began', async () => {
    const t0 = Date.now();
    await writeMarker({}, s3env);
    writeFileSync(join(adir, 'checked'), `v1 ${aid} ${t0 - 1}\n`);
    expect(fastPush(s3env, call(t0))).toBe('no');
    writeFileSync(join(adir, 'checked'), `v1 ${'f'.repeat(32)} ${t0 + 5}\n`);
    expect(fastPush(s3env, call(t0))).toBe('no');
    writeFileSync(join(adir, 'checked'), `v1 ${aid} ${t0 + 5}\n`);
    expect(fastPush(s3env, call(t0))).toBe('yes');
    expect(existsSync(marker)).toBe(false);
  });
});

describe('bin/walship push, the whole script', () => {
  /** A copy of the launcher beside a stand-in for Node that says it ran, and with which arguments. */
  function launcherRoot(): string {
    const root = join(base, 'root');
    launcherCopy(root);
    // bash started as "sh" runs in POSIX mode: /bin/sh on RHEL, Fedora and Amazon Linux.
    symlinkSync('/bin/bash', join(root, 'fake-bin', 'sh'));
    return root;
  }

  it.each([
    ['dash', '/bin/sh'],
    ['bash as sh', 'fake-bin/sh'],
  ])('%s: an agent lock that cannot be opened falls back to archiving in-process, with the call\'s own arguments', async (_shell, shell) => {
    const root = launcherRoot();
    writeFileSync(join(data, 'postmaster.pid'), `${process.pid}\n${data}\n1764700000\n`);
    const cdir = await clusterSpoolPath(spool, data);
    // A directory where the lock file should be: opening it for writing fails (as a root-owned lock would for postgres).
    mkdirSync(join(cdir, 'agent.lock'), { recursive: true });
    const r = spawnSync(shell.startsWith('/') ? shell : join(root, shell), [join(root, 'bin', 'walship'), 'push', `pg_wal/${name}`], {
      cwd: data,
      env: { PATH: process.env.PATH!, WALSHIP_AGENT: 'on', ...env },
      encoding: 'utf8',
    });
    // Before the fix, bash ran the error trap with agent_start's (empty) arguments: Node printed its usage and exited 0, archiving nothing.
    expect(r.stdout).toBe(nodeRan(`push pg_wal/${name}`));
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/"agentFallback":"cannot-start"/);
  });

  it('a shell error in the shortcut archives in-process (Node) instead of exiting 2 (here: date printing nonsense)', async () => {
    const root = launcherRoot();
    writeFileSync(join(root, 'fake-bin', 'date'), '#!/bin/sh\necho "1+ x"\n');
    chmodSync(join(root, 'fake-bin', 'date'), 0o755);
    await writeMarker();
    const r = spawnSync('/bin/sh', [join(root, 'bin', 'walship'), 'push', `pg_wal/${name}`], {
      cwd: data,
      env: { PATH: `${join(root, 'fake-bin')}:${process.env.PATH!}`, WALSHIP_LOG_LEVEL: 'silent', ...env },
      encoding: 'utf8',
    });
    expect(r.stdout).toBe(nodeRan(`push pg_wal/${name}`));
    expect(r.status).toBe(0);
    // The record was not consumed: the shortcut did not answer.
    expect(existsSync(marker)).toBe(true);
  });
});
