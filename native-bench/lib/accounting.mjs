// CPU and memory accounting for everything a tool starts.
//
// Both tools may do their real work in processes that outlive the call
// PostgreSQL made: pgBackRest's async archive-push/archive-get daemon, and
// walship's look-ahead and prefetch helpers. The rusage of a waited child
// does not include such detached processes, so where the machine allows it
// every measured call first moves itself into a cgroup of its own
// (`echo $$ > .../cgroup.procs; exec ...`, a builtin and the exec the shell
// does anyway), and CPU is read from the cgroup: user+sys of every process
// that ran in it, helpers included. Peak memory is VmHWM, sampled from
// /proc for every process in the cgroup, plus the exact max RSS of each
// direct call from /usr/bin/time. Without cgroups (not root, no cgroupfs),
// CPU and RSS fall back to /usr/bin/time of the direct calls and the table
// says so.
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { basename, join } from 'node:path';
import { AS_ROOT, alive, onCleanup, pgIds, sleep, sleepSync } from './proc.mjs';

const TIME_BIN = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;
const SAMPLE_MS = 20;

function findHierarchy() {
  const forced = process.env.BENCH_CGROUP; // 'v1', 'v2' or 'off'
  if (forced === 'off' || !AS_ROOT) return undefined;
  const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' '));
  const own = readFileSync('/proc/self/cgroup', 'utf8').trim().split('\n').map((l) => l.split(':'));
  const v1 = mounts.find((m) => m[2] === 'cgroup' && m[3]?.split(',').includes('cpuacct'));
  if (v1 && forced !== 'v2') {
    const rel = own.find((o) => o[1]?.split(',').includes('cpuacct'))?.[2] ?? '/';
    return { kind: 'v1', base: join(v1[1], rel) };
  }
  const v2 = mounts.find((m) => m[2] === 'cgroup2');
  if (v2 && forced !== 'v1') {
    const rel = own.find((o) => o[0] === '0' && o[1] === '')?.[2] ?? '/';
    return { kind: 'v2', base: join(v2[1], rel) };
  }
  return undefined;
}

export class Accounting {
  constructor(tag) {
    this.timeBin = TIME_BIN;
    this.kind = 'rusage';
    const h = findHierarchy();
    if (!h) return;
    const parent = join(h.base, `walship-bench-${tag}`);
    try {
      mkdirSync(parent);
    } catch (err) {
      process.stderr.write(`bench: no cgroup accounting (${err.code ?? err.message}); CPU counts direct calls only\n`);
      return;
    }
    this.kind = h.kind;
    this.parent = parent;
    this.base = h.base;
    if (h.kind === 'v2') {
      // cgroup v2 lets a process move itself only below a common ancestor it
      // may write to: put the bench itself into <parent>/driver, so the calls
      // it starts (as the PostgreSQL user) can move to a sibling group.
      this.driver = this.#mkgroup('driver');
      writeFileSync(join(this.driver, 'cgroup.procs'), String(process.pid));
      this.#grant(this.parent);
    }
    onCleanup('cgroups', () => this.close());
  }

  /** A fresh group for one measurement (e.g. one archive run). */
  group(name) {
    const dir = this.parent ? this.#mkgroup(name) : undefined;
    return new Group(this, name, dir);
  }

  describe() {
    if (this.kind === 'rusage') return `/usr/bin/time of each call only (no cgroup: detached helpers are not counted)${TIME_BIN ? '' : '; /usr/bin/time missing: no CPU figures'}`;
    return `cgroup ${this.kind} per run (every process the calls started, detached helpers included) + VmHWM sampling + /usr/bin/time per call`;
  }

  #mkgroup(name) {
    const dir = join(this.parent, name);
    mkdirSync(dir);
    this.#grant(dir);
    return dir;
  }

  #grant(dir) {
    const { uid, gid } = pgIds();
    if (uid !== undefined) chownSync(join(dir, 'cgroup.procs'), uid, gid);
  }

  close() {
    if (!this.parent) return;
    if (this.driver) {
      try {
        writeFileSync(join(this.base, 'cgroup.procs'), String(process.pid));
      } catch {
        /* best effort */
      }
    }
    for (const name of safeReaddir(this.parent)) {
      const dir = join(this.parent, name);
      if (!existsSync(join(dir, 'cgroup.procs'))) continue;
      killGroupSync(dir);
      removeDir(dir);
    }
    removeDir(this.parent);
    this.parent = undefined;
  }
}

