import { createHash } from 'node:crypto';
import { PassThrough, type Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import type { S3Settings } from '../config/index.js';
import { StoreUnavailableError } from '../errors.js';
import { AttemptTimeoutError, defaultRetryPolicy, Retrier, RetriesExhaustedError, type RetryPolicy } from './retry.js';
import type { ByteSource, ListedObject, ObjectInfo, Store } from './types.js';

/**
 * AWS S3 and S3-compatible servers (MinIO, Ceph, s3rver). This module is
 * loaded only when the store is s3://, so a file-store push does not pay the
 * AWS SDK's start-up cost.
 *
 * Integrity in transit: PUT sends Content-MD5, which every S3 implementation
 * verifies. Overwrite protection: PUT sends If-None-Match: * where the server
 * honours it (AWS, MinIO); the archive layer also checks before it writes,
 * because some servers ignore the header. A server that refuses the header
 * (501 NotImplemented, or a 400 naming it) gets the PUT again without it,
 * after a HEAD, and is remembered for the rest of the process: archiving
 * must not stop because a server lacks conditional writes.
 *
 * Permissions: a principal without s3:ListBucket gets 403, not 404, for a
 * key that does not exist. walship never reads a 403 as "absent"; the
 * error names the permission each operation needs (see s3-permissions.ts).
 *
 * Every request runs under walship's own RetryPolicy (retry.ts), not the
 * SDK's: one attempt is aborted after WALSHIP_TIMEOUT, transient failures
 * are retried with backoff and jitter, and a store that keeps failing is
 * given up on after WALSHIP_DEADLINE, so push fails in bounded time.
 */
export interface S3StoreOptions {
  readonly bucket: string;
  readonly prefix: string;
  readonly s3: S3Settings;
  readonly timeoutMs: number;
  /** How long a failing store is retried; default twice timeoutMs. */
  readonly deadlineMs?: number | undefined;
  /** Overrides the whole policy (tests). */
  readonly retryPolicy?: RetryPolicy;
  /** Streamed bodies up to this size go in one PUT; default 64 MiB. */
  readonly multipartThresholdBytes?: number;
  /** Part size of a multipart upload; default 8 MiB (S3's minimum is 5 MiB, except for the last part). */
  readonly partBytes?: number;
}

const DEFAULT_MULTIPART_THRESHOLD = 64 << 20;
// 8 MiB: a bounded buffer, 128 parts per GiB (S3 allows 10,000), and under the
// request-size limits of S3 emulators (fauxqs takes at most 11 MiB).
const DEFAULT_PART_BYTES = 8 << 20;
/** Multipart uploads older than this under our prefix were left by a killed writer (no live upload takes an hour). */
const STALE_UPLOAD_MS = 3600_000;

/** S3 caps DeleteObjects at 1000 keys per request. */
const DELETE_BATCH = 1000;

/** Error names S3 and compatible servers use for "try again later". */
const TRANSIENT_NAMES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'RequestTimeout',
  'RequestTimeoutException',
  'InternalError',
  'ServiceUnavailable',
  'TimeoutError',
  'ShortReadError',
]);
const TRANSIENT_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ERR_STREAM_PREMATURE_CLOSE']);

/** A body shorter than its Content-Length: the connection broke mid-transfer. */
class ShortReadError extends Error {
  override readonly name = 'ShortReadError';
}

export function isTransient(err: unknown): boolean {
  if (err instanceof AttemptTimeoutError) return true;
  if (!(err instanceof Error)) return false;
  const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  // 501 NotImplemented is an answer about the request, not the server's health.
  if (status !== undefined && ((status >= 500 && status !== 501) || status === 429)) return true;
  if (TRANSIENT_NAMES.has(err.name)) return true;
  const code = (err as NodeJS.ErrnoException).code;
  if (code !== undefined && TRANSIENT_CODES.has(code)) return true;
  // Node reports a peer that closed mid-response this way, without a code.
  return /socket hang up|aborted|premature close/i.test(err.message);
}

