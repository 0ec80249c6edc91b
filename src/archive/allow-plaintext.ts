import { blake3, MAX_HEADER_BYTES, PROLOGUE_BYTES, readHeader, type StoredHeader } from '../codec/index.js';
import type { KeyProvider } from '../crypto/index.js';
import { ArchiveConflictError, ConfigError, errorMessage } from '../errors.js';
import { readArchived } from '../pipeline/fetch.js';
import {
  ALLOWLIST_KEY,
  decodeAllowList,
  encodeAllowList,
  PlaintextPolicy,
  readAllowList,
  type AllowedPlaintext,
  type PlaintextAllowList,
} from '../pipeline/plaintext-policy.js';
import type { Store } from '../store/index.js';
import { allFiles, takeInventory, type ArchivedFile } from './inventory.js';
import { mapLimit } from './pool.js';

/**
 * `walship key allow-plaintext`: run once, when encryption is turned on for
 * an archive that already holds unencrypted objects. Every plaintext object
 * is read and fully verified (as fetch would), and its name and the BLAKE3
 * of its content go into the allow-list (src/pipeline/plaintext-policy.ts),
 * stored encrypted. Only what is there and sound at that moment is listed.
 */
export interface PlaintextScan {
  readonly store: string;
  readonly systemIdentifier: string;
  /** Sound plaintext objects, by name. */
  readonly files: readonly AllowedPlaintext[];
  /** Plaintext objects that failed verification: never listed. */
  readonly failed: readonly { readonly key: string; readonly name: string; readonly message: string }[];
  /** Objects already encrypted (not listed, not needed). */
  readonly encrypted: number;
  /** The allow-list already in the archive, if any: it is never replaced. */
  readonly existing: PlaintextAllowList | undefined;
}

export async function scanPlaintext(store: Store, keys: KeyProvider | undefined, jobs = 4): Promise<PlaintextScan> {
  if (keys?.encrypts !== true) {
    throw new ConfigError('walship key allow-plaintext records the plaintext objects that existed when encryption was turned on, but WALSHIP_ENCRYPTION is none', {
      hint: 'set WALSHIP_ENCRYPTION=keyfile (with WALSHIP_KEY_FILE) or kms first: the allow-list is stored encrypted with that key',
    });
  }
  const inv = await takeInventory(store);
  const systemIdentifier = inv.manifest.systemIdentifier;
  const existing = await readAllowList(store, keys, systemIdentifier);
  // Reading plaintext objects for the scan itself must not be refused.
  const readAll = new PlaintextPolicy(false, store, keys);
  const files: AllowedPlaintext[] = [];
  const failed: { key: string; name: string; message: string }[] = [];
  let encrypted = 0;
  await mapLimit(allFiles(inv), jobs, async (f) => {
    let header: StoredHeader;
    try {
      header = await headerOf(store, f);
    } catch (err) {
      failed.push({ key: f.key, name: f.file.name, message: `header unreadable: ${errorMessage(err)}` });
      return;
    }
    if (header.encryption !== 'none') {
      encrypted++;
      return;
    }
    try {
      const r = await readArchived({ name: f.file.name, store, keys, retries: 1, plaintext: readAll });
      if (r.status === 'not-found') return; // deleted meanwhile (prune): nothing to allow
      files.push({ name: f.file.name, blake3: blake3(r.data).toString('hex'), rawSize: r.data.length });
    } catch (err) {
      failed.push({ key: f.key, name: f.file.name, message: errorMessage(err) });
    }
  });
  files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  failed.sort((a, b) => (a.key < b.key ? -1 : 1));
  return { store: inv.store, systemIdentifier, files, failed, encrypted, existing };
}

async function headerOf(store: Store, f: ArchivedFile): Promise<StoredHeader> {
  const head = await store.getPrefix(f.key, Math.min(4096, Math.max(f.size, 1)));
  if (head === undefined) throw new Error('deleted while being read');
  try {
    return readHeader(head).header;
  } catch (err) {
    if (f.size <= head.length) throw err;
    // A header longer than the first read (a KMS descriptor): read all it may need.
    const longer = await store.getPrefix(f.key, PROLOGUE_BYTES + MAX_HEADER_BYTES);
    if (longer === undefined) throw new Error('deleted while being read');
    return readHeader(longer).header;
  }
}

/**
 * Stores the allow-list, encrypted, under its fixed key, once. The encoded
 * object is decoded back with the same keys first: a list that the readers
 * cannot authenticate would make every listed object unreadable.
 */
export async function writeAllowList(store: Store, keys: KeyProvider | undefined, scan: PlaintextScan, createdBy: string): Promise<PlaintextAllowList> {
  const list: PlaintextAllowList = {
    walship: 1,
    kind: 'plaintext-allowlist',
    systemIdentifier: scan.systemIdentifier,
    createdAt: new Date().toISOString(),
    createdBy,
    files: scan.files,
  };
  if (keys?.encrypts !== true) throw new ConfigError('the plaintext allow-list is stored encrypted, but WALSHIP_ENCRYPTION is none');
  const bytes = await encodeAllowList(list, keys);
  await decodeAllowList(bytes, keys, scan.systemIdentifier, 'just encoded');
  const r = await store.putIfAbsent(ALLOWLIST_KEY, bytes, { format: '1' });
  if (r === 'exists') {
    throw new ArchiveConflictError(`${store.description}${ALLOWLIST_KEY} appeared while the archive was being scanned; it is never replaced`, {
      key: ALLOWLIST_KEY,
      hint: 'run walship key allow-plaintext --dry-run to see the list now in the archive',
    });
  }
  return list;
}
