import { basename } from 'node:path';
import { MAX_HEADER_BYTES, PROLOGUE_BYTES, readHeader, type StoredHeader } from '../codec/index.js';
import type { Store } from '../store/index.js';
import { isWalName } from '../wal/index.js';

/**
 * Which keys protect an archive's objects: every object under wal/ and
 * history/ is listed and its header read (a ranged read of its first bytes),
 * then objects are grouped by provider, key and data key. This is what
 * `walship key status` shows, so an operator knows which KMS keys and key
 * files must stay available for the archive to be restorable.
 */

export interface KeyGroup {
  readonly provider: 'none' | 'keyfile' | 'kms' | string;
  /** keyfile: the master key id; kms: the KMS key ARN; none: "". */
  readonly key: string;
  /** kms only: the data key id. */
  readonly dataKey: string | undefined;
  objects: number;
  first: string;
  last: string;
}

export interface KeyUsage {
  readonly objects: number;
  readonly groups: readonly KeyGroup[];
  /** Objects whose header could not be read, with the reason. */
  readonly unreadable: readonly { readonly key: string; readonly error: string }[];
}

const FIRST_READ = 4096;

/** An object's header from one ranged read (two when the header is unusually long). */
async function readStoredHeader(store: Store, key: string): Promise<StoredHeader | undefined> {
  let bytes = await store.getPrefix(key, FIRST_READ);
  if (bytes === undefined) return undefined;
  if (bytes.length === FIRST_READ && bytes.length >= PROLOGUE_BYTES) {
    const total = PROLOGUE_BYTES + bytes.readUInt32BE(PROLOGUE_BYTES - 4);
    if (total > FIRST_READ && total <= PROLOGUE_BYTES + MAX_HEADER_BYTES) bytes = (await store.getPrefix(key, total)) ?? bytes;
  }
  return readHeader(bytes).header;
}

export async function archiveKeyUsage(store: Store, opts: { concurrency?: number } = {}): Promise<KeyUsage> {
  const keys: string[] = [];
  for (const prefix of ['wal/', 'history/']) {
    for await (const o of store.list(prefix)) if (isWalName(basename(o.key))) keys.push(o.key);
  }
  keys.sort();
  const headers = new Array<StoredHeader | Error | undefined>(keys.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < keys.length; i = next++) {
      headers[i] = await readStoredHeader(store, keys[i]!).catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))));
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 8) }, worker));

  const groups = new Map<string, KeyGroup>();
  const unreadable: { key: string; error: string }[] = [];
  let objects = 0;
  keys.forEach((key, i) => {
    const h = headers[i];
    if (h === undefined) return; // deleted meanwhile
    if (h instanceof Error) {
      unreadable.push({ key, error: h.message });
      return;
    }
    objects++;
    const d = h.key as { provider?: string; id?: string; kmsKeyId?: string } | undefined;
    const provider = h.encryption === 'none' ? 'none' : (d?.provider ?? 'unknown');
    const group = { provider, key: provider === 'kms' ? (d?.kmsKeyId ?? '') : (d?.id ?? ''), dataKey: provider === 'kms' ? d?.id : undefined };
    const id = `${group.provider}\0${group.key}\0${group.dataKey ?? ''}`;
    const name = basename(key);
    const g = groups.get(id);
    if (!g) groups.set(id, { ...group, objects: 1, first: name, last: name });
    else {
      g.objects++;
      g.last = name;
    }
  });
  return { objects, groups: [...groups.values()], unreadable };
}
