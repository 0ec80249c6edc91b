// The resident agent (WALSHIP_AGENT=on, src/agent/) as the bench drives it.
//
// The agent serves a running server only: it reads postmaster.pid and exits
// when that process is gone. The archive rows play PostgreSQL's archiver in
// a data directory with no server, so a stand-in postmaster (`sleep`, as
// the PostgreSQL user, outside the measured cgroup) is named in
// postmaster.pid for the length of a run; stopping it is how the run ends
// the agent, exactly as a server shutdown would.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { alive, chownPg, onCleanup, pgIds, sleep, stopPid } from './proc.mjs';

/** flock(1)'s exit status for "held by someone else" (-E). */
const HELD = 75;

/** Starts a stand-in postmaster for `data`; returns { pid, stop() }. */
export function standInPostmaster(data) {
  const child = spawn('sleep', ['infinity'], { stdio: 'ignore', ...pgIds() });
  const start = Math.floor(Date.now() / 1000);
  // The layout PostgreSQL writes: pid, data dir, start time, port, socket dir, listen address, shmem key, status.
  writeFileSync(join(data, 'postmaster.pid'), `${child.pid}\n${data}\n${start}\n5432\n/tmp\n\n  5432001         0\nready   \n`, { mode: 0o600 });
  chownPg(join(data, 'postmaster.pid'));
  const stopNow = onCleanup(`stand-in postmaster ${child.pid}`, () => stopPid(child.pid, 'SIGKILL', 2000));
  return { pid: child.pid, stop: stopNow };
}

/** The agent's files for the one cluster a spool directory serves (src/agent/paths.ts). */
export function agentPaths(spool) {
  const clusters = join(spool, 'clusters');
  const names = existsSync(clusters) ? readdirSync(clusters) : [];
  if (names.length !== 1) throw new Error(`expected one cluster directory in ${clusters}, found ${names.length}`);
  const dir = join(clusters, names[0]);
  return { dir, lock: join(dir, 'agent.lock'), identity: join(dir, 'agent', 'identity'), status: join(dir, 'agent', 'status.json'), log: join(dir, 'agent', 'log') };
}

/** True while some process holds the agent's lock: the launcher's own liveness test. */
export function agentRunning(paths) {
  if (!existsSync(paths.lock)) return false;
  return spawnSync('flock', ['-n', '-E', String(HELD), paths.lock, 'true']).status === HELD;
}

/** The running agent's pid, from its identity record ("v1 <archive> <fingerprint> <pid>"). */
export function agentPid(paths) {
  try {
    const pid = Number(readFileSync(paths.identity, 'utf8').trim().split(/\s+/)[3]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Waits until the agent has nothing queued or in flight (status.json), at most ms. */
export async function agentIdle(paths, ms = 60_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const s = JSON.parse(readFileSync(paths.status, 'utf8'));
      if (s.queueDepth === 0 && s.inFlight === 0) return s;
    } catch {
      /* not written yet, or being replaced */
    }
    if (Date.now() > deadline) throw new Error(`the agent did not become idle within ${ms / 1000} s (see ${paths.log})`);
    await sleep(20);
  }
}

/** Stops the agent (SIGTERM: it finishes what is in flight) and waits until its lock is free. */
export async function stopAgent(paths, ms = 20_000) {
  const pid = agentPid(paths);
  if (pid !== undefined && alive(pid)) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* gone */
    }
  }
  const deadline = Date.now() + ms;
  while (agentRunning(paths)) {
    if (Date.now() > deadline) {
      if (pid !== undefined) stopPid(pid, 'SIGKILL', 2000);
      throw new Error(`the agent (pid ${pid ?? '?'}) did not exit within ${ms / 1000} s of SIGTERM`);
    }
    await sleep(20);
  }
}

/** The launcher's fallbacks in a calls log: calls that archived in-process although the agent was on. */
export function countFallbacks(callsLog) {
  if (!existsSync(callsLog)) return {};
  const out = {};
  for (const m of readFileSync(callsLog, 'utf8').matchAll(/"agentFallback":"([a-z-]+)"/g)) out[m[1]] = (out[m[1]] ?? 0) + 1;
  return out;
}
