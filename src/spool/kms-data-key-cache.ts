import { createHash } from 'node:crypto';
import { open, readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from './atomic-file.js';
import { ensurePrivateDir, readPrivateFile } from './private-file.js';

/**
 * The current KMS data key, shared by the walship processes of one host.
 *
 * PostgreSQL starts one `walship push` per segment; asking KMS for a data key
 * in each would cost a KMS call (latency, money, throttling) per segment.
 * Instead the data key KMS generated is kept here, plaintext and wrapped,
 * until it is rotated:
 *
 *   kms-data-key-<S>.json        the key, mode 0600, replaced atomically (rename)
 *   kms-data-key-<S>.<id>.uses   one byte appended per object encrypted with it:
 *                                O_APPEND writes are atomic, so concurrent pushes
 *                                count exactly without a lock
 *   kms-data-key-<S>.lock        held (O_EXCL) by the one process that asks KMS
 *                                for a new key, so concurrent pushes make one call
 *
 * <S> is the cluster's system identifier: several clusters on one host may
 * share a spool directory (the postgres user's $HOME), and each has its own
 * data key (its own encryption context), so they must not replace each
 * other's.
 *
 * The file carries a checksum over all its fields: a damaged file (a torn
 * write, a flipped bit) is ignored instead of encrypting WAL with a key that
 * does not match its wrapped form, which would make that WAL unreadable. A
 * file that is not private (see private-file.ts) is ignored too. Ignoring the
 * cache is always safe: it only costs a KMS call.
 */

export interface CachedDataKey {
  /** WALSHIP_KMS_KEY_ID as configured when the key was made (an alias, id or ARN). */
  readonly configuredKeyId: string;
  /** The KMS key's ARN, as KMS reported it. */
  readonly keyArn: string;
  readonly context: Readonly<Record<string, string>>;
  readonly plaintext: Buffer;
  readonly wrapped: Buffer;
  /** Data key id (hash of wrapped), also in every object header. */
  readonly id: string;
  /** Milliseconds since the epoch. */
  readonly createdAt: number;
}

export type CacheRead =
  | { readonly status: 'ok'; readonly key: CachedDataKey; readonly uses: number }
  | { readonly status: 'absent' }
  | { readonly status: 'ignored'; readonly why: string };

const TAG = 'walship-kms-data-key-cache';

interface Stored {
  readonly walship: typeof TAG;
  readonly v: 1;
  readonly configuredKeyId: string;
  readonly keyArn: string;
  readonly context: Readonly<Record<string, string>>;
  readonly id: string;
  readonly plaintext: string;
  readonly wrapped: string;
  readonly createdAt: string;
  readonly check: string;
}

function checksum(s: Omit<Stored, 'check'>): string {
  const ctx = Object.keys(s.context)
    .sort()
    .map((k) => [k, s.context[k]]);
  return createHash('sha256')
    .update(JSON.stringify([s.walship, s.v, s.configuredKeyId, s.keyArn, ctx, s.id, s.plaintext, s.wrapped, s.createdAt]))
    .digest('hex');
}

export class DataKeyCache {
  readonly path: string;
  private readonly base: string;

  constructor(
    readonly dir: string,
    /** The system identifier of the cluster whose data key this is. */
    scope: string,
    private readonly opts: { readonly lockStaleMs?: number } = {},
  ) {
    this.base = `kms-data-key-${scope.replace(/[^0-9A-Za-z_-]/g, '_')}`;
    this.path = join(dir, `${this.base}.json`);
  }

  private usesPath(id: string): string {
    return join(this.dir, `${this.base}.${id}.uses`);
  }

  async read(): Promise<CacheRead> {
    const r = await readPrivateFile(this.path);
    if (r.status === 'absent') return r;
    if (r.status === 'untrusted') return { status: 'ignored', why: `${this.path} is not used: ${r.why}` };
    const key = parse(r.bytes);
    if (!key) return { status: 'ignored', why: `${this.path} is damaged (checksum or format)` };
    const uses = await stat(this.usesPath(key.id)).then(
      (st) => st.size,
      () => 0,
    );
    return { status: 'ok', key, uses };
  }

  /** Replaces the cached key (atomically, mode 0600) and drops the use counters of older keys. */
  async write(key: CachedDataKey): Promise<void> {
    await ensurePrivateDir(this.dir);
    const body: Omit<Stored, 'check'> = {
      walship: TAG,
      v: 1,
      configuredKeyId: key.configuredKeyId,
      keyArn: key.keyArn,
      context: key.context,
      id: key.id,
      plaintext: key.plaintext.toString('base64'),
      wrapped: key.wrapped.toString('base64'),
      createdAt: new Date(key.createdAt).toISOString(),
    };
    await writeFileAtomic(this.path, `${JSON.stringify({ ...body, check: checksum(body) })}\n`, { mode: 0o600, durable: true });
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const keep = `${this.base}.${key.id}.uses`;
    await Promise.all(
      names.filter((n) => n.startsWith(`${this.base}.`) && n.endsWith('.uses') && n !== keep).map((n) => unlink(join(this.dir, n)).catch(() => undefined)),
    );
  }

  /** Counts one object encrypted with `id`. */
  async recordUse(id: string): Promise<void> {
    const fh = await open(this.usesPath(id), 'a', 0o600);
    try {
      await fh.write(Buffer.from('.'));
    } finally {
      await fh.close();
    }
  }

  /**
   * Takes the generation lock, or returns undefined when another process
   * holds it. A lock older than lockStaleMs (its holder died) is broken.
   */
  async tryLock(): Promise<(() => Promise<void>) | undefined> {
    await ensurePrivateDir(this.dir);
    const path = join(this.dir, `${this.base}.lock`);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fh = await open(path, 'wx', 0o600);
        await fh.write(`${process.pid} ${new Date().toISOString()}\n`).finally(() => fh.close());
        return () => unlink(path).catch(() => undefined);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const st = await stat(path).catch(() => undefined);
        if (st && Date.now() - st.mtimeMs < (this.opts.lockStaleMs ?? 60_000)) return undefined;
        await unlink(path).catch(() => undefined);
      }
    }
    return undefined;
  }

  async lockHeld(): Promise<boolean> {
    return stat(join(this.dir, `${this.base}.lock`)).then(
      () => true,
      () => false,
    );
  }
}

function parse(bytes: Buffer): CachedDataKey | undefined {
  let s: Stored;
  try {
    s = JSON.parse(bytes.toString('utf8')) as Stored;
  } catch {
    return undefined;
  }
  if (typeof s !== 'object' || s === null || s.walship !== TAG || s.v !== 1) return undefined;
  const { check, ...body } = s;
  if (
    typeof s.configuredKeyId !== 'string' ||
    typeof s.keyArn !== 'string' ||
    typeof s.context !== 'object' ||
    s.context === null ||
    typeof s.plaintext !== 'string' ||
    typeof s.wrapped !== 'string' ||
    typeof s.id !== 'string' ||
    typeof s.createdAt !== 'string' ||
    check !== checksum(body)
  ) {
    return undefined;
  }
  const plaintext = Buffer.from(s.plaintext, 'base64');
  const wrapped = Buffer.from(s.wrapped, 'base64');
  const createdAt = Date.parse(s.createdAt);
  if (plaintext.length !== 32 || wrapped.length === 0 || !Number.isFinite(createdAt)) return undefined;
  return { configuredKeyId: s.configuredKeyId, keyArn: s.keyArn, context: s.context, plaintext, wrapped, id: s.id, createdAt };
}