function safeReaddir(dir) {
  try {
    return readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch {
    return [];
  }
}

function removeDir(dir) {
  for (let i = 0; i < 50; i++) {
    try {
      rmdirSync(dir);
      return;
    } catch (err) {
      if (err.code === 'ENOENT') return;
      sleepSync(100);
    }
  }
  process.stderr.write(`bench: could not remove cgroup ${dir}\n`);
}

function groupPids(dir) {
  try {
    return readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function killGroupSync(dir) {
  for (const pid of groupPids(dir)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  const deadline = Date.now() + 5000;
  while (groupPids(dir).some(alive) && Date.now() < deadline) sleepSync(50);
}

/** A short label for a process from its argv: "walship push", "pgbackrest archive-push:async", "cp". */
export function labelFor(argv) {
  const words = argv.filter(Boolean);
  const i = words.findIndex((w) => /(^|\/)walship$/.test(w) || /\/dist\/[^/]*\.mjs$/.test(w));
  if (i >= 0) {
    const sub = words.slice(i + 1).find((w) => /^[a-z][a-z-]*$/.test(w));
    return `walship ${sub ?? basename(words[i])}`;
  }
  const b = basename(words[0] ?? '?');
  if (b === 'pgbackrest') {
    const cmd = [...words].reverse().find((w) => /^[a-z]+-[a-z]+(:[a-z]+)?$/.test(w));
    return `pgbackrest ${cmd ?? ''}`.trim();
  }
  if (b === 'node') return `node ${basename(words[1] ?? '')}`;
  return b;
}

class Group {
  constructor(acct, name, dir) {
    this.acct = acct;
    this.name = name;
    this.dir = dir;
    this.peaks = new Map(); // label -> max VmHWM kB
    this.seen = new Map(); // pid -> its latest label
    this.labels = new Map(); // command line -> label
    this.timer = undefined;
    // All walship processes together (launchers, calls, the agent, helpers),
    // per sample: the largest sum of their current RSS, and the largest sum
    // of the VmHWM of those alive at the same moment (an upper bound: each
    // process's own peak, as if they had all peaked together).
    this.walshipSumKb = 0;
    this.walshipSumHwmKb = 0;
    // label -> /proc/<pid>/status at the largest VmRSS sampled for that kind
    // of process: what the resident memory was (anonymous, file-backed,
    // shared) and how many threads held it.
    this.breakdown = new Map();
    this.machine = undefined;
  }

  /** Wrap a shell command so it runs in this group under /usr/bin/time, as PostgreSQL's `sh -c` would run it. */
  wrap(command, timeLog) {
    const join = this.dir ? `echo $$ > ${this.dir}/cgroup.procs && ` : '';
    // Double quotes: the command may end up inside a single-quoted
    // postgresql.conf string. PostgreSQL leaves %e, %U... alone (only %p, %f,
    // %r and %% are its own).
    const time = this.acct.timeBin && timeLog ? `${this.acct.timeBin} -q -a -o ${timeLog} -f "%e %U %S %M %C" ` : '';
    return `${join}exec ${time}${command}`;
  }

  start() {
    this.machine = machineCpu();
    if (!this.dir) return;
    this.timer = setInterval(() => this.sample(), SAMPLE_MS);
    this.timer.unref();
  }

  sample() {
    let rss = 0;
    let hwm = 0;
    for (const pid of groupPids(this.dir)) {
      try {
        // The command line is read at every sample, not once per pid: a
        // process may exec something else after it was first seen (the
        // launcher's `setsid node … agent &` is a subshell of the launcher,
        // labelled like it, until it execs the agent).
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        // An empty cmdline: the process is exiting.
        if (!cmdline) continue;
        let label = this.labels.get(cmdline);
        if (!label) {
          label = labelFor(cmdline.split('\0'));
          this.labels.set(cmdline, label);
        }
        // The shell and /usr/bin/time before their exec are not the tools.
        if (label === 'sh' || label === 'dash' || label === 'time') continue;
        this.seen.set(pid, label);
        const status = readFileSync(`/proc/${pid}/status`, 'utf8');
        // It exec'd between the two reads: its figures belong to the next sample's label.
        if (readFileSync(`/proc/${pid}/cmdline`, 'utf8') !== cmdline) continue;
        const m = /VmHWM:\s+(\d+) kB/.exec(status);
        if (m) this.peaks.set(label, Math.max(this.peaks.get(label) ?? 0, Number(m[1])));
        const cur = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
        if (cur > (this.breakdown.get(label)?.rssKb ?? 0)) {
          const kb = (field) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
          this.breakdown.set(label, { rssKb: cur, anonKb: kb('RssAnon'), fileKb: kb('RssFile'), shmemKb: kb('RssShmem'), threads: Number(/Threads:\s+(\d+)/.exec(status)?.[1] ?? NaN) });
        }
        if (m && isWalship(label)) {
          hwm += Number(m[1]);
          rss += cur;
        }
      } catch {
        /* exited between the listing and the read */
      }
    }
    this.walshipSumKb = Math.max(this.walshipSumKb, rss);
    this.walshipSumHwmKb = Math.max(this.walshipSumHwmKb, hwm);
  }

  /** Busy CPU ms of the whole machine since start() (/proc/stat: everything, other users' work included). */
  machineCpuMs() {
    const now = this.machineEnd ?? machineCpu();
    return this.machine === undefined || now === undefined ? undefined : now - this.machine;
  }

  /**
   * After the last call: wait (up to waitMs) for helpers to finish on their
   * own, then kill what is left and report it, so that nothing leaks into
   * the next measurement.
   */
  async settle(waitMs) {
    if (!this.dir) {
      this.machineEnd = machineCpu();
      return [];
    }
    const deadline = Date.now() + waitMs;
    while (groupPids(this.dir).some(alive) && Date.now() < deadline) {
      this.sample();
      await sleep(50);
    }
    // The machine's count stops when the tool's last process has gone (or
    // is about to be killed), not after the bookkeeping that follows.
    this.machineEnd = machineCpu();
    const left = groupPids(this.dir)
      .filter(alive)
      .map((pid) => `${this.seen.get(pid) ?? labelFor(readArgv(pid))} (pid ${pid})`);
    if (left.length > 0) killGroupSync(this.dir);
    clearInterval(this.timer);
    return left;
  }

  /** user+sys ms of every process that ran in the group (undefined without cgroups). */
  cpuMs() {
    if (!this.dir) return undefined;
    if (this.acct.kind === 'v1') {
      const user = join(this.dir, 'cpuacct.usage_user');
      if (existsSync(user)) return (Number(readFileSync(user, 'utf8')) + Number(readFileSync(join(this.dir, 'cpuacct.usage_sys'), 'utf8'))) / 1e6;
      return Number(readFileSync(join(this.dir, 'cpuacct.usage'), 'utf8')) / 1e6;
    }
    const stat = readFileSync(join(this.dir, 'cpu.stat'), 'utf8');
    return Number(/usage_usec (\d+)/.exec(stat)?.[1] ?? NaN) / 1e3;
  }
}

/** walship's own processes: the launcher, the Node calls, the agent and its helpers. */
export const isWalship = (label) => label.startsWith('walship') || label.startsWith('node');

const CLK_TCK = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number.parseInt(r.stdout ?? '', 10);
  return Number.isInteger(n) && n > 0 ? n : 100;
})();

/**
 * Busy CPU time of the whole machine in ms, from the first line of
 * /proc/stat: user, nice, system, irq, softirq and steal, not idle or
 * iowait (guest time is already inside user).
 */
function machineCpu() {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const busy = f[0] + f[1] + f[2] + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
    return (busy * 1000) / CLK_TCK;
  } catch {
    return undefined;
  }
}

function readArgv(pid) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return ['?'];
  }
}

