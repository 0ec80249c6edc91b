import { createHash } from 'node:crypto';
import type { Config } from './load.js';

/**
 * A short digest of where the resolved configuration sends WAL: the store URL
 * (normalised as parseStoreUrl does) and, for S3, the endpoint. Anything that
 * vouches for "already archived" records it, and is honoured only by a caller
 * whose own configuration gives the same digest: re-pointing
 * WALSHIP_S3_ENDPOINT at another server under the same bucket name, or an
 * agent that sees another environment than PostgreSQL, then never reuses it.
 *
 * bin/walship computes the same digest in sh (store_fingerprint): keep the
 * two in step. Region and path style are left out on purpose: they change how
 * a server is addressed, not which data it holds.
 */
export function storeFingerprint(config: Pick<Config, 'store' | 's3'>): string {
  const endpoint = config.store.kind === 's3' ? (config.s3.endpoint ?? '') : '';
  return createHash('sha256').update(`walship-store-v1\n${config.store.url}\n${endpoint}\n`).digest('hex').slice(0, 16);
}
