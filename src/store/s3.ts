import { createHash } from 'node:crypto';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import type { S3Settings } from '../config/index.js';
import { StoreUnavailableError } from '../errors.js';
import type { ListedObject, ObjectInfo, Store } from './types.js';

/**
 * AWS S3 and S3-compatible servers (MinIO, Ceph, s3rver). This module is
 * loaded only when the store is s3://, so a file-store push does not pay the
 * AWS SDK's start-up cost.
 *
 * Integrity in transit: PUT sends Content-MD5, which every S3 implementation
 * verifies. Overwrite protection: PUT sends If-None-Match: * where the server
 * honours it (AWS, MinIO); the archive layer also checks before it writes,
 * because some servers ignore the header.
 */
export interface S3StoreOptions {
  readonly bucket: string;
  readonly prefix: string;
  readonly s3: S3Settings;
  readonly timeoutMs: number;
}

export class S3Store implements Store {
  readonly description: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;

  constructor(opts: S3StoreOptions) {
    this.bucket = opts.bucket;
    this.prefix = opts.prefix ? `${opts.prefix}/` : '';
    this.description = `s3://${opts.bucket}/${this.prefix}`;
    this.client = new S3Client({
      region: opts.s3.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
      ...(opts.s3.endpoint ? { endpoint: opts.s3.endpoint } : {}),
      forcePathStyle: opts.s3.forcePathStyle,
      // Checksums only where the API requires them: the default streaming
      // CRC framing is stored verbatim by some S3-compatible servers.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 4,
      retryMode: 'standard',
      requestHandler: { connectionTimeout: Math.min(opts.timeoutMs, 10_000), requestTimeout: opts.timeoutMs },
    });
  }

  private k(key: string): string {
    return this.prefix + key;
  }

  private fail(op: string, key: string, err: unknown): StoreUnavailableError {
    const status = err instanceof S3ServiceException ? err.$metadata.httpStatusCode : undefined;
    const name = err instanceof Error ? err.name : 'Error';
    const detail = err instanceof Error ? err.message : String(err);
    let hint: string | undefined;
    if (name === 'NoSuchBucket') hint = `bucket ${this.bucket} does not exist: check WALSHIP_STORE`;
    else if (status === 403 || name === 'AccessDenied' || name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch')
      hint = 'check the AWS credentials and the bucket policy of the PostgreSQL OS user';
    else if (name === 'CredentialsProviderError') hint = 'no AWS credentials found: set AWS_* variables, a profile, or an instance role';
    else hint = 'the S3 endpoint is unreachable or failing; walship will be retried by PostgreSQL';
    return new StoreUnavailableError(`${op} ${this.description}${key} failed: ${name}${status ? ` (HTTP ${status})` : ''}: ${detail}`, {
      key,
      hint,
      cause: err,
    });
  }

  /** A 404 on the object (not on the bucket) is "absent". */
  private isNotFound(err: unknown): boolean {
    if (!(err instanceof S3ServiceException)) return false;
    if (err.name === 'NoSuchBucket') return false;
    return err.name === 'NoSuchKey' || err.name === 'NotFound' || err.$metadata.httpStatusCode === 404;
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.k(key) }));
      return { size: r.ContentLength ?? 0, metadata: r.Metadata ?? {} };
    } catch (err) {
      // HEAD has no body, so a missing bucket also reads as a bare 404:
      // callers that must tell them apart read the archive manifest with get.
      if (this.isNotFound(err)) return undefined;
      throw this.fail('HEAD', key, err);
    }
  }

  async get(key: string): Promise<Buffer | undefined> {
    return this.read(key, undefined);
  }

  async getPrefix(key: string, length: number): Promise<Buffer | undefined> {
    return this.read(key, `bytes=0-${length - 1}`);
  }

  private async read(key: string, range: string | undefined): Promise<Buffer | undefined> {
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.k(key), ...(range ? { Range: range } : {}) }));
      const bytes = Buffer.from(await r.Body!.transformToByteArray());
      if (!range && r.ContentLength !== undefined && bytes.length !== r.ContentLength) {
        throw new Error(`short read: ${bytes.length} of ${r.ContentLength} bytes`);
      }
      return bytes;
    } catch (err) {
      if (this.isNotFound(err)) return undefined;
      if (err instanceof S3ServiceException && err.$metadata.httpStatusCode === 416) return Buffer.alloc(0);
      throw this.fail('GET', key, err);
    }
  }

  async putIfAbsent(key: string, body: Buffer, metadata: Readonly<Record<string, string>>): Promise<'created' | 'exists'> {
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.k(key),
          Body: body,
          ContentLength: body.length,
          ContentMD5: createHash('md5').update(body).digest('base64'),
          ContentType: 'application/octet-stream',
          Metadata: { ...metadata },
          IfNoneMatch: '*',
        }),
      );
      return 'created';
    } catch (err) {
      if (err instanceof S3ServiceException && err.$metadata.httpStatusCode === 412) return 'exists';
      throw this.fail('PUT', key, err);
    }
  }

  async *list(prefix: string): AsyncIterable<ListedObject> {
    let token: string | undefined;
    do {
      let r;
      try {
        r = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.k(prefix), ...(token ? { ContinuationToken: token } : {}) }),
        );
      } catch (err) {
        throw this.fail('LIST', prefix, err);
      }
      for (const o of r.Contents ?? []) {
        if (o.Key) yield { key: o.Key.slice(this.prefix.length), size: o.Size ?? 0 };
      }
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.k(key) }));
    } catch (err) {
      throw this.fail('DELETE', key, err);
    }
  }
}
