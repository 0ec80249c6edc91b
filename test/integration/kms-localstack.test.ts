import { readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { StartedTestContainer } from 'testcontainers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dockerAvailable } from '../support/docker.js';
import { chownTreeToPostgres } from '../support/postgres-user.js';
import { syntheticSegment } from '../support/synthetic-wal.js';
import { fileArchive, logRecords, runWalship, tempDir } from '../support/walship.js';

/**
 * The KMS behaviour walship relies on, checked against LocalStack's KMS (a
 * second, independent implementation of the protocol) where a Docker engine
 * is reachable. Skipped cleanly without one. The call-count and
 * fault-injection tests need the test server's counters and stay in
 * kms-cli.test.ts.
 */

const docker = await dockerAvailable();
const SYSID = 7300000000000000001n;
const segName = (i: number): string => `0000000100000000000000${i.toString(16).toUpperCase().padStart(2, '0')}`;

describe.skipIf(!docker)('KMS envelope encryption against LocalStack (testcontainers)', () => {
  let container: StartedTestContainer | undefined;
  let env: Record<string, string>;
  let keyArn: string;

  beforeAll(async () => {
    const { GenericContainer, Wait } = await import('testcontainers');
    container = await new GenericContainer('localstack/localstack:3.8')
      .withEnvironment({ SERVICES: 'kms' })
      .withExposedPorts(4566)
      .withWaitStrategy(Wait.forLogMessage(/Ready\./))
      .start();
    const host = container.getHost() === 'localhost' ? '127.0.0.1' : container.getHost();
    const endpoint = `http://${host}:${container.getMappedPort(4566)}`;
    const { CreateAliasCommand, CreateKeyCommand, KMSClient } = await import('@aws-sdk/client-kms');
    const client = new KMSClient({ region: 'us-east-1', endpoint, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
    const key = await client.send(new CreateKeyCommand({ Description: 'walship test' }));
    keyArn = key.KeyMetadata!.Arn!;
    await client.send(new CreateAliasCommand({ AliasName: 'alias/walship-ls', TargetKeyId: key.KeyMetadata!.KeyId! }));
    client.destroy();
    env = {
      WALSHIP_ENCRYPTION: 'kms',
      WALSHIP_KMS_KEY_ID: 'alias/walship-ls',
      WALSHIP_KMS_ENDPOINT: endpoint,
      WALSHIP_KMS_REGION: 'us-east-1',
      WALSHIP_PUSH_CONCURRENCY: '1',
      WALSHIP_RETRIES: '0',
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
    };
  }, 300_000);
  afterAll(async () => {
    await container?.stop();
  });

  async function segments(n: number, systemIdentifier = SYSID): Promise<{ dir: string; names: string[] }> {
    const dir = await tempDir('walship-ls-segs-');
    const names = Array.from({ length: n }, (_, i) => segName(i + 1));
    for (const [i, name] of names.entries()) await writeFile(join(dir, name), syntheticSegment({ name, systemIdentifier, fill: i + 7 }));
    await chownTreeToPostgres(dir);
    return { dir, names };
  }

  async function fetch(archiveEnv: Record<string, string>, name: string) {
    const dir = await tempDir('walship-ls-fetch-');
    const spool = await tempDir('walship-ls-spool-');
    const r = await runWalship(['fetch', name, 'RECOVERYXLOG'], { env: { ...archiveEnv, WALSHIP_SPOOL_DIR: spool }, cwd: dir });
    return { ...r, restored: existsSync(join(dir, 'RECOVERYXLOG')) ? await readFile(join(dir, 'RECOVERYXLOG')) : undefined };
  }

  it('pushes, rotates and fetches across the rotation', async () => {
    const archive = await fileArchive(env);
    const { dir, names } = await segments(4);
    for (const [i, n] of names.entries()) {
      if (i === 2) expect((await runWalship(['key', 'rotate'], { env: archive.env })).code).toBe(0);
      const r = await runWalship(['push', n], { env: archive.env, cwd: dir });
      expect(r.code, r.stderr).toBe(0);
    }
    for (const n of names) {
      const f = await fetch(archive.env, n);
      expect(f.code, f.stderr).toBe(0);
      expect(f.restored!.equals(await readFile(join(dir, n)))).toBe(true);
    }
    const st = await runWalship(['key', 'status', '--json'], { env: archive.env });
    const report = JSON.parse(st.stdout) as { archive: { keys: { key: string }[] } };
    expect(report.archive.keys).toHaveLength(2);
    expect(report.archive.keys.every((g) => g.key === keyArn)).toBe(true);
  });

  it('refuses a relabelled encryption context and an object copied from another cluster', async () => {
    const archive = await fileArchive(env);
    const { dir, names } = await segments(1);
    expect((await runWalship(['push', names[0]!], { env: archive.env, cwd: dir })).code).toBe(0);
    const other = await fileArchive(env);
    const o = await segments(1, 7300000000000000999n);
    expect((await runWalship(['push', o.names[0]!], { env: other.env, cwd: o.dir })).code).toBe(0);

    // Copied into the other cluster's archive (under a name it does not have yet).
    const copied = segName(9);
    const src = await readFile(join(archive.dir, 'wal/00000001', names[0]!));
    await writeFile(join(other.dir, 'wal/00000001', copied), src);
    await chownTreeToPostgres(other.dir);
    const c = await fetch(other.env, copied);
    expect(c.code).toBe(200);
    expect(logRecords(c.stderr).at(-1)!.msg).toMatch(/copied from another cluster's archive/);

    // Relabelled to the other cluster (whose archive this is): walship's own check passes, KMS refuses the context.
    const len = src.readUInt32BE(8);
    const h = JSON.parse(src.subarray(12, 12 + len).toString('utf8'));
    h.key.context['walship:system-identifier'] = '7300000000000000999';
    h.systemIdentifier = '7300000000000000999';
    const json = Buffer.from(JSON.stringify(h));
    const pro = Buffer.from(src.subarray(0, 12));
    pro.writeUInt32BE(json.length, 8);
    await writeFile(join(other.dir, 'wal/00000001', copied), Buffer.concat([pro, json, src.subarray(12 + len)]));
    await chownTreeToPostgres(other.dir);
    const r = await fetch(other.env, copied);
    expect(r.code).toBe(200);
    expect(r.restored).toBeUndefined();
    expect(logRecords(r.stderr).at(-1)).toMatchObject({ code: 'KEY' });
  });
});
