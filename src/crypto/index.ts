import type { Config } from '../config/index.js';
import { CompositeKeyProvider } from './composite.js';
import { KeyfileProvider } from './keyfile.js';
import { KmsProvider } from './kms.js';
import type { KeyProvider } from './types.js';

export type { KeyContext, KeyDescriptor, KeyProvider, KmsKeyDescriptor, ObjectKey } from './types.js';
export { createKeyFile, KeyfileProvider } from './keyfile.js';
export { CompositeKeyProvider } from './composite.js';
export { KmsProvider, type DataKeyStatus } from './kms.js';

export type KeySettings = Pick<Config, 'encryption' | 'keyFiles' | 'kms' | 'keyCacheDir' | 'timeoutMs'>;

/** The KMS provider the configuration describes (reading needs no key id; writing does). */
export function kmsProviderFor(config: KeySettings, warn?: (message: string) => void): KmsProvider {
  return new KmsProvider({
    keyId: config.kms.keyId,
    trustedKeyIds: trustedKmsKeys(config),
    region: config.kms.region,
    endpoint: config.kms.endpoint,
    timeoutMs: config.timeoutMs,
    spoolDir: config.keyCacheDir,
    cache: config.kms.keyCache,
    rotation: { maxAgeMs: config.kms.rotateAgeMs, maxObjects: config.kms.rotateSegments },
    ...(warn ? { warn } : {}),
  });
}

/**
 * The KMS keys a reader accepts: the configured key and the read list. With
 * encryption off and neither set, undefined (any key: such a reader accepts
 * unencrypted objects, so checking the key would protect nothing).
 */
export function trustedKmsKeys(config: KeySettings): readonly string[] | undefined {
  const keys = [...(config.kms.keyId ? [config.kms.keyId] : []), ...config.kms.readKeyIds];
  return config.encryption === 'none' && keys.length === 0 ? undefined : [...new Set(keys)];
}

/**
 * The key provider for a command: reads objects of every provider that is
 * configured (key files when WALSHIP_KEY_FILE is set; KMS always, since its
 * objects name their key), and writes with WALSHIP_ENCRYPTION's.
 */
export async function keyProviderFor(config: KeySettings, warn?: (message: string) => void): Promise<CompositeKeyProvider> {
  const keyfile = config.keyFiles.length > 0 ? await KeyfileProvider.load(config.keyFiles) : undefined;
  let kms: KmsProvider | undefined;
  const getKms = (): KmsProvider => (kms ??= kmsProviderFor(config, warn));
  const writer: KeyProvider | undefined = config.encryption === 'keyfile' ? keyfile : config.encryption === 'kms' ? getKms() : undefined;
  return new CompositeKeyProvider(writer, { keyfile, kms: getKms });
}
