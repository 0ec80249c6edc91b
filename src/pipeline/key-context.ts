import type { Store } from '../store/index.js';
import { readControlSystemIdentifier } from '../wal/index.js';
import { readManifest } from './manifest.js';

/**
 * The cluster an encrypted file that carries no system identifier of its own
 * (a timeline history file, a backup history file) belongs to, for binding
 * its KMS data key: the archive's binding (walship.json), else pg_control in
 * the working directory, which archive_command runs in. Undefined when
 * neither exists; a provider that must bind then refuses to encrypt.
 */
export async function archiveSystemIdentifier(store: Store): Promise<string | undefined> {
  const manifest = await readManifest(store);
  return manifest?.systemIdentifier ?? (await readControlSystemIdentifier(process.cwd()).catch(() => undefined));
}
