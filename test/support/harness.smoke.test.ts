/**
 * Smoke tests for the test harness itself: if these fail, every integration
 * test built on top of them would fail for reasons unrelated to walship.
 * They exercise real PostgreSQL (including a full PITR cycle with plain cp as
 * archive/restore command), a real s3rver child process and the postgres-user
 * install of native addons.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dockerAvailable } from './docker.js';
import { freePort } from './free-port.js';
import { liveClusters, mkPostgresTempDir, parseCsv, PgCluster, renderConf, runAsPostgres } from './pg-cluster.js';
import { installForPostgres, nodePath, removeInstall } from './postgres-install.js';
import { S3_TEST_CREDENTIALS, S3_TEST_REGION, startS3Server, type S3Server } from './s3-server.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const requireFromRepo = createRequire(join(repoRoot, 'package.json'));

/** Collects teardown steps; runs all of them even if some fail. */
function cleanupStack(): { add(fn: () => Promise<unknown>): void; run(): Promise<void> } {
  const fns: Array<() => Promise<unknown>> = [];
  return {
    add: (fn) => void fns.push(fn),
    run: async () => {
      const errors: unknown[] = [];
      for (const fn of fns.reverse()) {
        try {
          await fn();
        } catch (e) {
          errors.push(e);
        }
      }
      fns.length = 0;
      if (errors.length) throw new AggregateError(errors, 'cleanup failed');
    },
  };
}

describe('free-port', () => {
  it('returns a bindable loopback port', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    expect(port).toBeLessThan(65536);
    const srv = createServer();
    await new Promise<void>((res, rej) => srv.once('error', rej).listen(port, '127.0.0.1', () => res()));
    await new Promise<void>((res) => srv.close(() => res()));
  });
});

describe('pg-cluster helpers', () => {
  it('renders postgresql.conf values', () => {
    expect(renderConf({ a: 'it\'s', b: 5, c: true, d: 'back\\slash' })).toBe("a = 'it''s'\nb = 5\nc = on\nd = 'back\\\\slash'\n");
    expect(() => renderConf({ 'bad key': 1 })).toThrow(/invalid/);
  });

  it('parses psql CSV output', () => {
    expect(parseCsv('')).toEqual([]);
    expect(parseCsv('\n')).toEqual([['']]);
    expect(parseCsv('a|b,"x,""y""","multi\nline",,\n1,2,3,4,5\n')).toEqual([
      ['a|b', 'x,"y"', 'multi\nline', '', ''],
      ['1', '2', '3', '4', '5'],
    ]);
  });
});

