import { KeyError } from '../errors.js';
import { DataKeyCache, type CacheRead, type CachedDataKey } from '../spool/kms-data-key-cache.js';
import { UnwrappedKeyCache } from '../spool/kms-unwrapped-keys.js';
import { deriveObjectKey, newSalt, SALT_BYTES } from './derive.js';
import type { KmsApi, KmsKeyInfo } from './kms-api.js';
import {
  canonicalContext,
  CONTEXT_SYSTEM_KEY,
  dataKeyId,
  encryptionContext,
  isEncryptionContext,
  sameContext,
  type EncryptionContext,
} from './kms-context.js';
import { kmsError } from './kms-errors.js';
import type { KeyContext, KeyDescriptor, KeyProvider, KmsKeyDescriptor, ObjectKey } from './types.js';

/**
 * Envelope encryption with AWS KMS.
 *
 * KMS generates a 256-bit data key (GenerateDataKey) bound to an encryption
 * context naming the archive's cluster; walship keeps the plaintext only in
 * memory and in the spool cache, and writes the wrapped form into the header
 * of every object it encrypts. Each object's own key is
 * HKDF(data key, fresh random salt), as with key files, so nonces never
 * repeat. Reading an object needs kms:Decrypt on the wrapping key with the
 * same context, nothing else: objects stay readable after the data key is
 * rotated or WALSHIP_KMS_KEY_ID changes, for as long as their KMS key exists.
 *
 * KMS calls are rare: one GenerateDataKey per rotation (default every 24 h)
 * for all pushing processes of a host, and one Decrypt per data key per
 * restoring host (see spool/kms-*.ts). The SDK is loaded only for those calls.
 */

export interface KmsRotation {
  /** A data key older than this is replaced. */
  readonly maxAgeMs: number;
  /** A data key that has encrypted this many objects is replaced; 0: no limit. */
  readonly maxObjects: number;
}

export interface KmsProviderOptions {
  /** WALSHIP_KMS_KEY_ID: the key new data keys are generated under; undefined when only reading. */
  readonly keyId: string | undefined;
  /**
   * The KMS keys (as configured: id, ARN or alias) whose wrapped data keys
   * this reader accepts. Undefined: any key an object names (a reader with
   * encryption off, which accepts plaintext objects anyway). An object's
   * header is written by whoever can write the store, so the key it names
   * is never trusted on its own word: KMS is asked to unwrap with a trusted
   * key, and refuses (IncorrectKeyException) a data key wrapped by another.
   */
  readonly trustedKeyIds?: readonly string[] | undefined;
  readonly region: string | undefined;
  readonly endpoint: string | undefined;
  readonly timeoutMs: number;
  readonly spoolDir: string;
  /** Keep data keys in the spool directory (WALSHIP_KMS_KEY_CACHE); off: one KMS call per object. */
  readonly cache: boolean;
  readonly rotation: KmsRotation;
  readonly warn?: (message: string) => void;
  /** Tests: a KMS client factory instead of the AWS SDK. */
  readonly api?: (region: string) => KmsApi;
  readonly now?: () => number;
}

export interface DataKeyStatus {
  readonly cache: CacheRead;
  /** True when the cached key is the one the next push would use (same KMS key id setting, fresh). */
  readonly current: boolean;
  /** When the cached key will be replaced, by age. */
  readonly rotateAt: number | undefined;
  /** Objects the cached key may still encrypt (undefined: no limit). */
  readonly objectsLeft: number | undefined;
}

const ARN_REGION = /^arn:aws[a-z-]*:kms:([a-z0-9-]+):/;

export function regionOfKeyArn(keyId: string | undefined): string | undefined {
  return keyId ? ARN_REGION.exec(keyId)?.[1] : undefined;
}

