import { DecryptCommand, DescribeKeyCommand, EncryptCommand, GenerateDataKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KMS_OTHER_ACCOUNT_CREDENTIALS, startKmsServer, type KmsServer, type TestKmsKey } from '../support/kms-server.js';
import { S3_TEST_CREDENTIALS } from '../support/s3-server.js';

/** The test KMS speaks the protocol the real AWS SDK expects, and behaves like KMS where walship relies on it. */
describe('test KMS server with the real @aws-sdk/client-kms', () => {
  let kms: KmsServer;
  let key: TestKmsKey;
  let client: KMSClient;
  const ctx = { 'walship:purpose': 'wal-archive', 'walship:system-identifier': '42' };

  beforeAll(async () => {
    kms = await startKmsServer();
    key = kms.createKey({ alias: 'walship-test' });
    client = new KMSClient({ region: kms.region, endpoint: kms.endpoint, credentials: { ...S3_TEST_CREDENTIALS }, maxAttempts: 1 });
  });
  afterAll(async () => {
    client?.destroy();
    await kms?.stop();
  });

  it('generates a data key by alias and decrypts it without KeyId, only with the same context', async () => {
    kms.resetCounters();
    const g = await client.send(new GenerateDataKeyCommand({ KeyId: 'alias/walship-test', KeySpec: 'AES_256', EncryptionContext: ctx }));
    expect(g.KeyId).toBe(key.arn);
    expect(g.Plaintext?.length).toBe(32);
    const d = await client.send(new DecryptCommand({ CiphertextBlob: g.CiphertextBlob, EncryptionContext: ctx }));
    expect(Buffer.from(d.Plaintext!).equals(Buffer.from(g.Plaintext!))).toBe(true);
    expect(d.KeyId).toBe(key.arn);
    // Reordered context pairs are the same context.
    const reordered = { 'walship:system-identifier': '42', 'walship:purpose': 'wal-archive' };
    await expect(client.send(new DecryptCommand({ CiphertextBlob: g.CiphertextBlob, EncryptionContext: reordered, KeyId: key.id }))).resolves.toBeDefined();
    await expect(
      client.send(new DecryptCommand({ CiphertextBlob: g.CiphertextBlob, EncryptionContext: { ...ctx, 'walship:system-identifier': '43' } })),
    ).rejects.toMatchObject({ name: 'InvalidCiphertextException' });
    await expect(client.send(new DecryptCommand({ CiphertextBlob: g.CiphertextBlob }))).rejects.toMatchObject({ name: 'InvalidCiphertextException' });
    expect(kms.calls).toMatchObject({ GenerateDataKey: 1, Decrypt: 4 });
  });

  it('refuses an altered blob, a KeyId naming another key, and unknown keys', async () => {
    const other = kms.createKey();
    const e = await client.send(new EncryptCommand({ KeyId: key.arn, Plaintext: Buffer.from('x'), EncryptionContext: ctx }));
    const blob = Buffer.from(e.CiphertextBlob!);
    blob[blob.length - 1]! ^= 1;
    await expect(client.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: ctx }))).rejects.toMatchObject({ name: 'InvalidCiphertextException' });
    await expect(client.send(new DecryptCommand({ CiphertextBlob: e.CiphertextBlob, EncryptionContext: ctx, KeyId: other.arn }))).rejects.toMatchObject({
      name: 'IncorrectKeyException',
    });
    await expect(client.send(new GenerateDataKeyCommand({ KeyId: 'alias/nope', KeySpec: 'AES_256' }))).rejects.toMatchObject({ name: 'NotFoundException' });
  });

  it('denies another account, denied operations, disabled keys; fails on demand', async () => {
    const foreign = new KMSClient({ region: kms.region, endpoint: kms.endpoint, credentials: { ...KMS_OTHER_ACCOUNT_CREDENTIALS }, maxAttempts: 1 });
    await expect(foreign.send(new GenerateDataKeyCommand({ KeyId: key.arn, KeySpec: 'AES_256' }))).rejects.toMatchObject({ name: 'AccessDeniedException' });
    foreign.destroy();
    kms.deny(['GenerateDataKey']);
    await expect(client.send(new GenerateDataKeyCommand({ KeyId: key.arn, KeySpec: 'AES_256' }))).rejects.toMatchObject({ name: 'AccessDeniedException' });
    kms.deny([]);
    kms.failNext('GenerateDataKey', 1, 'ThrottlingException', 400);
    await expect(client.send(new GenerateDataKeyCommand({ KeyId: key.arn, KeySpec: 'AES_256' }))).rejects.toMatchObject({ name: 'ThrottlingException' });
    const k2 = kms.createKey();
    kms.setKeyState(k2.id, 'PendingDeletion');
    await expect(client.send(new GenerateDataKeyCommand({ KeyId: k2.id, KeySpec: 'AES_256' }))).rejects.toMatchObject({ name: 'KMSInvalidStateException' });
    const dk = await client.send(new DescribeKeyCommand({ KeyId: k2.arn }));
    expect(dk.KeyMetadata?.KeyState).toBe('PendingDeletion');
    kms.setUnreachable(true);
    await expect(client.send(new GenerateDataKeyCommand({ KeyId: key.arn, KeySpec: 'AES_256' }))).rejects.toThrow();
    kms.setUnreachable(false);
  });
});