/**
 * Parse a /usr/bin/time log written by Group.wrap: one line per call with
 * elapsed s, user s, sys s, max RSS kB and the command line.
 */
export function readTimeLog(path) {
  if (!path || !existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .map((l) => /^(\S+) (\S+) (\S+) (\d+) (.*)$/.exec(l))
    .filter(Boolean)
    .map((m) => ({ elapsed: Number(m[1]), user: Number(m[2]), sys: Number(m[3]), maxRssKb: Number(m[4]), label: labelFor(m[5].split(' ')) }));
}

/** Summarise one measurement: CPU (cgroup, else direct calls) and the peak RSS per kind of process. */
export function summarise(group, timeLog, leftovers) {
  const calls = readTimeLog(timeLog);
  const callCpuMs = calls.reduce((s, c) => s + (c.user + c.sys) * 1000, 0);
  const peaks = new Map(group.peaks);
  for (const c of calls) peaks.set(c.label, Math.max(peaks.get(c.label) ?? 0, c.maxRssKb));
  const cg = group.cpuMs();
  return {
    cpuMs: cg ?? (calls.length > 0 ? callCpuMs : undefined),
    machineCpuMs: group.machineCpuMs(),
    walshipSumKb: group.dir ? group.walshipSumKb : undefined,
    walshipSumHwmKb: group.dir ? group.walshipSumHwmKb : undefined,
    callCpuMs: calls.length > 0 ? callCpuMs : undefined,
    calls: calls.length,
    rssBreakdown: group.dir ? Object.fromEntries(group.breakdown) : undefined,
    peaks: Object.fromEntries([...peaks].filter(([label]) => !['sh', 'dash', 'time'].includes(label)).sort((a, b) => b[1] - a[1])),
    leftovers,
  };
}
