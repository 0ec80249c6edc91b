import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** Live (non-zombie) processes whose command line contains every one of `parts`. */
export function findProcesses(...parts: string[]): number[] {
  return findProcessesIn(undefined, ...parts);
}

/** Like findProcesses, limited to processes whose working directory is `cwd` (when given). */
export function findProcessesIn(cwd: string | undefined, ...parts: string[]): number[] {
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').join(' ');
      const state = readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1]?.[0];
      if (state === 'Z' || !parts.every((p) => cmd.includes(p))) continue;
      if (cwd !== undefined && readlinkSync(`/proc/${d}/cwd`) !== cwd) continue;
      pids.push(Number(d));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

export function killHard(pid: number): boolean {
  try {
    process.kill(pid, 'SIGKILL');
    return true;
  } catch {
    return false;
  }
}

/** Polls `cond` every 250 ms until it holds or `timeoutMs` passes; the last answer is returned. */
export async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  return cond();
}
