import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';

/**
 * True when this process holds an exclusive flock(2) on `lockPath` through a
 * descriptor it inherited: it was started as `flock -xn LOCK node …`, or by a
 * shell that took the lock on a descriptor (`exec 9>>LOCK; flock -xn 9`) and
 * then started it. Node cannot call flock(2) itself, so the lock is always
 * taken by flock(1) before Node starts and read back here from /proc: a
 * process started any other way (by hand, or while another holds the lock)
 * sees false and must not act as the lock's owner.
 *
 * The lock belongs to the open file, not to a pid, so it is released exactly
 * when the last descriptor closes: a killed holder frees it at once, and a
 * stopped one keeps it (nobody takes over behind its back).
 */
export function holdsFlock(lockPath: string): boolean {
  let ino: number;
  let dev: number;
  try {
    const st = statSync(lockPath);
    ino = st.ino;
    dev = st.dev;
  } catch {
    return false;
  }
  let fds: string[];
  try {
    fds = readdirSync('/proc/self/fd');
  } catch {
    return false;
  }
  for (const fd of fds) {
    try {
      const st = statSync(`/proc/self/fd/${fd}`);
      if (st.ino !== ino || st.dev !== dev) continue;
      // A descriptor of a deleted-and-recreated lock file is not this lock.
      if (readlinkSync(`/proc/self/fd/${fd}`).endsWith(' (deleted)')) continue;
      const info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
      if (/^lock:\s+\d+: FLOCK\s+ADVISORY\s+WRITE /m.test(info)) return true;
    } catch {
      // a descriptor that closed meanwhile
    }
  }
  return false;
}
