#!/usr/bin/env node
// What the launcher's answers without Node cost PostgreSQL's calls:
//  - fetch: a prefetch-pool hand-over (fast_fetch), restore_command;
//  - push: an answer from a status record (fast_push: a look-ahead marker or
//    the agent's record, on a file store), archive_command.
// In a synthetic data directory (a 16 MiB segment with a valid long page
// header, an owner record, a live lock holder, a record and a stored object),
// so that it measures the launcher alone.
//
//   node native-bench/launcher-handover.mjs [calls]        # default 300
//   LAUNCHER=/tmp/walship-old node native-bench/launcher-handover.mjs
//
// Prints the CPU (user + sys) per call, the wall time per call, and, when
// strace(1) is installed, how many programs one call runs (execve) and how
// many processes it forks. Every call must be answered by the launcher itself
// (its log line says "fast":true); the script fails otherwise.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// LAUNCHER=path measures another copy of bin/walship (an older commit's, say) in the same set-up.
const launcher = process.env.LAUNCHER ?? join(root, 'bin', 'walship');
const calls = Number(process.argv[2] ?? 300);
const name = '000000010000000100000003';
const size = 16 << 20;
const sysid = 7301234567890123456n;

const base = mkdtempSync(join(tmpdir(), 'walship-handover-'));
const data = join(base, 'data');
const pool = join(data, 'pg_wal', 'walship-prefetch');
const spool = join(base, 'spool');
const env = { PATH: process.env.PATH, HOME: base, WALSHIP_STORE: `file://${base}/store`, WALSHIP_SPOOL_DIR: spool };

// The store fingerprint as the launcher computes it (test/unit/launcher-state.test.ts pins it to Node's).
const fns = [...readFileSync(launcher, 'utf8').matchAll(/^[a-z_]+\(\) \{[\s\S]*?^\}/gm)].map((m) => m[0]).join('\n');
const fp = execFileSync('/bin/sh', ['-c', `config_arg=\n${fns}\nstore_fingerprint && echo "$fp"`], { env, encoding: 'utf8' }).trim();

const segment = Buffer.alloc(size);
segment.writeUInt16LE(0xd110, 0);
segment.writeUInt16LE(2, 2);
segment.writeUInt32LE(1, 4);
// Its page address: log 1 (0x100000000), segment 3 of it.
segment.writeBigUInt64LE(0x100000000n + 3n * BigInt(size), 8);
segment.writeBigUInt64LE(sysid, 24);
segment.writeUInt32LE(size, 32);
segment.writeUInt32LE(8192, 36);

mkdirSync(join(data, 'global'), { recursive: true });
mkdirSync(pool, { recursive: true });
const control = Buffer.alloc(8192);
control.writeBigUInt64LE(sysid);
writeFileSync(join(data, 'global', 'pg_control'), control);
writeFileSync(join(data, 'recovery.signal'), '');
writeFileSync(join(data, 'postmaster.pid'), `4242\n${data}\n1764700000\n5432\n`);
const aid = '0123456789abcdef0123456789abcdef';
writeFileSync(join(data, 'walship.archive'), `v1 ${aid} x\n`);
writeFileSync(join(pool, 'owner'), `v1 ${aid} ${sysid} ${fp} 4242 1764700000\n`);
mkdirSync(spool, { mode: 0o700 });
chmodSync(spool, 0o700);
// The cluster's state journal, so that the hand-over records its event as it does in a real spool.
const cdirName = execFileSync('/bin/sh', ['-c', `spool=${spool}\n${fns}\ncluster_dir && echo "$cdir"`], { cwd: data, encoding: 'utf8' }).trim();
mkdirSync(join(cdirName, 'state', 'events'), { recursive: true });

const holder = spawn('flock', ['-x', join(pool, 'worker.lock'), 'sleep', '3600'], { stdio: 'ignore', detached: true });
await new Promise((r) => setTimeout(r, 300));

function childTicks() {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
  return Number(f[13]) + Number(f[14]); // cutime + cstime (fields 16, 17)
}
const hz = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

// push: the WAL file PostgreSQL names, its stored object, and a fresh record per call.
const walName = '000000010000000100000002';
writeFileSync(join(data, 'pg_wal', walName), segment);
mkdirSync(join(base, 'store', 'wal', '00000001'), { recursive: true });
writeFileSync(join(base, 'store', 'walship.json'), '{}');
writeFileSync(join(base, 'store', 'wal', '00000001', walName), Buffer.alloc(4096));
mkdirSync(join(cdirName, 'pushed'), { recursive: true });
const st = statSync(join(data, 'pg_wal', walName), { bigint: true });
const markerLine = `v2 ${aid} ${fp} ${st.dev} ${st.ino} ${st.size} ${st.mtimeNs} ${st.ctimeNs} ${'ab'.repeat(32)} 4096 ${new Date().toISOString()}\n`;

const kinds = {
  fetch: {
    prepare: () => writeFileSync(join(pool, name), segment),
    args: ['fetch', name, 'pg_wal/RECOVERYXLOG'],
    after: () => rmSync(join(data, 'pg_wal', 'RECOVERYXLOG')),
  },
  push: {
    prepare: () => writeFileSync(join(cdirName, 'pushed', walName), markerLine),
    args: ['push', `pg_wal/${walName}`],
    after: () => undefined,
  },
};

function oneCall(kind, wrap = []) {
  kind.prepare();
  const args = [...wrap, '/bin/sh', launcher, ...kind.args];
  const r = spawnSync(args[0], args.slice(1), { cwd: data, env, encoding: 'utf8' });
  if (r.status !== 0 || !r.stderr.includes('"fast":true')) throw new Error(`not answered by the launcher (exit ${r.status}): ${r.stderr}`);
  kind.after();
  return r;
}

try {
  for (const [label, kind] of Object.entries(kinds)) {
    for (let i = 0; i < 10; i++) oneCall(kind);
    const t0 = process.hrtime.bigint();
    const c0 = childTicks();
    for (let i = 0; i < calls; i++) oneCall(kind);
    const cpuMs = ((childTicks() - c0) / hz / calls) * 1000;
    const wallMs = Number(process.hrtime.bigint() - t0) / 1e6 / calls;
    console.log(`${label}: ${calls} calls answered by bin/walship, ${cpuMs.toFixed(1)} ms CPU and ${wallMs.toFixed(1)} ms wall per call (wall includes preparing each call)`);
    if (spawnSync('strace', ['-V']).status === 0) {
      const out = join(base, 'strace.txt');
      oneCall(kind, ['strace', '-f', '-qq', '-e', 'trace=execve,clone,clone3,fork,vfork', '-o', out]);
      const lines = readFileSync(out, 'utf8').split('\n');
      const execs = lines.filter((l) => /execve\(/.test(l) && !/= -1 /.test(l));
      const forks = lines.filter((l) => /(clone3?|v?fork)\(/.test(l) && !/= -1 /.test(l));
      const programs = execs.map((l) => /execve\("([^"]+)"/.exec(l)?.[1]?.replace(/^.*\//, ''));
      console.log(`  one call runs ${execs.length} programs (the shell included) and forks ${forks.length} times: ${programs.join(' ')}`);
    }
  }
} finally {
  process.kill(-holder.pid, 'SIGKILL');
  rmSync(base, { recursive: true, force: true });
}