/** The S3 permission each store operation needs, for error hints. */
const PERMISSION: Readonly<Record<string, string>> = {
  HEAD: 's3:GetObject (and s3:ListBucket, without which a missing key answers 403 instead of 404)',
  GET: 's3:GetObject (and s3:ListBucket, without which a missing key answers 403 instead of 404)',
  PUT: 's3:PutObject',
  MULTIPART: 's3:PutObject (multipart upload) and s3:AbortMultipartUpload',
  'LIST-UPLOADS': 's3:ListBucketMultipartUploads',
  LIST: 's3:ListBucket',
  DELETE: 's3:DeleteObject',
};

/**
 * Endpoints (endpoint + bucket) that refused If-None-Match in this process:
 * later writes skip the header instead of paying a refused request each.
 */
const noConditionalPut = new Set<string>();

/** A PUT refused because of its If-None-Match header, not because of its content or rights. */
function refusesConditionalPut(err: unknown): boolean {
  if (!(err instanceof S3ServiceException)) return false;
  const status = err.$metadata.httpStatusCode;
  if (status === 501) return true;
  if (status !== 400) return false;
  return err.name === 'NotImplemented' || /if-none-match|conditional|precondition/i.test(`${err.name} ${err.message}`);
}

/**
 * What a refused conditional write (If-None-Match: *, on PUT or on Complete)
 * means: 412, the name exists; a server that does not do conditional writes
 * at all, 'refused' (the caller retries without the header). Undefined for
 * any other error.
 */
function conditionalAnswer(err: unknown): 'exists' | 'refused' | undefined {
  if (err instanceof S3ServiceException && err.$metadata.httpStatusCode === 412) return 'exists';
  if (refusesConditionalPut(err)) return 'refused';
  return undefined;
}

export class S3Store implements Store {
  readonly description: string;
  /** Identifies the server and bucket for the per-process If-None-Match memory. */
  private readonly endpointKey: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly retrier: Retrier;
  private readonly multipartThreshold: number;
  private readonly partBytes: number;

  constructor(opts: S3StoreOptions) {
    this.multipartThreshold = opts.multipartThresholdBytes ?? DEFAULT_MULTIPART_THRESHOLD;
    this.partBytes = opts.partBytes ?? DEFAULT_PART_BYTES;
    this.bucket = opts.bucket;
    this.prefix = opts.prefix ? `${opts.prefix}/` : '';
    this.description = `s3://${opts.bucket}/${this.prefix}`;
    this.endpointKey = `${opts.s3.endpoint ?? 'aws'} ${opts.s3.region ?? ''} ${opts.bucket}`;
    this.client = new S3Client({
      region: opts.s3.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
      ...(opts.s3.endpoint ? { endpoint: opts.s3.endpoint } : {}),
      forcePathStyle: opts.s3.forcePathStyle,
      // Checksums only where the API requires them: the default streaming
      // CRC framing is stored verbatim by some S3-compatible servers.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // One attempt per send(): retries are the Retrier's, so that there is
      // one policy, with one deadline, that the tests can prove.
      maxAttempts: 1,
      // socketTimeout rejects a connection that goes silent; the Retrier's
      // abort bounds the whole attempt. (The SDK's requestTimeout only logs
      // a warning unless throwOnRequestTimeout is set.)
      requestHandler: { connectionTimeout: Math.min(opts.timeoutMs, 10_000), socketTimeout: opts.timeoutMs },
    });
    this.retrier = new Retrier(opts.retryPolicy ?? defaultRetryPolicy(opts.timeoutMs, opts.deadlineMs));
  }

  /** One store operation under the retry policy; every failure leaves as StoreUnavailableError. */
  private async call<T>(op: string, key: string, attempt: (signal: AbortSignal) => Promise<T>): Promise<T> {
    try {
      return await this.retrier.run(attempt, isTransient);
    } catch (err) {
      if (err instanceof StoreUnavailableError) throw err;
      if (err instanceof RetriesExhaustedError) throw this.fail(op, key, err.lastError, err);
      throw this.fail(op, key, err);
    }
  }

  private k(key: string): string {
    return this.prefix + key;
  }

