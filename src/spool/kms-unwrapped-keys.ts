import { createHash } from 'node:crypto';
import { readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from './atomic-file.js';
import { ensurePrivateDir, readPrivateFile } from './private-file.js';

/**
 * Data keys that KMS unwrapped for fetch, so that a replay of thousands of
 * segments (one `walship fetch` process each) asks KMS once per data key
 * rather than once per segment.
 *
 *   kms-keys/<name>.json   mode 0600; <name> is a hash of the wrapped key and
 *                          its encryption context
 *
 * The name covers the context as well as the wrapped key, so a key unwrapped
 * for one archive never answers for an object that claims another context:
 * the check KMS makes is not skipped by the cache. Entries expire after
 * `ttlMs` (WALSHIP_KEY_ROTATE_AGE), which bounds how long a revoked
 * kms:Decrypt permission keeps working on this host; expired entries are
 * deleted whenever a new one is written. Damaged or non-private entries are
 * ignored (that only costs a KMS call).
 */

const DIR = 'kms-keys';
const TAG = 'walship-kms-unwrapped-key';

export class UnwrappedKeyCache {
  readonly dir: string;

  constructor(
    spoolDir: string,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.dir = join(spoolDir, DIR);
  }

  private entry(wrapped: Buffer, canonicalContext: string): { name: string; path: string } {
    const name = createHash('sha256').update('walship unwrapped key\0').update(wrapped).update('\0').update(canonicalContext).digest('hex').slice(0, 40);
    return { name, path: join(this.dir, `${name}.json`) };
  }

  async get(wrapped: Buffer, canonicalContext: string): Promise<Buffer | undefined> {
    const { name, path } = this.entry(wrapped, canonicalContext);
    const r = await readPrivateFile(path);
    if (r.status !== 'ok') return undefined;
    try {
      const s = JSON.parse(r.bytes.toString('utf8')) as { walship?: string; name?: string; plaintext?: string; createdAt?: string; check?: string };
      if (s.walship !== TAG || s.name !== name || typeof s.plaintext !== 'string' || typeof s.createdAt !== 'string') return undefined;
      if (s.check !== check(name, s.plaintext, s.createdAt)) return undefined;
      const created = Date.parse(s.createdAt);
      const age = this.now() - created;
      if (!Number.isFinite(created) || age < -60_000 || age >= this.ttlMs) return undefined;
      const key = Buffer.from(s.plaintext, 'base64');
      return key.length === 32 ? key : undefined;
    } catch {
      return undefined;
    }
  }

  async put(wrapped: Buffer, canonicalContext: string, plaintext: Buffer): Promise<void> {
    await ensurePrivateDir(this.dir);
    const { name, path } = this.entry(wrapped, canonicalContext);
    const createdAt = new Date(this.now()).toISOString();
    const b64 = plaintext.toString('base64');
    await writeFileAtomic(path, JSON.stringify({ walship: TAG, name, plaintext: b64, createdAt, check: check(name, b64, createdAt) }), { mode: 0o600 });
    await this.prune();
  }

  /** Deletes expired entries (by modification time). */
  async prune(): Promise<void> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const cutoff = this.now() - this.ttlMs;
    for (const n of names) {
      const p = join(this.dir, n);
      const st = await stat(p).catch(() => undefined);
      if (st && st.mtimeMs < cutoff) await unlink(p).catch(() => undefined);
    }
  }
}

function check(name: string, plaintext: string, createdAt: string): string {
  return createHash('sha256').update(`${TAG}\0${name}\0${plaintext}\0${createdAt}`).digest('hex');
}
