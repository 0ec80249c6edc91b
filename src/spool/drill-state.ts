import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from './atomic-file.js';

/**
 * What `walship drill` leaves for `walship metrics`, like backup-state.json:
 * counts by outcome and the newest successful drill's measurements. One
 * small JSON file in the cluster's spool directory, replaced atomically
 * (read-modify-write without a lock: drills run monthly, one at a time).
 */
export interface DrillState {
  readonly v: 1;
  readonly runs: { readonly success: number; readonly failure: number; readonly error: number };
  readonly lastSuccess?: {
    /** ms since the epoch: when the drill finished. */
    readonly at: number;
    readonly backupId: string;
    readonly rtoSeconds: number;
    /** Absent for targets without a time (a restore point, an LSN). */
    readonly targetAccuracySeconds?: number;
  };
}

/** success: the archive restored; failure: it did not (exit 1); error: the drill could not run (exit 3). */
export type DrillRunOutcome = keyof DrillState['runs'];

export const DRILL_STATE_FILE = 'drill-state.json';

const EMPTY: DrillState = { v: 1, runs: { success: 0, failure: 0, error: 0 } };

export async function readDrillState(clusterDir: string): Promise<DrillState> {
  let text: string;
  try {
    text = await readFile(join(clusterDir, DRILL_STATE_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return EMPTY;
    throw err;
  }
  const s = JSON.parse(text) as DrillState;
  if (s.v !== 1 || typeof s.runs !== 'object' || !Number.isSafeInteger(s.runs.success)) throw new Error(`${DRILL_STATE_FILE} has an unknown shape`);
  return s;
}

export async function recordDrill(clusterDir: string, outcome: DrillRunOutcome, success?: NonNullable<DrillState['lastSuccess']>): Promise<void> {
  const before = await readDrillState(clusterDir).catch(() => EMPTY);
  const next: DrillState = {
    ...before,
    runs: { ...before.runs, [outcome]: (before.runs[outcome] ?? 0) + 1 },
    ...(success ? { lastSuccess: success } : {}),
  };
  await writeFileAtomic(join(clusterDir, DRILL_STATE_FILE), `${JSON.stringify(next)}\n`, { durable: true, mode: 0o600 });
}