  private fail(op: string, key: string, err: unknown, retries?: RetriesExhaustedError): StoreUnavailableError {
    const status = err instanceof S3ServiceException ? err.$metadata.httpStatusCode : undefined;
    const name = err instanceof Error ? err.name : 'Error';
    const detail = err instanceof Error ? err.message : String(err);
    let hint: string | undefined;
    if (name === 'NoSuchBucket') hint = `bucket ${this.bucket} does not exist: check WALSHIP_STORE`;
    else if (name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch') hint = 'check the AWS credentials of the PostgreSQL OS user';
    else if (status === 403 || name === 'AccessDenied')
      hint = `access denied: ${op} needs ${PERMISSION[op] ?? 'a permission the policy lacks'} on s3://${this.bucket}/${this.prefix} (README: "S3 permissions"); also check the AWS credentials of the PostgreSQL OS user`;
    else if (name === 'CredentialsProviderError') hint = 'no AWS credentials found: set AWS_* variables, a profile, or an instance role';
    else if (err instanceof AttemptTimeoutError) hint = 'the S3 endpoint accepted the request but did not answer in time (stalled or overloaded server, or a slow link: raise WALSHIP_TIMEOUT)';
    else hint = 'the S3 endpoint is unreachable or failing; walship will be retried by PostgreSQL';
    const denied = status === 403 || name === 'AccessDenied' ? ` (access denied: needs ${(PERMISSION[op] ?? 'a permission the policy lacks').split(' (')[0]})` : '';
    const after = retries && retries.reason === 'deadline' ? ` (${retries.message})` : retries && retries.attempts > 1 ? ` (on attempt ${retries.attempts})` : '';
    return new StoreUnavailableError(`${op} ${this.description}${key} failed: ${name}${status ? ` (HTTP ${status})` : ''}${denied}: ${detail}${after}`, {
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
    return this.call('HEAD', key, async (abortSignal) => {
      try {
        const r = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.k(key) }), { abortSignal });
        return { size: r.ContentLength ?? 0, metadata: r.Metadata ?? {} };
      } catch (err) {
        // HEAD has no body, so a missing bucket also reads as a bare 404:
        // callers that must tell them apart read the archive manifest with get.
        if (this.isNotFound(err)) return undefined;
        throw err;
      }
    });
  }

  async get(key: string): Promise<Buffer | undefined> {
    return this.read(key, undefined);
  }

  async getPrefix(key: string, length: number): Promise<Buffer | undefined> {
    return this.read(key, `bytes=0-${length - 1}`);
  }

  /**
   * An explicit range after a HEAD, not a suffix range (`bytes=-N`): some
   * S3-compatible servers (s3rver) answer a suffix longer than the object
   * wrongly. Only verify uses it, once per object.
   */
  async getSuffix(key: string, length: number): Promise<Buffer | undefined> {
    const info = await this.head(key);
    // A HEAD 404 may also be a missing bucket: a GET tells them apart (and throws for the bucket).
    if (!info) return (await this.read(key, 'bytes=0-0')) === undefined ? undefined : this.getSuffix(key, length);
    if (info.size === 0) return Buffer.alloc(0);
    const r = await this.read(key, `bytes=${Math.max(0, info.size - length)}-${info.size - 1}`);
    return r;
  }

