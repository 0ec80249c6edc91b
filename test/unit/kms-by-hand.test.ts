import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeObject } from '../../src/codec/index.js';
import { KmsProvider } from '../../src/crypto/index.js';
import { startKmsServer, type KmsServer } from '../support/kms-server.js';
import { S3_TEST_CREDENTIALS } from '../support/s3-server.js';

/**
 * docs/FORMAT.md promises that a KMS-protected object can be decrypted by
 * hand with the AWS CLI and OpenSSL. This runs that recipe, as written there,
 * against the test KMS (so also with a second client, botocore) and checks it
 * yields walship's object key. Skipped where the tools are missing.
 */
const tools = ['aws', 'jq', 'openssl', 'xxd', 'od'].every((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0);

describe.skipIf(!tools)('decrypting a KMS-protected object by hand (docs/FORMAT.md)', () => {
  let kms: KmsServer | undefined;
  let dir: string | undefined;
  afterAll(async () => {
    await kms?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the AWS CLI and openssl recipe gives the object key', async () => {
    kms = await startKmsServer();
    kms.createKey({ alias: 'by-hand' });
    const env = { ...process.env, AWS_ACCESS_KEY_ID: S3_TEST_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3_TEST_CREDENTIALS.secretAccessKey };
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: env.AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: env.AWS_SECRET_ACCESS_KEY });
    dir = await mkdtemp(join(tmpdir(), 'walship-by-hand-'));
    const p = new KmsProvider({
      keyId: 'alias/by-hand',
      region: kms.region,
      endpoint: kms.endpoint,
      timeoutMs: 5000,
      spoolDir: dir,
      cache: false,
      rotation: { maxAgeMs: 3600_000, maxObjects: 0 },
    });
    const o = await encodeObject({ name: '000000010000000000000001', data: Buffer.from('wal'.repeat(999)), compression: 'none', keys: p, systemIdentifier: '7300000000000000001', createdBy: 't' });
    await writeFile(join(dir, 'OBJ'), o.bytes);
    const objectKey = await p.objectKeyFor(o.header.key!, { file: 'OBJ', systemIdentifier: '7300000000000000001' });

    // The recipe from docs/FORMAT.md, with only the endpoint added.
    const script = `set -e -o pipefail
SYSID=7300000000000000001
n=$(od -An -tu1 -j8 -N4 OBJ | awk '{print $1*16777216+$2*65536+$3*256+$4}')
head -c $((12+n)) OBJ | tail -c $n > header.json
jq -r .key.wrapped header.json | base64 -d > wrapped.bin
aws --endpoint-url ${kms.endpoint} --region ${kms.region} kms decrypt --ciphertext-blob fileb://wrapped.bin \\
  --encryption-context walship:purpose=wal-archive,walship:system-identifier=$SYSID \\
  --query Plaintext --output text | base64 -d | xxd -p -c 64 > datakey.hex
openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt hexkey:$(cat datakey.hex) \\
  -kdfopt hexsalt:$(jq -r .key.salt header.json | base64 -d | xxd -p -c 64) \\
  -kdfopt info:'walship object key v1' -binary HKDF | xxd -p -c 64
`;
    // Asynchronously: the test KMS answers from this process's event loop.
    const { stdout } = await promisify(execFile)('bash', ['-c', script], { cwd: dir, env });
    expect(stdout.trim()).toBe(objectKey.toString('hex'));
  });
});
