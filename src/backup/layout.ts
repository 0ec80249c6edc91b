import { randomBytes } from 'node:crypto';

/**
 * Where a base backup lives in the store (docs/FORMAT.md, "Base backups"):
 *
 *   backups/<id>/started          plain JSON, written first: who is taking it
 *   backups/<id>/part-000001 …    the parts (walship objects, tar inside)
 *   backups/<id>/descriptor       the descriptor (a walship object), written last
 *
 * A backup is usable exactly when its descriptor is there. The id sorts by
 * start time: <UTC start, to the second>-<4 random bytes>, e.g.
 * 20261201T021500Z-9f3a1c2e.
 */
export const BACKUPS_PREFIX = 'backups/';
const ID = /^\d{8}T\d{6}Z-[0-9a-f]{8}$/;

export function newBackupId(now: Date): string {
  const t = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${t}-${randomBytes(4).toString('hex')}`;
}

export function isBackupId(s: string): boolean {
  return ID.test(s);
}

export const startedKey = (id: string) => `${BACKUPS_PREFIX}${id}/started`;
export const descriptorKey = (id: string) => `${BACKUPS_PREFIX}${id}/descriptor`;
export const partKey = (id: string, n: number) => `${BACKUPS_PREFIX}${id}/part-${String(n).padStart(6, '0')}`;

/**
 * The name in an object's authenticated header: a part or descriptor copied
 * to another backup's key (or another place) is refused on read.
 */
export const descriptorName = (id: string) => `backup ${id} descriptor`;
export const partName = (id: string, n: number) => `backup ${id} part ${n}`;

/** The backup id of a key under backups/, or undefined. */
export function idOfKey(key: string): string | undefined {
  if (!key.startsWith(BACKUPS_PREFIX)) return undefined;
  const id = key.slice(BACKUPS_PREFIX.length).split('/')[0]!;
  return isBackupId(id) ? id : undefined;
}
