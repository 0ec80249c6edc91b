import { rmSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { syntheticSegment } from './synthetic-wal.js';
import { join } from 'node:path';
import { inject } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { createKeyFile } from '../../src/crypto/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import { PgCluster } from './pg-cluster.js';
import { chownTreeToPostgres, mkPostgresTempDir, runAsPostgres, type RunResult } from './postgres-user.js';
import { S3_TEST_CREDENTIALS, type S3Server } from './s3-server.js';

/** Temp dirs made here; removed when the test worker exits (WALSHIP_TEST_KEEP_TMP=1 keeps them). */
const tempDirs: string[] = [];
process.once('exit', () => {
  if (process.env.WALSHIP_TEST_KEEP_TMP === '1') return;
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

async function tempDir(prefix: string, mode?: number): Promise<string> {
  const d = await mkPostgresTempDir(prefix, mode);
  tempDirs.push(d);
  return d;
}

/** An archive location plus the environment that points walship at it. */
export interface TestArchive {
  readonly env: Record<string, string>;
  /** Direct access to the same store, for inspecting what walship wrote. */
  store(): Promise<Store>;
}

export function walshipBin(): string {
  return inject('walshipBin');
}

/** A file store in a directory owned by postgres, plus a spool directory. */
export async function fileArchive(extra: Record<string, string> = {}): Promise<TestArchive & { dir: string }> {
  const base = await tempDir('walship-archive-');
  const dir = join(base, 'store');
  await mkdir(dir);
  await mkdir(join(base, 'spool'));
  await chownTreeToPostgres(base);
  const env = { WALSHIP_STORE: `file://${dir}`, WALSHIP_SPOOL_DIR: join(base, 'spool'), ...extra };
  return { dir, env, store: () => storeFor(env) };
}

export async function s3Archive(server: S3Server, bucket: string, prefix: string, extra: Record<string, string> = {}): Promise<TestArchive> {
  const base = await tempDir('walship-s3spool-');
  const env = {
    WALSHIP_STORE: `s3://${bucket}/${prefix}`,
    WALSHIP_S3_ENDPOINT: server.endpoint,
    WALSHIP_S3_REGION: 'us-east-1',
    WALSHIP_S3_FORCE_PATH_STYLE: 'true',
    WALSHIP_SPOOL_DIR: base,
    AWS_ACCESS_KEY_ID: S3_TEST_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: S3_TEST_CREDENTIALS.secretAccessKey,
    ...extra,
  };
  return { env, store: () => storeFor(env) };
}

/** A fresh key file readable only by postgres, and the settings that turn encryption on. */
export async function keyfileEncryption(): Promise<Record<string, string>> {
  const dir = await tempDir('walship-key-', 0o700);
  const path = join(dir, 'walship.key');
  await createKeyFile(path);
  await chownTreeToPostgres(dir);
  return { WALSHIP_ENCRYPTION: 'keyfile', WALSHIP_KEY_FILE: path };
}

function storeFor(env: Record<string, string>): Promise<Store> {
  const config = loadConfig({ env: { ...env, WALSHIP_ENCRYPTION: 'none', WALSHIP_KEY_FILE: '' } });
  if (env.AWS_ACCESS_KEY_ID) {
    process.env.AWS_ACCESS_KEY_ID = env.AWS_ACCESS_KEY_ID;
    process.env.AWS_SECRET_ACCESS_KEY = env.AWS_SECRET_ACCESS_KEY;
  }
  return openStore(config);
}

/** Runs the installed CLI as the postgres OS user, as PostgreSQL would. */
/**
 * The environment of a two-store archive: `first`'s settings plus `second`
 * as WALSHIP_STORE2 with a key file of its own (its WALSHIP_KEY_FILE, or a
 * new one when `second` has none), in `mode`.
 */
export async function withSecondStore(
  first: TestArchive,
  second: TestArchive,
  mode: 'sync' | 'async',
): Promise<Record<string, string>> {
  const key = second.env.WALSHIP_KEY_FILE ?? (await keyfileEncryption()).WALSHIP_KEY_FILE!;
  return { ...first.env, WALSHIP_STORE2: second.env.WALSHIP_STORE!, WALSHIP_STORE2_MODE: mode, WALSHIP_STORE2_ENCRYPTION: 'keyfile', WALSHIP_STORE2_KEY_FILE: key };
}

export function runWalship(args: string[], opts: { env: Record<string, string>; cwd?: string }): Promise<RunResult> {
  return runAsPostgres(walshipBin(), args, { env: opts.env, ...(opts.cwd ? { cwd: opts.cwd } : {}) });
}

export interface LogRecord {
  readonly level: string;
  readonly msg: string;
  readonly [k: string]: unknown;
}

/** walship's stderr (or a PostgreSQL log) as parsed walship JSON records. */
export function logRecords(text: string): LogRecord[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{') && l.includes('"cmd"'))
    .map((l) => {
      try {
        return JSON.parse(l) as LogRecord;
      } catch {
        return undefined;
      }
    })
    .filter((r): r is LogRecord => r !== undefined);
}

/** Every stored object under wal/ and history/, raw (as the store holds it). */
export async function storedObjects(store: Store): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const prefix of ['wal/', 'history/']) {
    for await (const o of store.list(prefix)) out.set(o.key, (await store.get(o.key))!);
  }
  return out;
}

export { tempDir };

/**
 * A started PostgreSQL with 1 MiB segments whose archive_command is walship
 * push into `archive`. `conf` adds or overrides settings (archive_command
 * '/bin/false', say, to build up a backlog first).
 */
export async function archivingPrimary(
  name: string,
  archive: TestArchive,
  conf: Record<string, string> = {},
): Promise<PgCluster> {
  const primary = await PgCluster.create({
    name,
    initdbArgs: ['--wal-segsize=1'],
    conf: { wal_level: 'replica', archive_mode: 'on', archive_command: archiveCommand(), ...conf },
    env: archive.env,
  });
  // The archive exists before archiving starts, as a user would set it up,
  // also when the test starts with another archive_command (a backlog first).
  if (conf.archive_command !== undefined) {
    const r = await runWalship(['init', '-D', primary.dataDir], { env: archive.env });
    if (r.code !== 0) throw new Error(`walship init failed (exit ${r.code}): ${r.stderr}`);
  }
  await primary.start();
  return primary;
}

export function archiveCommand(): string {
  return `${walshipBin()} push %p`;
}

export function restoreCommand(): string {
  return `${walshipBin()} fetch %f %p`;
}

/**
 * walship init for an archive that a test feeds with synthetic or copied
 * segments rather than from a running cluster: a stand-in data directory
 * with the segment's system identifier (global/pg_control) and the segment
 * itself (pg_wal), which is all init reads.
 */
export async function initArchiveFor(archive: TestArchive, segment: Buffer | bigint): Promise<void> {
  const bytes = typeof segment === 'bigint' ? syntheticSegment({ name: '000000010000000000000001', systemIdentifier: segment }) : segment;
  const dir = await tempDir('walship-init-');
  await mkdir(join(dir, 'global'));
  await mkdir(join(dir, 'pg_wal'));
  const control = Buffer.alloc(16);
  bytes.copy(control, 0, 24, 32);
  await writeFile(join(dir, 'global', 'pg_control'), control);
  await writeFile(join(dir, 'pg_wal', '000000010000000000000001'), bytes.subarray(0, 8192));
  await chownTreeToPostgres(dir);
  const r = await runWalship(['init', '-D', dir], { env: archive.env });
  if (r.code !== 0) throw new Error(`walship init failed (exit ${r.code}): ${r.stderr}`);
}

/**
 * Writes enough to fill `n` 1 MiB segments into table `filler` (which the
 * caller created) and switches after each; returns the last one switched.
 */
export async function makeSegments(pg: PgCluster, n: number): Promise<string> {
  let last = '';
  for (let i = 0; i < n; i++) {
    await pg.sql(`insert into filler select g, repeat('x', 500) from generate_series(1, 1500) g`);
    last = await pg.switchWal();
  }
  return last;
}