describe('PgCluster: start, env passthrough, pgbench, basebackup and PITR with cp', () => {
  const cleanup = cleanupStack();
  let primary: PgCluster;
  let archive: string;
  let probeDir: string;
  // Quotes, spaces and a pipe: the value travels as one argv word through
  // runuser/env and must arrive verbatim.
  const envValue = `it's | a "value" with spaces`;

  beforeAll(async () => {
    archive = await mkPostgresTempDir('walship-smoke-archive-');
    cleanup.add(() => rm(archive, { recursive: true, force: true }));
    probeDir = await mkPostgresTempDir('walship-smoke-probe-');
    cleanup.add(() => rm(probeDir, { recursive: true, force: true }));

    // Must NOT reach the server: the harness does not forward the test
    // process environment.
    process.env.WALSHIP_SMOKE_LEAK = 'leaked';
    cleanup.add(async () => void delete process.env.WALSHIP_SMOKE_LEAK);

    primary = await PgCluster.create({
      name: 'smoke-primary',
      initdbArgs: ['--wal-segsize=1'],
      conf: {
        cluster_name: "smoke'primary",
        max_wal_senders: 5,
        archive_mode: 'on',
        // test ! -f: never overwrite, as a real archive_command must not.
        archive_command: `test ! -f ${archive}/%f && cp %p ${archive}/%f && echo "$WALSHIP_SMOKE_VAR" > ${probeDir}/env-probe`,
      },
      env: { WALSHIP_SMOKE_VAR: envValue },
    });
    cleanup.add(() => primary.destroy());
    await primary.start();
  });

  afterAll(() => cleanup.run());

  it('runs queries and applies conf with quoting', async () => {
    expect(await primary.sql('select 1')).toBe('1');
    expect(await primary.sql('show cluster_name')).toBe("smoke'primary");
    expect(await primary.sql('show max_wal_senders')).toBe('5');
    expect(await primary.sql('show wal_segment_size')).toBe('1MB');
    expect(await primary.sqlRows(`select 'a|b', 'x,"y"', E'multi\\nline', null, ''`)).toEqual([['a|b', 'x,"y"', 'multi\nline', '', '']]);
    expect(await primary.sqlRows('select 1 where false')).toEqual([]);
    await expect(primary.sql('select * from no_such_table')).rejects.toThrow(/no_such_table/);
    expect(await primary.isRunning()).toBe(true);
    expect(liveClusters()).toContain(primary);
  });

  it('passes env to the postmaster (COPY FROM PROGRAM) and to archive_command', async () => {
    const fromBackend = await primary.sql(
      `create temp table e(v text); ` +
        `copy e from program 'printf "%s;%s" "$WALSHIP_SMOKE_VAR" "\${WALSHIP_SMOKE_LEAK:-unset}"'; ` +
        `select v from e`,
    );
    expect(fromBackend).toBe(`${envValue};unset`);

    await primary.sql('create table t_env(x int); insert into t_env values (1)');
    const seg = await primary.switchWal();
    await primary.waitArchived(seg, 30_000);
    expect(existsSync(join(archive, seg))).toBe(true);
    expect(await readFile(join(probeDir, 'env-probe'), 'utf8')).toBe(`${envValue}\n`);
  });

  it('waitArchived times out with a helpful message', async () => {
    await expect(primary.waitArchived('0000000100000000000000FF', 500)).rejects.toThrow(/pg_stat_archiver/);
  });

  it('runs pgbench', async () => {
    await primary.pgbench(['-i', '-s', '1', '-q']);
    expect(await primary.sql('select count(*) from pgbench_accounts')).toBe('100000');
    await primary.pgbench(['-c', '2', '-t', '50', '-n']);
  });

  it('restores a base backup to a named restore point (PITR via cp)', async () => {
    const restored = await PgCluster.fromBaseBackup(primary, {
      name: 'smoke-restore',
      conf: {
        restore_command: `cp ${archive}/%f %p`,
        recovery_target_name: 'smoke_rp',
        recovery_target_action: 'promote',
      },
    });
    cleanup.add(() => restored.destroy());
    expect(existsSync(join(restored.dataDir, 'recovery.signal'))).toBe(true);

    // WAL after the backup: a row before the restore point and one after it.
    await primary.sql(`create table marker(v text); insert into marker values ('before')`);
    await primary.sql(`select pg_create_restore_point('smoke_rp')`);
    await primary.sql(`insert into marker values ('after')`);
    await primary.waitArchived(await primary.switchWal(), 30_000);

    await restored.start({ wait: false });
    const outcome = await restored.waitFor('primary', { timeoutMs: 90_000 });
    if (outcome.state !== 'reached') throw new Error(`restore did not finish: ${JSON.stringify(outcome)}`);

    expect(await restored.sqlRows('select v from marker order by v')).toEqual([['before']]);
    expect(await restored.sql('select count(*) from pgbench_accounts')).toBe('100000');
    expect(await restored.logText()).toMatch(/recovery stopping at restore point "smoke_rp"/);
    // The restored cluster got its own harness conf, not the primary's archiving.
    expect(await restored.sql('show archive_mode')).toBe('off');
    expect(restored.port).not.toBe(primary.port);
    // Read-write after promotion.
    await restored.sql(`insert into marker values ('new')`);

    await restored.destroy();
    expect(await restored.isRunning()).toBe(false);
    expect(existsSync(restored.base)).toBe(false);
    expect(existsSync(restored.dataDir)).toBe(false);
    expect(liveClusters()).not.toContain(restored);
  });

  it('reports a server that dies during recovery instead of hanging', async () => {
    const doomed = await PgCluster.fromBaseBackup(primary, {
      name: 'smoke-doomed',
      conf: {
        restore_command: `cp ${archive}/%f %p`,
        recovery_target_name: 'no_such_restore_point',
        recovery_target_action: 'promote',
      },
    });
    cleanup.add(() => doomed.destroy());
    await primary.waitArchived(await primary.switchWal(), 30_000);

    await doomed.start({ wait: false });
    const outcome = await doomed.waitFor('primary', { timeoutMs: 90_000 });
    expect(outcome.state).toBe('died');
    if (outcome.state === 'died') {
      expect(outcome.logTail).toMatch(/recovery ended before configured recovery target was reached/);
    }
    expect(await doomed.isRunning()).toBe(false);
    await doomed.destroy();
  });

  it('fails start() with the server log when the config is broken', async () => {
    const broken = await PgCluster.create({ name: 'smoke-broken', conf: { shared_buffers: 'not a size' } });
    cleanup.add(() => broken.destroy());
    await expect(broken.start()).rejects.toThrow(/shared_buffers/);
    const wait = await broken.waitFor('accepting', { timeoutMs: 2000 });
    expect(wait.state).toBe('died');
    await broken.destroy();
  });

  it('stops and restarts', async () => {
    await primary.stop();
    expect(await primary.isRunning()).toBe(false);
    expect((await primary.waitFor('stopped', { timeoutMs: 1000 })).state).toBe('reached');
    await primary.start();
    expect(await primary.sql('select count(*) from marker')).toBe('2');
  });
});

