/**
 * A second backup history file under a name that is already archived.
 *
 * PostgreSQL names a backup history file after where its base backup started
 * (do_pg_backup_stop → BackupHistoryFileName: start segment + "." + offset of
 * the start LSN + ".backup"), and that start is the redo pointer of the
 * checkpoint pg_backup_start waited for. Backups started together share that
 * checkpoint (RequestCheckpoint merges concurrent requests), hence the start
 * LSN, hence the name, while their labels, stop points and times differ.
 * PostgreSQL never asks restore_command for a .backup file: it is
 * informational (walship reads it for list, verify and prune's retention).
 *
 * Refusing the second one as a conflict would stop the archiver for good
 * (PostgreSQL retries the same file forever and pg_wal fills), and replacing
 * the first would lose what it says. So the second is kept next to the
 * first under the name plus "." and the first 16 hex digits of its BLAKE3:
 * deterministic, so a re-push of the same file finds it again.
 */
const VARIANT = /^(.+\.backup)\.([0-9a-f]{16})$/;

export function backupVariantKey(key: string, blake3Hex: string): string {
  return `${key}.${blake3Hex.slice(0, 16)}`;
}

/** The .backup key a variant key stands beside (undefined if `key` is not a variant). */
export function backupVariantOf(key: string): string | undefined {
  return VARIANT.exec(key)?.[1];
}
