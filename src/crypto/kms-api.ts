import { DecryptCommand, DescribeKeyCommand, GenerateDataKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import type { EncryptionContext } from './kms-context.js';

/**
 * The three KMS calls walship makes, over the AWS SDK. This is the only
 * module that imports @aws-sdk/client-kms, and it is itself imported lazily
 * (kms.ts), only when a data key must be generated or unwrapped: a push that
 * finds its data key in the spool cache never loads the SDK. Errors are
 * raw SDK errors; kms-errors.ts turns them into walship's.
 */

export interface GeneratedDataKey {
  readonly plaintext: Buffer;
  readonly wrapped: Buffer;
  /** The KMS key's ARN, whatever form (alias, id) the request used. */
  readonly keyArn: string;
}

export interface KmsKeyInfo {
  readonly arn: string;
  readonly state: string;
  readonly deletionDate: Date | undefined;
}

export interface KmsApi {
  generateDataKey(keyId: string, context: EncryptionContext): Promise<GeneratedDataKey>;
  /** keyId is optional, as in KMS: a symmetric ciphertext names its key. */
  decrypt(wrapped: Buffer, context: EncryptionContext, keyId: string | undefined): Promise<Buffer>;
  describeKey(keyId: string): Promise<KmsKeyInfo>;
}

export interface KmsApiOptions {
  readonly region: string;
  readonly endpoint: string | undefined;
  readonly timeoutMs: number;
}

export function createKmsApi(opts: KmsApiOptions): KmsApi {
  const client = new KMSClient({
    region: opts.region,
    ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
    // The SDK retries throttling and 5xx with backoff; walship's own retry
    // (fetch) comes on top, so keep this short.
    maxAttempts: 3,
    retryMode: 'standard',
    // throwOnRequestTimeout: without it the SDK only logs a warning when requestTimeout passes.
    requestHandler: { connectionTimeout: Math.min(opts.timeoutMs, 10_000), requestTimeout: opts.timeoutMs, throwOnRequestTimeout: true },
  });
  return {
    async generateDataKey(keyId, context) {
      const r = await client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256', EncryptionContext: { ...context } }));
      if (!r.Plaintext || r.Plaintext.length !== 32 || !r.CiphertextBlob || r.CiphertextBlob.length === 0 || !r.KeyId) {
        throw Object.assign(new Error('GenerateDataKey returned no 256-bit data key'), { name: 'InvalidResponse' });
      }
      return { plaintext: Buffer.from(r.Plaintext), wrapped: Buffer.from(r.CiphertextBlob), keyArn: r.KeyId };
    },
    async decrypt(wrapped, context, keyId) {
      const r = await client.send(
        new DecryptCommand({ CiphertextBlob: wrapped, EncryptionContext: { ...context }, ...(keyId ? { KeyId: keyId } : {}) }),
      );
      if (!r.Plaintext || r.Plaintext.length !== 32) {
        throw Object.assign(new Error('Decrypt returned no 256-bit data key'), { name: 'InvalidResponse' });
      }
      return Buffer.from(r.Plaintext);
    },
    async describeKey(keyId) {
      const r = await client.send(new DescribeKeyCommand({ KeyId: keyId }));
      const m = r.KeyMetadata;
      return { arn: m?.Arn ?? keyId, state: m?.KeyState ?? 'Unknown', deletionDate: m?.DeletionDate };
    },
  };
}
