import { randomBytes } from 'node:crypto';
import { StoreUnavailableError } from '../errors.js';
import type { Store } from './types.js';

/**
 * Which S3 permissions the configured credentials have on the archive's
 * prefix, found by trying each with a probe object, for `walship init` and
 * `walship status`. The probe lives under `.walship-probe/` (the archive
 * layout never lists it) and is deleted at the end.
 *
 * Only an "access denied" answer counts as a missing permission; any other
 * failure (unreachable endpoint, missing bucket) is thrown, because it says
 * nothing about the policy.
 */
export type S3Permission = 's3:PutObject' | 's3:GetObject' | 's3:ListBucket' | 's3:DeleteObject';

export interface PermissionCheck {
  readonly permission: S3Permission;
  /** 'unchecked': an earlier step failed, so this one could not be tried (e.g. no probe object to read). */
  readonly result: 'granted' | 'denied' | 'unchecked';
  /** What was tried, and the store's answer when denied. */
  readonly detail: string;
}

export interface PermissionReport {
  readonly store: string;
  readonly checks: readonly PermissionCheck[];
  /** The denied permissions, in the order walship needs them. */
  readonly missing: readonly S3Permission[];
}

export const PROBE_PREFIX = '.walship-probe/';

/** A 403 (AccessDenied) anywhere in the error's cause chain. */
export function isAccessDenied(err: unknown): boolean {
  for (let e = err; e instanceof Error; e = e.cause) {
    const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (status === 403 || e.name === 'AccessDenied') return true;
  }
  return false;
}

export async function checkS3Permissions(store: Store): Promise<PermissionReport> {
  const probe = `${PROBE_PREFIX}${Date.now()}-${randomBytes(6).toString('hex')}`;
  const checks: PermissionCheck[] = [];
  /** Runs one step: true if granted, false if denied; anything else is thrown. */
  const step = async (permission: S3Permission, what: string, run: () => Promise<string | undefined>): Promise<boolean> => {
    try {
      const problem = await run();
      if (problem !== undefined) {
        checks.push({ permission, result: 'denied', detail: `${what}: ${problem}` });
        return false;
      }
      checks.push({ permission, result: 'granted', detail: what });
      return true;
    } catch (err) {
      if (!(err instanceof StoreUnavailableError) || !isAccessDenied(err)) throw err;
      checks.push({ permission, result: 'denied', detail: `${what}: ${err.message}` });
      return false;
    }
  };

  const body = Buffer.from(`walship permission probe ${probe}\n`);
  const wrote = await step('s3:PutObject', `PUT ${probe}`, async () => {
    await store.putIfAbsent(probe, body, {});
    return undefined;
  });
  let read = false;
  if (wrote) {
    read = await step('s3:GetObject', `GET ${probe}`, async () => {
      const got = await store.get(probe);
      return got?.equals(body) ? undefined : 'the object just written did not read back';
    });
  } else {
    checks.push({ permission: 's3:GetObject', result: 'unchecked', detail: 'no probe object (PUT was denied)' });
  }
  // Without s3:ListBucket, S3 answers 403 instead of 404 for a missing key,
  // and fetch could not tell "not archived" from "not allowed": both the
  // listing and the answer for an absent key are checked (the latter only
  // with s3:GetObject, which HEAD needs as well).
  await step('s3:ListBucket', `LIST ${PROBE_PREFIX}${read ? ' and HEAD of a key that does not exist' : ''}`, async () => {
    for await (const _ of store.list(PROBE_PREFIX)) break;
    if (!read) return undefined;
    return (await store.head(`${probe}.absent`)) === undefined ? undefined : 'a key never written reads as present';
  });
  if (wrote) {
    await step('s3:DeleteObject', `DELETE ${probe}`, async () => {
      await store.deleteMany([probe]);
      return undefined;
    });
  } else {
    checks.push({ permission: 's3:DeleteObject', result: 'unchecked', detail: 'no probe object (PUT was denied)' });
  }
  return { store: store.description, checks, missing: checks.filter((c) => c.result === 'denied').map((c) => c.permission) };
}
