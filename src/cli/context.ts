import { loadConfig, logLevelFromEnv, type Config } from '../config/index.js';
import { keyProviderFor, type KeyProvider } from '../crypto/index.js';
import { createLogger, type Logger } from '../log/index.js';
import { openStore, type Store } from '../store/index.js';
import { reportError } from './report.js';

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

/**
 * The context, or undefined once the reason it cannot be built (a bad
 * setting, an unreadable config file) is logged: the caller exits with
 * EXIT.USAGE, as for a bad argument.
 */
export async function contextOrReport(globals: GlobalOptions, log: Logger): Promise<CommandContext | undefined> {
  try {
    return await commandContext(globals, log);
  } catch (err) {
    reportError(log, err);
    return undefined;
  }
}
