import { describe, expect, it } from 'vitest';
import { bothChecksums, fileChecksum } from '../../src/backup/file-checksum.js';
import { parseManifest, renderManifest } from '../../src/backup/pg-manifest.js';

function sumOf(algorithm: string, ...pieces: string[]): string | undefined {
  const s = fileChecksum(algorithm);
  for (const p of pieces) s?.update(Buffer.from(p));
  return s?.hex();
}

describe('backup_manifest file checksums', () => {
  it('CRC32C is spelled as PostgreSQL spells it: the uint32 in host (little-endian) byte order, as hex', () => {
    // The CRC32C check value of "123456789" is 0xE3069283.
    expect(sumOf('CRC32C', '123456789')).toBe('839206e3');
    // What pg_basebackup --manifest-checksums=CRC32C (PostgreSQL 15.18) wrote for a PG_VERSION holding "15\n".
    expect(sumOf('CRC32C', '15\n')).toBe('8a744722');
  });

  it('is the same whether a file is fed whole or in pieces', () => {
    expect(sumOf('CRC32C', '1234', '56789')).toBe(sumOf('CRC32C', '123456789'));
    expect(sumOf('SHA256', 'ab', 'c')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('knows no other algorithm, so that a caller reports the file as not checked instead of sound', () => {
    expect(fileChecksum('SHA512')).toBeUndefined();
    expect(fileChecksum('NONE')).toBeUndefined();
  });

  it('both at once, for files read before the manifest names the algorithm', () => {
    const b = bothChecksums();
    b.update(Buffer.from('15\n'));
    expect(b.hex('CRC32C')).toBe('8a744722');
    expect(b.hex('SHA256')).toBe(sumOf('SHA256', '15\n'));
    expect(b.hex('MD5')).toBeUndefined();
  });

  it('a rendered manifest carries each file’s algorithm and parses back', () => {
    const m = renderManifest(
      [
        { path: 'PG_VERSION', size: 3, mtime: 1_700_000_000, algorithm: 'CRC32C', checksum: '8a744722' },
        { path: 'global/pg_control', size: 3, mtime: 1_700_000_000, algorithm: 'SHA256', checksum: sumOf('SHA256', '15\n')! },
      ],
      { timeline: 1, startLsn: '0/2000028', endLsn: '0/2000100' },
    );
    const parsed = parseManifest(m);
    expect(parsed.files.get('PG_VERSION')).toEqual({ size: 3, algorithm: 'CRC32C', checksum: '8a744722' });
    expect(parsed.files.get('global/pg_control')?.algorithm).toBe('SHA256');
  });
});