export class KmsProvider implements KeyProvider {
  /** The spool cache of the current data key, per cluster (system identifier). */
  private readonly dataKeyCaches = new Map<string, DataKeyCache>();
  private readonly unwrapped: UnwrappedKeyCache;
  private readonly now: () => number;
  private readonly apis = new Map<string, Promise<KmsApi>>();
  /** The data key this process encrypts with, per context: concurrent pushes in one process share it. */
  private readonly current = new Map<string, Promise<CachedDataKey>>();
  /** Data keys this process generated or unwrapped (wrapped+context → plaintext). */
  private readonly known = new Map<string, Buffer>();

  constructor(private readonly opts: KmsProviderOptions) {
    this.now = opts.now ?? Date.now;
    this.unwrapped = new UnwrappedKeyCache(opts.spoolDir, opts.rotation.maxAgeMs, this.now);
  }

  get description(): string {
    return `kms ${this.opts.keyId ?? '(read only)'}`;
  }

  /** The region new data keys are generated in. */
  get region(): string {
    return this.opts.region ?? regionOfKeyArn(this.opts.keyId) ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
  }

  async newObjectKey(ctx: KeyContext): Promise<ObjectKey> {
    const keyId = this.writingKeyId(ctx.file);
    const context = this.contextFor(ctx);
    const dk = await this.currentKey(keyId, context, ctx.file);
    if (this.opts.cache) await this.cacheFor(context).recordUse(dk.id).catch((err) => this.warn(`cannot count the use of data key ${dk.id}: ${String(err)}`));
    const salt = newSalt();
    const descriptor: KmsKeyDescriptor = {
      provider: 'kms',
      id: dk.id,
      kmsKeyId: dk.keyArn,
      wrapped: dk.wrapped.toString('base64'),
      context: dk.context,
      salt: salt.toString('base64'),
    };
    return { key: deriveObjectKey(dk.plaintext, salt), descriptor };
  }

  async objectKeyFor(descriptor: KeyDescriptor, ctx: KeyContext): Promise<Buffer> {
    const d = checkDescriptor(descriptor, ctx.file);
    const expected = ctx.systemIdentifier !== undefined ? encryptionContext(ctx.systemIdentifier) : d.context;
    if (!sameContext(expected, d.context)) {
      throw new KeyError(
        `${ctx.file} was encrypted for the archive of database system ${d.context[CONTEXT_SYSTEM_KEY] ?? '(unknown)'}, ` +
          `but this archive belongs to system ${ctx.systemIdentifier}: it was copied from another cluster's archive`,
        { file: ctx.file, hint: "walship never restores another cluster's WAL: check WALSHIP_STORE, or remove the foreign object" },
      );
    }
    const plaintext = await this.unwrap(Buffer.from(d.wrapped, 'base64'), expected, d.kmsKeyId, ctx.file);
    return deriveObjectKey(plaintext, Buffer.from(d.salt, 'base64'));
  }

  /** Generates a new data key now, whatever the cache holds (walship key rotate). */
  async rotate(systemIdentifier: string): Promise<CachedDataKey> {
    const keyId = this.writingKeyId(undefined);
    const context = encryptionContext(systemIdentifier);
    const cache = this.cacheFor(context);
    let release = await cache.tryLock();
    for (let waited = 0; !release && waited < this.opts.timeoutMs + 5000; waited += 100) {
      await sleep(100);
      release = await cache.tryLock();
    }
    try {
      const dk = await this.generate(keyId, context, undefined);
      // Unlike a push, a rotation that is not persisted did not happen.
      await cache.write(dk);
      this.current.set(canonicalContext(context), Promise.resolve(dk));
      return dk;
    } finally {
      await release?.();
    }
  }

  /** The cached data key of a cluster's archive on this host (walship key status). */
  async status(systemIdentifier: string): Promise<DataKeyStatus> {
    const cache = await this.cacheFor(encryptionContext(systemIdentifier)).read();
    if (cache.status !== 'ok') return { cache, current: false, rotateAt: undefined, objectsLeft: undefined };
    const { maxAgeMs, maxObjects } = this.opts.rotation;
    return {
      cache,
      current: cache.key.configuredKeyId === this.opts.keyId && this.fresh(cache.key, cache.uses),
      rotateAt: cache.key.createdAt + maxAgeMs,
      objectsLeft: maxObjects > 0 ? Math.max(0, maxObjects - cache.uses) : undefined,
    };
  }

