import { parseLsn } from './history.js';

/**
 * Backup history files (`000000010000000000000002.00000028.backup`), which
 * PostgreSQL archives at the end of every base backup taken on a primary
 * (pg_basebackup, pg_backup_stop). walship has no backup catalogue yet;
 * these files are what it knows about base backups.
 */
export interface BackupLabel {
  readonly startLsn: bigint;
  readonly stopLsn: bigint | undefined;
  readonly startTimeline: number | undefined;
  readonly label: string | undefined;
  readonly startTime: string | undefined;
  readonly stopTime: string | undefined;
}

/** Lenient: fields PostgreSQL may add later are ignored; only START WAL LOCATION is required. */
export function parseBackupLabel(content: string): BackupLabel {
  const fields = new Map<string, string>();
  for (const line of content.split('\n')) {
    const i = line.indexOf(': ');
    if (i > 0) fields.set(line.slice(0, i).trim(), line.slice(i + 2).trim());
  }
  const lsnOf = (v: string | undefined): bigint | undefined => {
    const m = v === undefined ? undefined : /^([0-9A-Fa-f]+\/[0-9A-Fa-f]+)/.exec(v);
    return m ? parseLsn(m[1]!) : undefined;
  };
  const startLsn = lsnOf(fields.get('START WAL LOCATION'));
  if (startLsn === undefined) throw new Error('no START WAL LOCATION line: not a backup history file');
  const tli = fields.get('START TIMELINE');
  return {
    startLsn,
    stopLsn: lsnOf(fields.get('STOP WAL LOCATION')),
    startTimeline: tli !== undefined && /^\d+$/.test(tli) ? Number(tli) : undefined,
    label: fields.get('LABEL'),
    startTime: fields.get('START TIME'),
    stopTime: fields.get('STOP TIME'),
  };
}
