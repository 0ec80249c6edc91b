import { mkdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { writeFileAtomic } from '../spool/atomic-file.js';
import { HEARTBEAT_STALE_MS, type AgentPaths } from './paths.js';
import type { PrefetchStatus } from './recovery.js';

/** What the agent says about itself in status.json (written atomically). */
export interface AgentStatus {
  readonly pid: number;
  readonly started: string;
  /** .ready files not yet confirmed, in flight excluded. */
  readonly queueDepth: number;
  readonly inFlight: number;
  readonly lastCompleted: { readonly file: string; readonly at: string } | undefined;
  readonly lastError: { readonly file: string; readonly code: string; readonly message: string; readonly at: string } | undefined;
  /** The recovery side (prefetch pool), when the agent serves it. */
  readonly prefetch?: PrefetchStatus | undefined;
  readonly updated: string;
}

export async function writeStatus(paths: AgentPaths, s: AgentStatus): Promise<void> {
  await writeFileAtomic(paths.status, `${JSON.stringify(s)}\n`);
}

export async function readStatus(paths: AgentPaths): Promise<AgentStatus | undefined> {
  try {
    const v = JSON.parse(await readFile(paths.status, 'utf8')) as AgentStatus;
    return typeof v.pid === 'number' && typeof v.queueDepth === 'number' ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Touches the heartbeat file (creates it the first time). */
export async function beat(paths: AgentPaths): Promise<void> {
  const now = new Date();
  try {
    await utimes(paths.heartbeat, now, now);
  } catch {
    await mkdir(paths.dir, { recursive: true, mode: 0o700 });
    await writeFile(paths.heartbeat, '', { flag: 'a', mode: 0o600 });
  }
}

/** Milliseconds since the last heartbeat; undefined when there never was one. */
export async function heartbeatAge(paths: AgentPaths): Promise<number | undefined> {
  const st = await stat(paths.heartbeat).catch(() => undefined);
  return st ? Date.now() - st.mtimeMs : undefined;
}

export function heartbeatStale(ageMs: number | undefined): boolean {
  return ageMs === undefined || ageMs > HEARTBEAT_STALE_MS;
}