  /** KMS's view of a key (state, pending deletion), for walship key status. */
  async describe(keyId: string): Promise<KmsKeyInfo> {
    const region = this.opts.region ?? regionOfKeyArn(keyId) ?? this.region;
    try {
      return await (await this.api(region)).describeKey(keyId);
    } catch (err) {
      throw kmsError({ op: 'DescribeKey', keyId, region, endpoint: this.opts.endpoint }, err);
    }
  }

  private writingKeyId(file: string | undefined): string {
    if (this.opts.keyId) return this.opts.keyId;
    throw new KeyError(`${file ? `cannot encrypt ${file}: ` : ''}WALSHIP_KMS_KEY_ID is not set`, {
      file,
      hint: 'set WALSHIP_KMS_KEY_ID to the KMS key (id, ARN or alias/NAME) that protects this archive',
    });
  }

  private contextFor(ctx: KeyContext): EncryptionContext {
    if (ctx.systemIdentifier === undefined) {
      throw new KeyError(
        `cannot encrypt ${ctx.file} with KMS: the cluster it belongs to is unknown (the archive has no walship.json yet and there is no global/pg_control in the working directory)`,
        { file: ctx.file, hint: 'archive a WAL segment first, or run walship push from the data directory as archive_command does' },
      );
    }
    return encryptionContext(ctx.systemIdentifier);
  }

  private fresh(key: CachedDataKey, uses: number): boolean {
    const age = this.now() - key.createdAt;
    const { maxAgeMs, maxObjects } = this.opts.rotation;
    // A creation time in the future means the clock went back: do not let that stretch the key's life.
    return age >= -60_000 && age < maxAgeMs && (maxObjects === 0 || uses < maxObjects);
  }

  private usable(r: CacheRead, keyId: string, context: EncryptionContext): r is Extract<CacheRead, { status: 'ok' }> {
    return r.status === 'ok' && r.key.configuredKeyId === keyId && sameContext(r.key.context, context) && r.key.id === dataKeyId(r.key.wrapped);
  }

  private cacheFor(context: EncryptionContext): DataKeyCache {
    const scope = context[CONTEXT_SYSTEM_KEY] ?? 'unknown';
    let c = this.dataKeyCaches.get(scope);
    if (!c) this.dataKeyCaches.set(scope, (c = new DataKeyCache(this.opts.spoolDir, scope)));
    return c;
  }

  private currentKey(keyId: string, context: EncryptionContext, file: string): Promise<CachedDataKey> {
    const k = canonicalContext(context);
    let p = this.current.get(k);
    if (!p) {
      // Remember the plaintext at once: verifying what this process encrypts
      // must not depend on the cache file, which another process may replace.
      p = this.loadOrGenerate(keyId, context, file).then((dk) => {
        this.known.set(knownKey(dk.wrapped, dk.context), dk.plaintext);
        return dk;
      });
      this.current.set(k, p);
      p.catch(() => this.current.delete(k));
    }
    return p;
  }

  private async readCache(cache: DataKeyCache): Promise<CacheRead> {
    const r = await cache.read().catch((err: unknown) => ({ status: 'ignored' as const, why: `cannot read the data key cache: ${String(err)}` }));
    if (r.status === 'ignored') this.warn(`${r.why}; a new data key will be generated`);
    return r;
  }

