import { loadConfig, logLevelFromEnv, type Config } from '../config/index.js';
import { keyProviderFor, type KeyProvider } from '../crypto/index.js';
import { createLogger, type Logger } from '../log/index.js';
import { openStore, type Store } from '../store/index.js';

export interface GlobalOptions {
  readonly config?: string;
}

export interface CommandContext {
  readonly config: Config;
  readonly store: Store;
  /** Key provider for reading (every configured provider) and, unless WALSHIP_ENCRYPTION=none, writing. */
  readonly keys: KeyProvider | undefined;
}

/** The logger exists before the configuration so that a bad configuration is logged too. */
export function commandLogger(command: string): Logger {
  return createLogger(command, logLevelFromEnv());
}

export async function commandContext(globals: GlobalOptions, log: Logger): Promise<CommandContext> {
  const config = loadConfig({ configFile: globals.config });
  log.level = config.logLevel;
  const [store, keys] = await Promise.all([openStore(config), keyProviderFor(config, (message) => log.warn(message))]);
  return { config, store, keys };
}
