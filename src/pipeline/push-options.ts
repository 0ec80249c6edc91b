import type { Config } from '../config/index.js';
import type { KeyProvider } from '../crypto/index.js';
import type { Logger } from '../log/index.js';
import type { Store } from '../store/index.js';
import { CREATED_BY } from '../version.js';
import type { ArchiveManifest } from './manifest.js';
import type { PushOptions } from './push.js';

/**
 * What every archiving caller (push, its look-ahead, the agent's workers)
 * hands the pipeline: the configured codec and keys, and the warnings the
 * pipeline raises through callbacks, worded once.
 */
export function pushOptionsFor(
  config: Pick<Config, 'encryption' | 'compression'>,
  store: Store,
  manifest: ArchiveManifest,
  keys: KeyProvider | undefined,
  log: Logger,
): Omit<PushOptions, 'path'> {
  return {
    store,
    manifest,
    keys: config.encryption === 'none' ? undefined : keys,
    compression: config.compression,
    createdBy: CREATED_BY,
    onIncomplete: (key, size) =>
      log.warn({ key, storedBytes: size }, `replacing ${key}: only ${size} bytes, less than its header declares (an upload that was cut off)`),
    onBackupVariant: (key, variantKey, why) =>
      log.warn(
        { key, variantKey },
        `${why}; keeping this backup history file as ${variantKey} instead of blocking archiving (PostgreSQL never reads .backup files back). PostgreSQL gives each base backup of a primary its own start, so check for a second server archiving this timeline here (a cloned data directory, split brain)`,
      ),
  };
}