  private async loadOrGenerate(keyId: string, context: EncryptionContext, file: string): Promise<CachedDataKey> {
    if (!this.opts.cache) return this.generate(keyId, context, file);
    const cache = this.cacheFor(context);
    const first = await this.readCache(cache);
    if (this.usable(first, keyId, context) && this.fresh(first.key, first.uses)) return first.key;
    const deadline = this.now() + this.opts.timeoutMs + 5000;
    for (;;) {
      const release = await cache.tryLock().catch((err: unknown) => {
        this.warn(`cannot lock the data key cache (${String(err)}); generating a key without it`);
        return async () => undefined;
      });
      if (release) {
        try {
          // Another process may have rotated while this one waited for the lock.
          const again = await this.readCache(cache);
          if (this.usable(again, keyId, context) && this.fresh(again.key, again.uses)) return again.key;
          const dk = await this.generate(keyId, context, file);
          await cache.write(dk).catch((err) => this.warn(`cannot write the data key cache ${cache.path}: ${String(err)}`));
          return dk;
        } finally {
          await release();
        }
      }
      // Another process is asking KMS for a new key. A key that is merely due
      // for rotation is still good for this object; with none, wait for it.
      if (this.usable(first, keyId, context)) return first.key;
      if (this.now() > deadline) return this.generate(keyId, context, file);
      await sleep(50);
      const r = await this.readCache(cache);
      if (this.usable(r, keyId, context) && this.fresh(r.key, r.uses)) return r.key;
    }
  }

  private async generate(keyId: string, context: EncryptionContext, file: string | undefined): Promise<CachedDataKey> {
    const region = this.region;
    let g;
    try {
      g = await (await this.api(region)).generateDataKey(keyId, context);
    } catch (err) {
      throw kmsError({ op: 'GenerateDataKey', keyId, region, endpoint: this.opts.endpoint, file }, err);
    }
    const dk: CachedDataKey = {
      configuredKeyId: keyId,
      keyArn: g.keyArn,
      context,
      plaintext: g.plaintext,
      wrapped: g.wrapped,
      id: dataKeyId(g.wrapped),
      createdAt: this.now(),
    };
    this.known.set(knownKey(dk.wrapped, context), dk.plaintext);
    return dk;
  }

  /** The plaintext of a wrapped data key: from this process, the spool caches, or KMS Decrypt under a trusted key. */
  private async unwrap(wrapped: Buffer, context: EncryptionContext, kmsKeyId: string, file: string): Promise<Buffer> {
    const trusted = this.opts.trustedKeyIds;
    // The spool cache's name covers the trusted keys too: a key dropped from
    // WALSHIP_KMS_READ_KEY_IDS stops vouching for what it unwrapped before.
    const canonical = canonicalContext(context) + (trusted ? `\ntrusted ${[...trusted].sort().join(',')}` : '');
    const mem = this.known.get(knownKey(wrapped, context));
    if (mem) return mem;
    if (this.opts.cache) {
      const cur = await this.cacheFor(context).read().catch(() => undefined);
      if (
        cur?.status === 'ok' &&
        cur.key.wrapped.equals(wrapped) &&
        sameContext(cur.key.context, context) &&
        (trusted === undefined || trusted.includes(cur.key.configuredKeyId))
      ) {
        return this.remember(wrapped, context, cur.key.plaintext);
      }
      const hit = await this.unwrapped.get(wrapped, canonical).catch(() => undefined);
      if (hit) return this.remember(wrapped, context, hit);
    }
    const plaintext = trusted === undefined ? await this.decryptAs(wrapped, context, kmsKeyId, file) : await this.decryptTrusted(wrapped, context, kmsKeyId, trusted, file);
    if (this.opts.cache) {
      await this.unwrapped.put(wrapped, canonical, plaintext).catch((err) => this.warn(`cannot cache the unwrapped data key: ${String(err)}`));
    }
    return this.remember(wrapped, context, plaintext);
  }

  /** Decrypt naming the key the object names (where KMS can resolve it). */
  private async decryptAs(wrapped: Buffer, context: EncryptionContext, kmsKeyId: string, file: string): Promise<Buffer> {
    // Name the key only where KMS can resolve it: a multi-region replica in
    // another region decrypts the same ciphertext when no KeyId is given.
    const region = this.opts.region ?? regionOfKeyArn(kmsKeyId) ?? this.region;
    const arnRegion = regionOfKeyArn(kmsKeyId);
    const keyIdForCall = arnRegion === undefined || arnRegion === region ? kmsKeyId : undefined;
    try {
      return await (await this.api(region)).decrypt(wrapped, context, keyIdForCall);
    } catch (err) {
      throw kmsError({ op: 'Decrypt', keyId: kmsKeyId, region, endpoint: this.opts.endpoint, file }, err);
    }
  }

