import { errorMessage, KeyError } from '../errors.js';
import type { KeyContext, KeyProvider, ObjectKey } from './types.js';

/**
 * The keys of a store that could not be loaded (a missing or unreadable key
 * file), standing in so that commands which never touch that store still
 * run: a second store's missing key file must not stop archiving into the
 * first store (async) or restores the first store can serve. Every use
 * fails with the reason; it encrypts (so plaintext is refused, as it would
 * be under a configured key).
 */
export class UnloadableKeys implements KeyProvider {
  readonly encrypts = true;

  constructor(
    private readonly which: string,
    private readonly cause: unknown,
  ) {}

  get description(): string {
    return `${this.which}: keys not loaded`;
  }

  private error(context: KeyContext): KeyError {
    return new KeyError(`the keys of ${this.which} cannot be loaded: ${errorMessage(this.cause)}`, {
      file: context.file,
      cause: this.cause,
      hint: "check WALSHIP_STORE2_KEY_FILE / WALSHIP_STORE2_KMS_* (or, when none is set, the first store's key settings, which the second store then uses)",
    });
  }

  newObjectKey(context: KeyContext): Promise<ObjectKey> {
    return Promise.reject(this.error(context));
  }

  objectKeyFor(_descriptor: unknown, context: KeyContext): Promise<Buffer> {
    return Promise.reject(this.error(context));
  }
}
