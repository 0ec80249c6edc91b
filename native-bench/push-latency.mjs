// Cold `walship push` of one real 16 MiB segment, end to end (process start
// to exit), file store, median of N runs. Each run pushes into a fresh store,
// so it measures a real archive, not the "already archived" shortcut.
// Peer in the same run: `cp` + `sync` of the same file (what the simplest
// archive_command costs), so the ratio is meaningful on a noisy machine.
//   node native-bench/push-latency.mjs [runs] [--encrypt]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const runs = Number(process.argv[2] ?? 10);
const encrypt = process.argv.includes('--encrypt');
const PG = '/usr/lib/postgresql/15/bin';
const base = mkdtempSync(join(tmpdir(), 'walship-bench-'));
const asRoot = process.getuid?.() === 0;

function sh(cmd, args, opts = {}) {
  const argv = asRoot && opts.pg ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
  return execFileSync(argv[0], argv[1], { encoding: 'utf8', ...opts });
}

try {
  // A real, full segment: pgbench -i writes several segments of table and
  // index data; take one from the middle (not the zero-padded tail of a switch).
  if (asRoot) execFileSync('chown', ['postgres', base]);
  const data = join(base, 'data');
  sh(join(PG, 'initdb'), ['-D', data, '-U', 'postgres'], { pg: true, stdio: 'ignore' });
  sh(join(PG, 'pg_ctl'), ['-D', data, '-o', `-k ${base} -c listen_addresses='' -c port=54399`, '-l', join(base, 'log'), '-w', 'start'], { pg: true, stdio: 'ignore' });
  sh(join(PG, 'pgbench'), ['-h', base, '-p', '54399', '-U', 'postgres', '-i', '-s', '10', '-q', 'postgres'], { pg: true, stdio: 'ignore' });
  sh(join(PG, 'pg_ctl'), ['-D', data, '-m', 'fast', 'stop'], { pg: true, stdio: 'ignore' });
  const wal = join(data, 'pg_wal');
  // Recycled segments (renamed ahead for reuse) hold old WAL; keep the real ones.
  const segs = readdirSync(wal)
    .filter((n) => /^[0-9A-F]{24}$/.test(n))
    .filter((n) => readFileSync(join(wal, n)).readBigUInt64LE(8) === BigInt(`0x${n.slice(8, 16)}`) * 2n ** 32n + BigInt(`0x${n.slice(16)}`) * 16777216n)
    .sort();
  const seg = segs[Math.floor(segs.length / 2)];
  if (asRoot) execFileSync('chown', ['-R', `${process.getuid()}`, base]);
  const env = { ...process.env, WALSHIP_LOG_LEVEL: 'warn' };
  if (encrypt) {
    execFileSync(join(root, 'bin', 'walship'), ['key', 'create', '--file', join(base, 'key')], { stdio: 'ignore' });
    Object.assign(env, { WALSHIP_ENCRYPTION: 'keyfile', WALSHIP_KEY_FILE: join(base, 'key') });
  }
  const time = (fn) => {
    const t0 = process.hrtime.bigint();
    fn();
    return Number(process.hrtime.bigint() - t0) / 1e6;
  };
  const walship = [];
  const cp = [];
  for (let i = 0; i < runs; i++) {
    const store = join(base, `store-${i}`);
    mkdirSync(store);
    // A new archive per run (untimed): init, rebinding the data directory to it.
    const init = spawnSync(join(root, 'bin', 'walship'), ['init', '--rebind', '-D', join(base, 'data')], { cwd: join(base, 'data'), env: { ...env, WALSHIP_STORE: `file://${store}` } });
    if (init.status !== 0) throw new Error(`init failed: ${init.stderr}`);
    walship.push(
      time(() => {
        const r = spawnSync(join(root, 'bin', 'walship'), ['push', `pg_wal/${seg}`], { cwd: join(base, 'data'), env: { ...env, WALSHIP_STORE: `file://${store}` } });
        if (r.status !== 0) throw new Error(`push failed: ${r.stderr}`);
      }),
    );
    const dst = join(base, `cp-${i}`);
    cp.push(time(() => spawnSync('sh', ['-c', `cp ${join(wal, seg)} ${dst} && sync ${dst}`])));
  }
  const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const w = median(walship);
  const c = median(cp);
  console.log(`walship push, one 16 MiB segment, file store${encrypt ? ', keyfile encryption' : ''}, ${runs} runs`);
  console.log(`  walship push   median ${w.toFixed(1)} ms  (min ${Math.min(...walship).toFixed(1)}, max ${Math.max(...walship).toFixed(1)})`);
  console.log(`  cp + sync      median ${c.toFixed(1)} ms`);
  console.log(`  ratio walship/cp: ${(w / c).toFixed(2)}x`);
} finally {
  rmSync(base, { recursive: true, force: true });
}