  private async read(key: string, range: string | undefined): Promise<Buffer | undefined> {
    return this.call('GET', key, async (abortSignal) => {
      try {
        const r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.k(key), ...(range ? { Range: range } : {}) }), {
          abortSignal,
        });
        // The body streams after the headers: a stall or reset there must
        // fail this attempt too, so the body is read under the same signal.
        const body = r.Body!;
        const onAbort = (): void => (body as unknown as { destroy?: (e?: Error) => void }).destroy?.(abortSignal.reason as Error);
        abortSignal.addEventListener('abort', onAbort, { once: true });
        let bytes: Buffer;
        try {
          bytes = Buffer.from(await body.transformToByteArray());
        } finally {
          abortSignal.removeEventListener('abort', onAbort);
        }
        if (!range && r.ContentLength !== undefined && bytes.length !== r.ContentLength) {
          throw new ShortReadError(`short read: ${bytes.length} of ${r.ContentLength} bytes`);
        }
        return bytes;
      } catch (err) {
        if (this.isNotFound(err)) return undefined;
        if (err instanceof S3ServiceException && err.$metadata.httpStatusCode === 416) return Buffer.alloc(0);
        throw err;
      }
    });
  }

  async putIfAbsent(key: string, body: Buffer, metadata: Readonly<Record<string, string>>): Promise<'created' | 'exists'> {
    const md5 = createHash('md5').update(body).digest('base64');
    if (!noConditionalPut.has(this.endpointKey)) {
      // A retry after an attempt whose answer was lost is safe: If-None-Match
      // makes it 'exists' where the server honours it, and the archive layer
      // compares content before trusting an existing object.
      const r = await this.put(key, body, md5, metadata, true);
      if (r !== 'refused') return r;
      noConditionalPut.add(this.endpointKey);
    }
    // Without the header the server would overwrite: look first. A race
    // between this HEAD and the PUT is left to the archive layer, which
    // compares what is there with what it wrote (as for servers that
    // silently ignore the header).
    if (await this.head(key)) return 'exists';
    await this.put(key, body, md5, metadata, false);
    return 'created';
  }

  /** Whether this process has found the server refusing If-None-Match (for logs and tests). */
  get conditionalPuts(): boolean {
    return !noConditionalPut.has(this.endpointKey);
  }

  private async put(
    key: string,
    body: Buffer,
    md5: string,
    metadata: Readonly<Record<string, string>>,
    conditional: boolean,
  ): Promise<'created' | 'exists' | 'refused'> {
    return this.call('PUT', key, async (abortSignal) => {
      try {
        await this.client.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: this.k(key),
            Body: body,
            ContentLength: body.length,
            ContentMD5: md5,
            ContentType: 'application/octet-stream',
            Metadata: { ...metadata },
            ...(conditional ? { IfNoneMatch: '*' } : {}),
          }),
          { abortSignal },
        );
        return 'created' as const;
      } catch (err) {
        const answer = conditional ? conditionalAnswer(err) : undefined;
        if (answer) return answer;
        throw err;
      }
    });
  }

  /**
   * A body that fits under the threshold is gathered and sent as one PUT
   * (with Content-MD5, retried like putIfAbsent). A larger one, or one whose
   * sizeHint says it will be larger, goes up as a multipart upload, one part
   * in memory at a time, each part with its own Content-MD5 and retried on
   * its own: the source is read once and never replayed.
   */
  async putStreamIfAbsent(
    key: string,
    source: ByteSource,
    sizeHint: number | undefined,
    metadata: Readonly<Record<string, string>>,
  ): Promise<'created' | 'exists'> {
    const it = source[Symbol.asyncIterator]();
    const limit = sizeHint !== undefined && sizeHint > this.multipartThreshold ? this.partBytes : this.multipartThreshold;
    const first = await fill(it, limit);
    if (first.done) return this.putIfAbsent(key, first.data, metadata);
    return this.putMultipart(key, first.data, it, metadata);
  }

  private async putMultipart(
    key: string,
    firstData: Buffer,
    it: AsyncIterator<Buffer>,
    metadata: Readonly<Record<string, string>>,
  ): Promise<'created' | 'exists'> {
    // Look first: no point uploading a gigabyte next to an object that is there.
    if (await this.head(key)) {
      await drain(it);
      return 'exists';
    }
    const created = await this.call('MULTIPART', key, (abortSignal) =>
      this.client.send(
        new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: this.k(key), ContentType: 'application/octet-stream', Metadata: { ...metadata } }),
        { abortSignal },
      ),
    );
    const uploadId = created.UploadId!;
    try {
      const parts: { ETag: string; PartNumber: number }[] = [];
      let pending: Buffer = firstData;
      for (let done = false; ; ) {
        // Cut what was gathered into parts; a short tail waits for more bytes unless the source has ended.
        while (pending.length >= this.partBytes || (done && (pending.length > 0 || parts.length === 0))) {
          const body = pending.subarray(0, Math.min(this.partBytes, pending.length));
          pending = pending.subarray(body.length);
          parts.push(await this.uploadPart(key, uploadId, parts.length + 1, body));
        }
        if (done) break;
        const next = await fill(it, this.partBytes - pending.length);
        pending = pending.length === 0 ? next.data : Buffer.concat([pending, next.data]);
        done = next.done;
      }
      const r = await this.complete(key, uploadId, parts);
      if (r === 'exists') await this.abortUpload(key, uploadId);
      // A kill -9 between Create and Complete leaves an invisible upload
      // that S3 bills for; now and then, sweep those under our prefix.
      if (Math.random() < 1 / 16) await this.sweepStaleUploads(STALE_UPLOAD_MS).catch(() => 0);
      return r;
    } catch (err) {
      await this.abortUpload(key, uploadId);
      throw err;
    }
  }

  private async uploadPart(key: string, uploadId: string, partNumber: number, body: Buffer): Promise<{ ETag: string; PartNumber: number }> {
    const md5 = createHash('md5').update(body).digest('base64');
    const r = await this.call('MULTIPART', key, (abortSignal) =>
      this.client.send(
        new UploadPartCommand({ Bucket: this.bucket, Key: this.k(key), UploadId: uploadId, PartNumber: partNumber, Body: body, ContentLength: body.length, ContentMD5: md5 }),
        { abortSignal },
      ),
    );
    if (!r.ETag) throw this.fail('MULTIPART', key, new Error(`part ${partNumber} was not acknowledged with an ETag`));
    return { ETag: r.ETag, PartNumber: partNumber };
  }

  /** CompleteMultipartUpload with If-None-Match where the server takes it; like put(), without it after a HEAD where not. */
  private async complete(key: string, uploadId: string, parts: readonly { ETag: string; PartNumber: number }[]): Promise<'created' | 'exists'> {
    const send = (conditional: boolean) =>
      this.call('MULTIPART', key, async (abortSignal) => {
        try {
          await this.client.send(
            new CompleteMultipartUploadCommand({
              Bucket: this.bucket,
              Key: this.k(key),
              UploadId: uploadId,
              MultipartUpload: { Parts: [...parts] },
              ...(conditional ? { IfNoneMatch: '*' } : {}),
            }),
            { abortSignal },
          );
          return 'created' as const;
        } catch (err) {
          const answer = conditional ? conditionalAnswer(err) : undefined;
          if (answer) return answer;
          // A retried Complete whose first answer was lost finds the upload gone.
          if (err instanceof S3ServiceException && err.name === 'NoSuchUpload' && (await this.head(key))) return 'exists' as const;
          throw err;
        }
      });
    if (!noConditionalPut.has(this.endpointKey)) {
      const r = await send(true);
      if (r !== 'refused') return r;
      noConditionalPut.add(this.endpointKey);
    }
    if (await this.head(key)) return 'exists';
    const r = await send(false);
    return r === 'refused' ? 'created' : r;
  }

  /** Best effort: a failed abort leaves an upload the next sweep removes. */
  private async abortUpload(key: string, uploadId: string): Promise<void> {
    await this.client
      .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.k(key), UploadId: uploadId }), { abortSignal: AbortSignal.timeout(this.retrier.policy.attemptTimeoutMs) })
      .catch(() => undefined);
  }

  /**
   * Aborts multipart uploads under this store's prefix started more than
   * `maxAgeMs` ago: what a push killed mid-upload leaves behind. Needs
   * s3:ListBucketMultipartUploads and s3:AbortMultipartUpload. Returns how
   * many it aborted.
   */
  async sweepStaleUploads(maxAgeMs: number): Promise<number> {
    let aborted = 0;
    let keyMarker: string | undefined;
    let idMarker: string | undefined;
    do {
      const [km, im] = [keyMarker, idMarker];
      const r = await this.call('LIST-UPLOADS', this.prefix, (abortSignal) =>
        this.client.send(
          new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: this.prefix, ...(km ? { KeyMarker: km } : {}), ...(im ? { UploadIdMarker: im } : {}) }),
          { abortSignal },
        ),
      );
      for (const u of r.Uploads ?? []) {
        if (!u.Key || !u.UploadId || !u.Initiated || Date.now() - u.Initiated.getTime() < maxAgeMs) continue;
        await this.call('MULTIPART', u.Key, (abortSignal) =>
          this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId }), { abortSignal }),
        );
        aborted++;
      }
      keyMarker = r.IsTruncated ? r.NextKeyMarker : undefined;
      idMarker = r.IsTruncated ? r.NextUploadIdMarker : undefined;
    } while (keyMarker);
    return aborted;
  }

  /**
   * GetObject, handed over as the body arrives. Retries cover the request up
   * to the response headers; after that a broken or short transfer errors
   * the stream (as StoreUnavailableError), and the caller starts again.
   */
  async getStream(key: string): Promise<Readable | undefined> {
    const r = await this.call('GET', key, async (abortSignal) => {
      try {
        return await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.k(key) }), { abortSignal });
      } catch (err) {
        if (this.isNotFound(err)) return undefined;
        throw err;
      }
    });
    if (!r) return undefined;
    const body = r.Body as Readable;
    const expected = r.ContentLength;
    let seen = 0;
    const out = new PassThrough({ highWaterMark: 1 << 20 });
    body.on('data', (c: Buffer) => {
      seen += c.length;
      if (!out.write(c)) {
        body.pause();
        out.once('drain', () => body.resume());
      }
    });
    body.on('end', () => {
      if (expected !== undefined && seen !== expected) out.destroy(this.fail('GET', key, new ShortReadError(`short read: ${seen} of ${expected} bytes`)));
      else out.end();
    });
    body.on('error', (err) => out.destroy(this.fail('GET', key, err)));
    out.on('close', () => body.destroy());
    return out;
  }

  /** An object S3 has answered 200 for is durable: nothing to do. */
  async makeDurable(_key: string): Promise<void> {}

  async *list(prefix: string): AsyncIterable<ListedObject> {
    let token: string | undefined;
    do {
      const page = token;
      const r = await this.call('LIST', prefix, (abortSignal) =>
        this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.k(prefix), ...(page ? { ContinuationToken: page } : {}) }),
          { abortSignal },
        ),
      );
      for (const o of r.Contents ?? []) {
        // A listing without a date is treated as brand new: prune keeps it.
        if (o.Key) yield { key: o.Key.slice(this.prefix.length), size: o.Size ?? 0, lastModified: o.LastModified ?? new Date() };
      }
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
  }

  async delete(key: string): Promise<void> {
    await this.call('DELETE', key, (abortSignal) => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.k(key) }), { abortSignal }));
  }

  /**
   * DeleteObjects, 1000 keys per request, in the order given. Keys the
   * server reports as failed with a transient error are retried under the
   * same policy; any other per-key error fails the call, naming the keys.
   */
  async deleteMany(keys: readonly string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      let pending = keys.slice(i, i + DELETE_BATCH);
      await this.call('DELETE', `${pending[0]} … (${pending.length} keys)`, async (abortSignal) => {
        const r = await this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.bucket,
            Delete: { Objects: pending.map((k) => ({ Key: this.k(k) })), Quiet: true },
          }),
          { abortSignal },
        );
        const errors = (r.Errors ?? []).filter((e) => e.Key !== undefined);
        if (errors.length === 0) return;
        pending = errors.map((e) => e.Key!.slice(this.prefix.length));
        const transient = errors.every((e) => e.Code !== undefined && TRANSIENT_NAMES.has(e.Code));
        const first = errors[0]!;
        const err = new Error(`${errors.length} of the keys were not deleted, e.g. ${first.Key}: ${first.Code ?? '?'} ${first.Message ?? ''}`.trim());
        err.name = transient ? 'SlowDown' : first.Code ?? 'DeleteError';
        throw err;
      });
    }
  }
}

/** Reads from `it` until `limit` bytes are gathered or it ends. */
async function fill(it: AsyncIterator<Buffer>, limit: number): Promise<{ data: Buffer; done: boolean }> {
  const pieces: Buffer[] = [];
  let n = 0;
  while (n < limit) {
    const r = await it.next();
    if (r.done) return { data: Buffer.concat(pieces, n), done: true };
    pieces.push(r.value);
    n += r.value.length;
  }
  return { data: Buffer.concat(pieces, n), done: false };
}

/** Consumes the rest of a source we no longer need, so its producer is not left waiting. */
async function drain(it: AsyncIterator<Buffer>): Promise<void> {
  await it.return?.();
}