describe('s3-server', () => {
  let s3: S3Server | undefined;
  let client: S3Client | undefined;

  afterAll(async () => {
    client?.destroy();
    await s3?.stop();
    if (s3) expect(existsSync(s3.dir)).toBe(false);
  });

  it('serves PUT/GET/HEAD/DELETE and paginated ListObjectsV2', async () => {
    s3 = await startS3Server({ buckets: ['walship-test', 'other-bucket'] });
    expect(s3.endpoint).toBe(`http://127.0.0.1:${s3.port}`);
    client = new S3Client({
      endpoint: s3.endpoint,
      region: S3_TEST_REGION,
      forcePathStyle: true,
      credentials: { ...S3_TEST_CREDENTIALS },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    const Bucket = 'walship-test';
    const keys = ['wal/000000010000000000000001', 'wal/000000010000000000000002', 'wal/000000010000000000000003'];
    for (const Key of keys) {
      await client.send(new PutObjectCommand({ Bucket, Key, Body: Buffer.from(`body of ${Key}`) }));
    }
    const got = await client.send(new GetObjectCommand({ Bucket, Key: keys[1] }));
    expect(await got.Body?.transformToString()).toBe(`body of ${keys[1]}`);

    const seen: string[] = [];
    let pages = 0;
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket, Prefix: 'wal/', MaxKeys: 1, ContinuationToken: token }));
      pages++;
      seen.push(...(page.Contents ?? []).map((o) => o.Key ?? ''));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    expect(seen).toEqual(keys);
    expect(pages).toBe(3);

    await client.send(new DeleteObjectCommand({ Bucket, Key: keys[0] }));
    await expect(client.send(new HeadObjectCommand({ Bucket, Key: keys[0] }))).rejects.toMatchObject({ name: 'NotFound' });
    // Second pre-configured bucket exists and is empty.
    const other = await client.send(new ListObjectsV2Command({ Bucket: 'other-bucket' }));
    expect(other.KeyCount ?? 0).toBe(0);
  });
});

