import { createHash } from 'node:crypto';
import type { ManifestChecksumAlgorithm } from './file-checksum.js';

/**
 * PostgreSQL's backup_manifest, version 1 (the format pg_basebackup writes
 * and pg_verifybackup reads): one line per file with its size, time and
 * checksum (file-checksum.ts), the WAL range the backup needs, and a SHA256 of everything before
 * the "Manifest-Checksum" key. The non-exclusive backup API writes none, so
 * walship writes it itself while it reads the files; a restored directory
 * can then be checked with `pg_verifybackup -n`.
 */
export interface ManifestFile {
  readonly path: string;
  readonly size: number;
  /** Seconds since the epoch. */
  readonly mtime: number;
  readonly algorithm: ManifestChecksumAlgorithm;
  /** Of the bytes stored, as backup_manifest spells it. */
  readonly checksum: string;
}

export interface WalRange {
  readonly timeline: number;
  readonly startLsn: string;
  readonly endLsn: string;
}

function gmt(seconds: number): string {
  return `${new Date(seconds * 1000).toISOString().slice(0, 19).replace('T', ' ')} GMT`;
}

export function renderManifest(files: readonly ManifestFile[], wal: WalRange): Buffer {
  const lines = [
    '{ "PostgreSQL-Backup-Manifest-Version": 1,',
    '"Files": [',
    files
      .map(
        (f) =>
          `{ "Path": ${JSON.stringify(f.path)}, "Size": ${f.size}, "Last-Modified": "${gmt(f.mtime)}", "Checksum-Algorithm": "${f.algorithm}", "Checksum": "${f.checksum}" }`,
      )
      .join(',\n'),
    '],',
    '"WAL-Ranges": [',
    `{ "Timeline": ${wal.timeline}, "Start-LSN": "${wal.startLsn}", "End-LSN": "${wal.endLsn}" }`,
    '],',
    '',
  ];
  const body = lines.join('\n');
  const sum = createHash('sha256').update(body, 'utf8').digest('hex');
  return Buffer.from(`${body}"Manifest-Checksum": "${sum}"}\n`, 'utf8');
}

export class ManifestError extends Error {}

export interface ParsedManifest {
  readonly files: ReadonlyMap<string, { readonly size: number; readonly algorithm: string; readonly checksum: string }>;
  readonly walRanges: readonly WalRange[];
}

/** Parses a manifest and checks its own checksum. */
export function parseManifest(bytes: Buffer): ParsedManifest {
  const text = bytes.toString('utf8');
  const at = text.lastIndexOf('"Manifest-Checksum"');
  if (at < 0) throw new ManifestError('backup_manifest has no Manifest-Checksum');
  let json: {
    'PostgreSQL-Backup-Manifest-Version'?: number;
    Files?: { Path: string; Size: number; 'Checksum-Algorithm'?: string; Checksum?: string }[];
    'WAL-Ranges'?: { Timeline: number; 'Start-LSN': string; 'End-LSN': string }[];
    'Manifest-Checksum'?: string;
  };
  try {
    json = JSON.parse(text) as typeof json;
  } catch (err) {
    throw new ManifestError(`backup_manifest is not valid JSON: ${(err as Error).message}`);
  }
  const sum = createHash('sha256').update(bytes.subarray(0, Buffer.byteLength(text.slice(0, at)))).digest('hex');
  if (json['Manifest-Checksum'] !== sum) throw new ManifestError('backup_manifest fails its own Manifest-Checksum');
  if (json['PostgreSQL-Backup-Manifest-Version'] !== 1 || !Array.isArray(json.Files)) throw new ManifestError('backup_manifest is not version 1');
  const files = new Map<string, { size: number; algorithm: string; checksum: string }>();
  for (const f of json.Files) files.set(f.Path, { size: f.Size, algorithm: f['Checksum-Algorithm'] ?? 'NONE', checksum: f.Checksum ?? '' });
  const walRanges = (json['WAL-Ranges'] ?? []).map((r) => ({ timeline: r.Timeline, startLsn: r['Start-LSN'], endLsn: r['End-LSN'] }));
  return { files, walRanges };
}
