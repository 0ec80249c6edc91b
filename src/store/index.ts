import type { Config } from '../config/index.js';
import { FsStore } from './fs.js';
import type { Store } from './types.js';

export type { Store, ObjectInfo, ListedObject, ByteSource } from './types.js';
// No AWS SDK import: it probes through the Store interface.
export { checkS3Permissions, isAccessDenied, PROBE_PREFIX, type PermissionCheck, type PermissionReport, type S3Permission } from './s3-permissions.js';

/** Opens the configured store; the S3 driver (and the AWS SDK) load only when needed. */
export async function openStore(config: Pick<Config, 'store' | 's3' | 'timeoutMs'> & Partial<Pick<Config, 'deadlineMs'>>): Promise<Store> {
  const loc = config.store;
  if (loc.kind === 'file') return new FsStore(loc.dir);
  const { S3Store } = await import('./s3.js');
  return new S3Store({ bucket: loc.bucket, prefix: loc.prefix, s3: config.s3, timeoutMs: config.timeoutMs, deadlineMs: config.deadlineMs });
}