  /**
   * Decrypt with each trusted key in turn (the one the object names first,
   * when it is trusted by that exact name), so that KMS checks the data key
   * was wrapped by it. Only "wrong key" moves on to the next; any other
   * failure (KMS unreachable, access denied) is that failure.
   */
  private async decryptTrusted(wrapped: Buffer, context: EncryptionContext, kmsKeyId: string, trusted: readonly string[], file: string): Promise<Buffer> {
    const order = [...trusted].sort((a, b) => Number(b === kmsKeyId) - Number(a === kmsKeyId));
    for (const ref of order) {
      const region = this.opts.region ?? regionOfKeyArn(ref) ?? this.region;
      try {
        return await (await this.api(region)).decrypt(wrapped, context, ref);
      } catch (err) {
        if ((err as { name?: unknown } | null)?.name === 'IncorrectKeyException') continue;
        throw kmsError({ op: 'Decrypt', keyId: ref, region, endpoint: this.opts.endpoint, file }, err);
      }
    }
    throw new KeyError(
      trusted.length === 0
        ? `${file} is encrypted with a data key wrapped by KMS key ${kmsKeyId}, and no KMS key is trusted for reading (WALSHIP_KMS_KEY_ID and WALSHIP_KMS_READ_KEY_IDS are unset)`
        : `${file} is encrypted with a data key wrapped by KMS key ${kmsKeyId}, which is none of the keys this archive trusts (${trusted.join(', ')}): KMS refused to unwrap it with each of them`,
      {
        file,
        hint:
          'if that key protected this archive before (an earlier WALSHIP_KMS_KEY_ID, or the key an alias pointed to before it was moved), ' +
          'add it to WALSHIP_KMS_READ_KEY_IDS; if not, the object was written by someone else: do not trust it, remove it from the store',
      },
    );
  }

  private remember(wrapped: Buffer, context: EncryptionContext, plaintext: Buffer): Buffer {
    this.known.set(knownKey(wrapped, context), plaintext);
    return plaintext;
  }

  private api(region: string): Promise<KmsApi> {
    let p = this.apis.get(region);
    if (!p) {
      const factory = this.opts.api;
      p = factory
        ? Promise.resolve(factory(region))
        : import('./kms-api.js').then((m) => m.createKmsApi({ region, endpoint: this.opts.endpoint, timeoutMs: this.opts.timeoutMs }));
      this.apis.set(region, p);
    }
    return p;
  }

  private warn(message: string): void {
    this.opts.warn?.(message);
  }
}

function knownKey(wrapped: Buffer, context: EncryptionContext): string {
  return `${wrapped.toString('base64')}\0${canonicalContext(context)}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A kms descriptor as read from a header: every field present and well formed, and the id matching the wrapped key. */
function checkDescriptor(descriptor: KeyDescriptor, file: string): KmsKeyDescriptor {
  const d = descriptor as Partial<KmsKeyDescriptor>;
  const malformed = (what: string): KeyError =>
    new KeyError(`${file}: the KMS key descriptor in its header is malformed (${what})`, {
      file,
      hint: 'the object is damaged or was altered; do not delete it, inspect it with walship cat',
    });
  if (d.provider !== 'kms') throw malformed('not a kms descriptor');
  if (typeof d.kmsKeyId !== 'string' || d.kmsKeyId === '') throw malformed('kmsKeyId');
  if (typeof d.wrapped !== 'string' || Buffer.from(d.wrapped, 'base64').length === 0) throw malformed('wrapped');
  if (!isEncryptionContext(d.context)) throw malformed('context');
  if (typeof d.salt !== 'string' || Buffer.from(d.salt, 'base64').length !== SALT_BYTES) throw malformed('salt');
  if (d.id !== dataKeyId(Buffer.from(d.wrapped, 'base64'))) throw malformed('id does not match the wrapped key');
  return d as KmsKeyDescriptor;
}
