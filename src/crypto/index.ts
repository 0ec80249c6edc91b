import type { Config } from '../config/index.js';
import { KeyfileProvider } from './keyfile.js';
import type { KeyProvider } from './types.js';

export type { KeyDescriptor, KeyProvider, ObjectKey } from './types.js';
export { createKeyFile, KeyfileProvider } from './keyfile.js';

/**
 * The key provider the configuration asks for, or undefined for no
 * encryption. Fetch needs one whenever the archive holds encrypted objects,
 * so it is built from WALSHIP_KEY_FILE even when new objects are not encrypted.
 */
export async function keyProviderFor(config: Config): Promise<KeyProvider | undefined> {
  if (config.keyFiles.length === 0) return undefined;
  return KeyfileProvider.load(config.keyFiles);
}
