import { createRequire } from 'node:module';

/**
 * The two native addons, loaded on first use: `walship --help` or a
 * `key create` should not pay for them, and a missing platform binary should
 * fail with a message that says so rather than at import time.
 */

interface Lz4 {
  compressFrameSync(data: Buffer, options?: { contentChecksum?: boolean; blockChecksums?: boolean }): Buffer;
  decompressFrameSync(data: Buffer): Buffer;
}
/** An incremental BLAKE3 (the addon's Blake3Hasher): what lets a gigabyte be hashed a chunk at a time. */
export interface Blake3Hasher {
  update(input: Buffer): Blake3Hasher;
  digestBuffer(): Buffer;
}
interface Blake {
  blake3(input: Buffer): Buffer;
  Blake3Hasher: { new (): Blake3Hasher; newKeyed(key: Buffer): Blake3Hasher };
}

const require = createRequire(import.meta.url);
let lz4: Lz4 | undefined;
let blake: Blake | undefined;

function load<T>(name: string): T {
  try {
    return require(name) as T;
  } catch (err) {
    throw new Error(`cannot load native module ${name} (${(err as Error).message}); reinstall walship for this platform`);
  }
}

export function lz4Native(): Lz4 {
  return (lz4 ??= load<Lz4>('lz4-napi'));
}

/**
 * @napi-rs/blake-hash's loader asks process.report for the libc flavour,
 * which costs ~14 ms per process. Try the glibc binary package directly
 * first (on musl its dlopen fails and the generic loader decides).
 */
function loadBlake(): Blake {
  if (process.platform === 'linux' && (process.arch === 'x64' || process.arch === 'arm64')) {
    try {
      return require(`@napi-rs/blake-hash-linux-${process.arch}-gnu`) as Blake;
    } catch {
      // fall through to the package's own loader
    }
  }
  return load<Blake>('@napi-rs/blake-hash');
}

export function blake3(data: Buffer): Buffer {
  return (blake ??= loadBlake()).blake3(data);
}

/** BLAKE3, fed piece by piece; with `key` (32 bytes), BLAKE3's keyed mode: a MAC. */
export function blake3Hasher(key?: Buffer): Blake3Hasher {
  const b = (blake ??= loadBlake());
  return key ? b.Blake3Hasher.newKeyed(key) : new b.Blake3Hasher();
}