describe('postgres-install', () => {
  const cleanup = cleanupStack();
  afterAll(() => cleanup.run());

  it('installs a launcher, dist and the native addons runnable by postgres from an unreadable repo', async () => {
    // A fake checkout in a 0700 root-owned dir (like a CI home), whose
    // node_modules is a symlink to the real one.
    const fake = await mkdtemp(join(tmpdir(), 'walship-fakerepo-'));
    cleanup.add(() => rm(fake, { recursive: true, force: true }));
    await chmod(fake, 0o700);
    await cp(join(repoRoot, 'package.json'), join(fake, 'package.json'));
    await symlink(join(repoRoot, 'node_modules'), join(fake, 'node_modules'));
    await mkdir(join(fake, 'bin'));
    await mkdir(join(fake, 'dist'));
    await writeFile(join(fake, 'bin', 'walship'), "#!/usr/bin/env node\nimport('../dist/main.mjs');\n", { mode: 0o755 });
    await writeFile(
      join(fake, 'dist', 'main.mjs'),
      [
        "import { createRequire } from 'node:module';",
        "import { userInfo } from 'node:os';",
        "import { Command } from 'commander';", // an extra external: the dist scan must pick it up
        'const require = createRequire(import.meta.url);',
        "const lz4 = require('lz4-napi');",
        "const { blake3 } = require('@napi-rs/blake-hash');",
        "const input = Buffer.from(process.argv[2] ?? '');",
        'const ok = lz4.uncompressSync(lz4.compressSync(input)).equals(input);',
        "process.stdout.write(JSON.stringify({ user: userInfo().username, ok, digest: blake3(input).toString('hex'), env: process.env.WALSHIP_X ?? null, cmd: typeof Command }));",
        '',
      ].join('\n'),
    );

    const inst = await installForPostgres(fake);
    cleanup.add(() => removeInstall(inst.dir));
    expect(inst.bin).toBe(join(inst.dir, 'bin', 'walship'));
    expect(inst.packages).toEqual(expect.arrayContaining(['lz4-napi', '@napi-rs/blake-hash', 'commander']));
    expect(inst.packages.some((p) => p.startsWith('@antoniomuso/lz4-napi-'))).toBe(true);
    expect(inst.packages.some((p) => p.startsWith('@napi-rs/blake-hash-'))).toBe(true);

    // postgres cannot read the fake repo, but can run the install.
    expect((await runAsPostgres('test', ['-r', join(fake, 'package.json')])).code).not.toBe(0);
    const r = await runAsPostgres(inst.bin, ['hello walship'], { env: { WALSHIP_X: 'y' } });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { user: string; ok: boolean; digest: string; env: string | null; cmd: string };
    const { blake3 } = requireFromRepo('@napi-rs/blake-hash') as { blake3(input: Buffer): Buffer };
    expect(out).toEqual({ user: 'postgres', ok: true, digest: blake3(Buffer.from('hello walship')).toString('hex'), env: 'y', cmd: 'function' });

    await removeInstall(inst.dir);
    expect(existsSync(inst.dir)).toBe(false);
    await expect(removeInstall('/tmp')).rejects.toThrow(/refusing/);
  });

  it('uses a node binary that postgres can execute', async () => {
    const r = await runAsPostgres(nodePath, ['-p', 'process.version']);
    expect(r.stdout.trim()).toBe(process.version);
  });

  it.skipIf(!existsSync(join(repoRoot, 'dist', 'main.mjs')))('installs the real build', async () => {
    const inst = await installForPostgres(repoRoot);
    cleanup.add(() => removeInstall(inst.dir));
    const r = await runAsPostgres(inst.bin, ['--help']);
    expect(r.code, r.stderr).toBe(0);
  });
});

describe('docker', () => {
  it('answers with a boolean and never throws', async () => {
    const t0 = Date.now();
    const available = await dockerAvailable();
    expect(typeof available).toBe('boolean');
    expect(Date.now() - t0).toBeLessThan(20_000);
  });
});
