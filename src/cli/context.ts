import { loadConfig, logLevelFromEnv, pinStore, type Config } from '../config/index.js';
import { ConfigError } from '../errors.js';
import { keyProviderFor, type KeyProvider } from '../crypto/index.js';
import { UnloadableKeys } from '../crypto/unloadable.js';
import { createLogger, type Logger } from '../log/index.js';
import { openStore, type Store } from '../store/index.js';
import { reportError } from './report.js';

export interface GlobalOptions {
  readonly config?: string;
  /** --store N: the first or the second store alone. */
  readonly store?: string;
}

export interface CommandContext {
  readonly config: Config;
  readonly store: Store;
  /** Key provider for reading (every configured provider) and, unless WALSHIP_ENCRYPTION=none, writing. */
  readonly keys: KeyProvider | undefined;
  /** The second store (WALSHIP_STORE2) with its own keys; undefined with one store or with --store. */
  readonly second: StoreTarget | undefined;
}

/** One store with the keys its copies are encoded under. */
export interface StoreTarget {
  readonly config: Config;
  readonly store: Store;
  readonly keys: KeyProvider | undefined;
}

/** The configuration, narrowed to one store by --store. */
export function configFor(globals: GlobalOptions): Config {
  const config = loadConfig({ configFile: globals.config });
  if (globals.store === undefined) return config;
  if (globals.store !== '1' && globals.store !== '2') throw new ConfigError(`--store ${globals.store} is invalid: expected 1 or 2`);
  return pinStore(config, globals.store === '1' ? 1 : 2);
}

/** The logger exists before the configuration so that a bad configuration is logged too. */
export function commandLogger(command: string): Logger {
  return createLogger(command, logLevelFromEnv());
}

export async function commandContext(globals: GlobalOptions, log: Logger): Promise<CommandContext> {
  const config = configFor(globals);
  log.level = config.logLevel;
  const warn = (message: string) => log.warn(message);
  const [first, second] = await Promise.all([openTarget(config, warn), config.second ? openSecondTarget(config.second.config, warn) : undefined]);
  return { ...first, second };
}

/**
 * The second store, whose keys may fail to load without stopping what the
 * first store alone can do: each use of its keys then fails with why.
 */
async function openSecondTarget(config: Config, warn: (message: string) => void): Promise<StoreTarget> {
  const store = await openStore(config);
  const keys = await keyProviderFor(config, warn).catch((err: unknown) => new UnloadableKeys(`the second store ${store.description}`, err));
  return { config, store, keys };
}

async function openTarget(config: Config, warn: (message: string) => void): Promise<StoreTarget> {
  const [store, keys] = await Promise.all([openStore(config), keyProviderFor(config, warn)]);
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
