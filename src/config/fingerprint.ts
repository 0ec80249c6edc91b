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
export function storeFingerprint(config: Pick<Config, 'store' | 's3' | 'second'>, env: NodeJS.ProcessEnv = process.env): string {
  const endpoint = config.store.kind === 's3' ? (config.s3.endpoint ?? '') : '';
  let text = `walship-store-v1\n${config.store.url}\n${endpoint}\n`;
  // With a second store, what vouches for "archived" also says where else
  // (and whether synchronously): a marker made while the second store was
  // async, or absent, must not answer for a sync configuration.
  const second = config.second;
  if (second) text += `second\n${second.mode}\n${second.config.store.url}\n${second.config.store.kind === 's3' ? (second.config.s3.endpoint ?? '') : ''}\n`;
  // The AWS SDK also finds an endpoint (or a profile naming one) here.
  const sdk = config.store.kind === 's3' ? SDK_ENDPOINT_VARIABLES.map((v) => env[v] ?? '') : [];
  if (sdk.some((v) => v !== '')) text += `aws\n${sdk.join('\n')}\n`;
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/** Environment variables through which the AWS SDK may send S3 requests elsewhere. bin/walship declines its shortcut when any is set. */
export const SDK_ENDPOINT_VARIABLES = ['AWS_ENDPOINT_URL_S3', 'AWS_ENDPOINT_URL', 'AWS_PROFILE', 'AWS_CONFIG_FILE'] as const;
