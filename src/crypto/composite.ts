import { KeyError } from '../errors.js';
import type { KeyContext, KeyDescriptor, KeyProvider, ObjectKey } from './types.js';

/**
 * One provider for a whole archive's life. An archive may move from no
 * encryption to key files to KMS; every object says in its header which
 * provider protects it, so reading dispatches on `descriptor.provider`, and
 * every provider that is configured can read. New objects go to `writer`
 * (WALSHIP_ENCRYPTION).
 */
export interface ReadProviders {
  readonly keyfile?: KeyProvider | undefined;
  /** Built on first use: KMS needs no secret configuration to read, but loading it costs. */
  readonly kms: () => KeyProvider;
}

export class CompositeKeyProvider implements KeyProvider {
  constructor(
    private readonly writer: KeyProvider | undefined,
    private readonly readers: ReadProviders,
  ) {}

  get description(): string {
    return this.writer?.description ?? 'none';
  }

  /** True when new objects are encrypted. */
  get encrypts(): boolean {
    return this.writer !== undefined;
  }

  async newObjectKey(context: KeyContext): Promise<ObjectKey> {
    if (!this.writer) throw new KeyError(`cannot encrypt ${context.file}: WALSHIP_ENCRYPTION is none`, { file: context.file });
    return this.writer.newObjectKey(context);
  }

  async objectKeyFor(descriptor: KeyDescriptor, context: KeyContext): Promise<Buffer> {
    const provider = (descriptor as { provider?: unknown }).provider;
    if (provider === 'keyfile') {
      if (!this.readers.keyfile) {
        throw new KeyError(`${context.file} is encrypted with key file key ${descriptor.id}, but WALSHIP_KEY_FILE is not set`, {
          file: context.file,
          hint: `add the key file with id ${descriptor.id} to WALSHIP_KEY_FILE (comma-separated)`,
        });
      }
      return this.readers.keyfile.objectKeyFor(descriptor, context);
    }
    if (provider === 'kms') return this.readers.kms().objectKeyFor(descriptor, context);
    throw new KeyError(`${context.file} is protected by key provider "${String(provider)}", which this walship does not know`, {
      file: context.file,
      hint: 'the object was written by a newer walship: upgrade walship to read it',
    });
  }
}
