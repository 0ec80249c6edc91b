import { createHash, type Hash } from 'node:crypto';
import { createRequire } from 'node:module';
import { endianness } from 'node:os';

/**
 * The per-file checksums of backup_manifest, in the two algorithms walship
 * meets there: CRC32C, which it writes (as pg_basebackup does by default),
 * and SHA256, which walship wrote before 2026-12-02 and which older backups
 * still carry.
 *
 * Why CRC32C: the per-file checksum guards against a restored file that
 * differs from the one read (pg_verifybackup's job); each part is already
 * authenticated end to end by BLAKE3 (and AES-GCM when encrypted). SHA256
 * cost ~1 CPU s per GB in `walship backup` and ~1 s per GB again in the
 * restore's pg_verifybackup; CRC32C costs a quarter to a third of that
 * (measured 2026-12-02, native-bench/results/manifest-crc32c-2026-12-02.md).
 */
export type ManifestChecksumAlgorithm = 'CRC32C' | 'SHA256';

/** What new backups write. */
export const MANIFEST_CHECKSUM: ManifestChecksumAlgorithm = 'CRC32C';

export interface FileChecksum {
  update(piece: Buffer): void;
  /** The checksum as backup_manifest spells it. */
  hex(): string;
}

interface Crc32Addon {
  crc32c(input: Uint8Array, initialState?: number): number;
}
let addon: Crc32Addon | undefined;

/** Loaded on first use, like the codec's addons: `walship --help` or a push never pays for it. */
function crc32Addon(): Crc32Addon {
  if (addon) return addon;
  try {
    addon = createRequire(import.meta.url)('@node-rs/crc32') as Crc32Addon;
    return addon;
  } catch (err) {
    throw new Error(`cannot load native module @node-rs/crc32 (${(err as Error).message}); reinstall walship for this platform`);
  }
}

/**
 * PostgreSQL's pg_checksum_final copies the uint32 CRC into the checksum
 * bytes in the host's byte order and writes those bytes as hex, so
 * CRC32C("PG_VERSION" content) reads differently on a big-endian host.
 * Do the same, so that pg_verifybackup on this host agrees.
 */
function crcHex(crc: number): string {
  const b = Buffer.alloc(4);
  if (endianness() === 'LE') b.writeUInt32LE(crc >>> 0);
  else b.writeUInt32BE(crc >>> 0);
  return b.toString('hex');
}

class Crc32c implements FileChecksum {
  private state = 0;
  private readonly fn = crc32Addon().crc32c;
  update(piece: Buffer): void {
    this.state = this.fn(piece, this.state);
  }
  hex(): string {
    return crcHex(this.state);
  }
}

class Sha256 implements FileChecksum {
  private readonly hash: Hash = createHash('sha256');
  update(piece: Buffer): void {
    this.hash.update(piece);
  }
  hex(): string {
    return this.hash.digest('hex');
  }
}

/** A running checksum in `algorithm`; undefined for one walship cannot compute (the caller says it was not checked). */
export function fileChecksum(algorithm: string): FileChecksum | undefined {
  if (algorithm === 'CRC32C') return new Crc32c();
  if (algorithm === 'SHA256') return new Sha256();
  return undefined;
}

/** Both, for a file read before the manifest that says which one counts (the last part's small files). */
export function bothChecksums(): { update(piece: Buffer): void; hex(algorithm: string): string | undefined } {
  const crc = new Crc32c();
  const sha = new Sha256();
  let done: { crc: string; sha: string } | undefined;
  return {
    update(piece) {
      crc.update(piece);
      sha.update(piece);
    },
    hex(algorithm) {
      done ??= { crc: crc.hex(), sha: sha.hex() };
      return algorithm === 'CRC32C' ? done.crc : algorithm === 'SHA256' ? done.sha : undefined;
    },
  };
}
