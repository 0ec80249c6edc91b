/**
 * A second backup history file under a name that is already archived.
 *
 * PostgreSQL names a backup history file after where its base backup started
 * (do_pg_backup_stop → BackupHistoryFileName: start segment + "." + offset of
 * the start LSN + ".backup"). On a primary it makes that start unique: when
 * two backups would start at the same checkpoint, do_pg_backup_start asks
 * for another one (the lastBackupStart check, "because we use the starting
 * WAL location as a unique identifier ... when we write the backup history
 * file"; tried with PostgreSQL 15: two pg_backup_start calls waiting on one
 * checkpoint got different starts). A standby may give two backups one start
 * but writes no history file. So one name with two contents means two
 * writers on one timeline (a cloned data directory, split brain) or another
 * cluster archiving here: the segments of either conflict loudly on their own.
 *
 * PostgreSQL never asks restore_command for a .backup file: it is
 * informational (walship reads it for list, verify and prune's retention).
 * Refusing it would stop the archiver for good (PostgreSQL retries the same
 * file forever, nothing behind it is archived, pg_wal fills), and replacing
 * the first would lose what it says. So the second is kept next to the
 * first under the name plus "." and the first 16 hex digits of its BLAKE3,
 * with a warning: deterministic, so a re-push of the same file finds it.
 */
const VARIANT = /^(.+\.backup)\.([0-9a-f]{16})$/;

export function backupVariantKey(key: string, blake3Hex: string): string {
  return `${key}.${blake3Hex.slice(0, 16)}`;
}

/** The .backup key a variant key stands beside (undefined if `key` is not a variant). */
export function backupVariantOf(key: string): string | undefined {
  return VARIANT.exec(key)?.[1];
}
