/**
 * What an operator should do about a recorded failure, by its stable code
 * (src/errors.ts). The error's own hint, when it has one, is more specific
 * and is shown first; this is the general procedure.
 */
const ADVICE: Readonly<Record<string, string>> = {
  STORE_UNAVAILABLE:
    'the store could not be reached or refused the request: check the network and DNS, credentials (AWS_* variables, ~/.aws or the instance role) and the bucket policy, or for a file store that the directory is mounted and writable by the PostgreSQL OS user. PostgreSQL keeps the WAL and retries (at least every 60 s); pg_wal grows meanwhile, so watch its free space.',
  ARCHIVE_MISSING:
    'there is no walship archive where WALSHIP_STORE points: check the bucket and prefix, or that the directory is mounted (an unmounted NFS directory looks like this).',
  ARCHIVE_CONFLICT:
    'a different file is archived under the same name: two servers archive one timeline into one store (split brain, or a restored copy still archiving). Stop archiving on the server that should not, and never delete archived WAL to make this go away.',
  FOREIGN_CLUSTER: "the store holds another cluster's archive: point WALSHIP_STORE at this cluster's own location.",
  KEY: 'an encryption key is missing or unusable: check WALSHIP_KEY_FILE (it exists, is readable by the PostgreSQL OS user, mode 0600) or the KMS key and its permissions.',
  CONFIG: "a setting is wrong: fix the one the message names (walship.conf or the environment); PostgreSQL's next retry then archives the backlog.",
  INVALID_INPUT:
    "walship refused its input (a path or name PostgreSQL would not pass, or a file that is not a valid WAL file of this cluster): check that archive_command is 'walship push %p' and restore_command 'walship fetch %f %p', and inspect the file the message names; never delete WAL from pg_wal by hand.",
  LOCAL_IO: 'walship could not read the WAL file or write a local file: check permissions and free space on the data directory and the spool directory.',
  OBJECT_CORRUPT: 'an archived object is damaged: keep it for inspection (walship cat NAME), check the storage, and take a new base backup once archiving is healthy again.',
  INTERNAL: 'an unexpected error (a bug): the log line in the PostgreSQL log has the stack trace; please report it.',
};

export function adviceFor(code: string, hint?: string): string {
  const general = ADVICE[code] ?? 'see the message and the PostgreSQL log for details.';
  return hint ? `${hint.replace(/[.\s]+$/, '')}. In general: ${general}` : general;
}
