import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, stat } from 'node:fs/promises';
import { KeyError } from '../errors.js';
import { deriveObjectKey, newSalt, SALT_BYTES } from './derive.js';
import type { KeyContext, KeyDescriptor, KeyProvider, ObjectKey } from './types.js';

/**
 * Local key files. A key file holds one 256-bit master key; each object is
 * encrypted under its own key, HKDF-SHA256(master, random 32-byte salt), so a
 * (key, nonce) pair never repeats no matter how many processes or hosts push.
 */

const FILE_TAG = 'walship-key-v1';

interface MasterKey {
  readonly id: string;
  readonly key: Buffer;
  readonly path: string;
}

export function keyId(key: Buffer): string {
  // A hash of the key, not the key: safe to log and to store in headers.
  return createHash('sha256').update('walship key id\0').update(key).digest('hex').slice(0, 16);
}

export function formatKeyFile(key: Buffer): string {
  return (
    '# walship encryption key. Keep it secret and keep a copy: without it the\n' +
    '# archive cannot be read. Mode must stay 0600.\n' +
    `${FILE_TAG} ${keyId(key)} ${key.toString('base64')}\n`
  );
}

export async function createKeyFile(path: string): Promise<string> {
  const key = randomBytes(32);
  let fh;
  try {
    // 'wx' refuses to overwrite: replacing a key file would orphan the archive.
    fh = await open(path, 'wx', 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new KeyError(
      code === 'EEXIST' ? `key file ${path} already exists; walship never overwrites a key` : `cannot create key file ${path} (${code})`,
    );
  }
  try {
    await fh.writeFile(formatKeyFile(key));
    await fh.sync();
  } finally {
    await fh.close();
  }
  return keyId(key);
}

export async function readKeyFile(path: string): Promise<MasterKey> {
  let text: string;
  try {
    const st = await stat(path);
    if ((st.mode & 0o077) !== 0) {
      throw new KeyError(`key file ${path} is readable by others (mode ${(st.mode & 0o777).toString(8)})`, {
        hint: `chmod 600 ${path}`,
      });
    }
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (err instanceof KeyError) throw err;
    throw new KeyError(`cannot read key file ${path} (${(err as NodeJS.ErrnoException).code ?? err})`, {
      hint: 'WALSHIP_KEY_FILE must be readable by the PostgreSQL OS user',
    });
  }
  const line = text.split('\n').find((l) => l.startsWith(FILE_TAG));
  const parts = line?.trim().split(/\s+/) ?? [];
  const key = parts[2] ? Buffer.from(parts[2], 'base64') : Buffer.alloc(0);
  if (parts.length !== 3 || key.length !== 32 || keyId(key) !== parts[1]) {
    throw new KeyError(`${path} is not a valid walship key file`, { hint: 'create one with: walship key create --file F' });
  }
  return { id: parts[1]!, key, path };
}

export class KeyfileProvider implements KeyProvider {
  private constructor(private readonly keys: readonly MasterKey[]) {}

  /** The first file encrypts new objects; all of them can decrypt. */
  static async load(paths: readonly string[]): Promise<KeyfileProvider> {
    return new KeyfileProvider(await Promise.all(paths.map(readKeyFile)));
  }

  get description(): string {
    return `keyfile ${this.keys[0]!.id}`;
  }

  async newObjectKey(): Promise<ObjectKey> {
    const master = this.keys[0]!;
    const salt = newSalt();
    return { key: deriveObjectKey(master.key, salt), descriptor: { provider: 'keyfile', id: master.id, salt: salt.toString('base64') } };
  }

  async objectKeyFor(descriptor: KeyDescriptor, context: KeyContext): Promise<Buffer> {
    if (descriptor.provider !== 'keyfile') throw new KeyError(`${context.file}: not a key file descriptor`, { file: context.file });
    const master = this.keys.find((k) => k.id === descriptor.id);
    if (!master) {
      throw new KeyError(`${context.file} is encrypted with key ${descriptor.id}, which none of WALSHIP_KEY_FILE holds`, {
        file: context.file,
        hint: `add the key file with id ${descriptor.id} to WALSHIP_KEY_FILE (comma-separated)`,
      });
    }
    const salt = Buffer.from(descriptor.salt, 'base64');
    if (salt.length !== SALT_BYTES) throw new KeyError(`${context.file}: malformed key salt in header`, { file: context.file });
    return deriveObjectKey(master.key, salt);
  }
}
