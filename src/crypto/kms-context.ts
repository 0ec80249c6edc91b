import { createHash } from 'node:crypto';

/**
 * The KMS encryption context of walship data keys. KMS binds a wrapped key to
 * its context: Decrypt succeeds only when the caller presents exactly the
 * same pairs, CloudTrail logs them with every call, and key policies can
 * require them (`kms:EncryptionContext:walship:system-identifier`), so a
 * role can be limited to one cluster's archive.
 *
 * The context names the purpose and the database system identifier, which
 * is the identity of an archive (walship.json). It deliberately does not
 * name the bucket or prefix: an archive copied to another bucket or region
 * for disaster recovery must stay readable.
 */

export const CONTEXT_PURPOSE_KEY = 'walship:purpose';
export const CONTEXT_PURPOSE = 'wal-archive';
export const CONTEXT_SYSTEM_KEY = 'walship:system-identifier';

export type EncryptionContext = Readonly<Record<string, string>>;

export function encryptionContext(systemIdentifier: string): EncryptionContext {
  return { [CONTEXT_PURPOSE_KEY]: CONTEXT_PURPOSE, [CONTEXT_SYSTEM_KEY]: systemIdentifier };
}

/** Order-independent form, for comparing and for cache keys. */
export function canonicalContext(ctx: EncryptionContext): string {
  return JSON.stringify(Object.keys(ctx).sort().map((k) => [k, ctx[k]]));
}

export function sameContext(a: EncryptionContext, b: EncryptionContext): boolean {
  return canonicalContext(a) === canonicalContext(b);
}

export function isEncryptionContext(v: unknown): v is EncryptionContext {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string');
}

/** Data key id: names a wrapped data key without revealing anything (16 hex digits). */
export function dataKeyId(wrapped: Buffer): string {
  return createHash('sha256').update('walship data key id\0').update(wrapped).digest('hex').slice(0, 16);
}
