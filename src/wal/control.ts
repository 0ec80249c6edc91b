import { open } from 'node:fs/promises';

/**
 * The system identifier from global/pg_control: the first field of
 * ControlFileData. fetch reads it from the data directory it restores into so
 * that a segment of another cluster is never handed to PostgreSQL.
 * Returns undefined when there is no readable pg_control (pg_rewind's target,
 * an operator running fetch by hand elsewhere).
 */
export async function readControlSystemIdentifier(dataDir: string): Promise<string | undefined> {
  let fh;
  try {
    fh = await open(`${dataDir}/global/pg_control`, 'r');
  } catch {
    return undefined;
  }
  try {
    const buf = Buffer.alloc(8);
    const { bytesRead } = await fh.read(buf, 0, 8, 0);
    if (bytesRead < 8) return undefined;
    const id = buf.readBigUInt64LE(0);
    return id === 0n ? undefined : id.toString();
  } finally {
    await fh.close();
  }
}
