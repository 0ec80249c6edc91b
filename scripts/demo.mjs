// npm run demo: the whole job on the embedded default, a local file store.
// Starts a throwaway PostgreSQL 15 archiving through walship, writes data,
// takes a base backup with walship backup, marks a restore point, writes
// more, then restores to that point with walship restore --start (which
// writes restore_command = walship fetch) and shows what came back.
// Needs PostgreSQL 15 server binaries (Debian: apt-get install postgresql-15).
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const PG = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';
if (!existsSync(join(PG, 'initdb'))) {
  console.error(`PostgreSQL 15 server binaries not found in ${PG}: apt-get install postgresql-15 (or set PG_BIN)`);
  process.exit(1);
}
const asRoot = process.getuid?.() === 0;
const base = mkdtempSync(join(tmpdir(), 'walship-demo-'));
chmodSync(base, 0o755);

// PostgreSQL refuses to run as root; the archive_command then runs as
// postgres and must be able to read walship, so copy the build into base.
const install = join(base, 'walship');
for (const p of ['package.json', 'bin', 'dist', 'node_modules']) cpSync(join(root, p), join(install, p), { recursive: true, dereference: true });
const bin = join(install, 'bin', 'walship');
if (asRoot) execFileSync('chown', ['-R', 'postgres:postgres', base]);

function run(cmd, args, opts = {}) {
  const argv = asRoot ? ['runuser', ['-u', 'postgres', '--', 'env', ...Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${v}`), cmd, ...args]] : [cmd, args];
  const r = spawnSync(argv[0], argv[1], { cwd: base, encoding: 'utf8', env: { ...process.env, ...(opts.env ?? {}) } });
  if (r.status !== 0 && !opts.allowFail) throw new Error(`${cmd} ${args.join(' ')} failed:\n${r.stdout}${r.stderr}`);
  return r.stdout.trim();
}
const as = (cmd, ...args) => run(join(PG, cmd), args);
const step = (s) => console.log(`\n== ${s}`);

const store = join(base, 'archive');
const env = { WALSHIP_STORE: `file://${store}`, WALSHIP_SPOOL_DIR: join(base, 'spool') };
run('mkdir', ['-p', store, env.WALSHIP_SPOOL_DIR]);
const primary = join(base, 'primary');
const restored = join(base, 'restored');
const sock = join(base, 'sock');
run('mkdir', ['-p', sock]);
const conf = (port, extra) =>
  [`port = ${port}`, `unix_socket_directories = '${sock}'`, `listen_addresses = ''`, ...extra].join('\n') + '\n';
const psql = (port, sql) => as('psql', '-X', '-qAt', '-h', sock, '-p', String(port), '-U', 'postgres', '-c', sql);

let started = [];
try {
  step(`initdb; archive_command = '${bin} push %p' into ${store}`);
  as('initdb', '-D', primary, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C');
  writeFileSync(
    join(primary, 'postgresql.auto.conf'),
    conf(54391, [`archive_mode = on`, `archive_command = 'env WALSHIP_STORE=${env.WALSHIP_STORE} WALSHIP_SPOOL_DIR=${env.WALSHIP_SPOOL_DIR} ${bin} push %p'`, `archive_timeout = 5`]),
  );
  if (asRoot) execFileSync('chown', ['postgres:postgres', join(primary, 'postgresql.auto.conf')]);
  step(`walship init -D ${primary}: create the archive (push never creates one)`);
  console.log(run(bin, ['init', '-D', primary], { env }));
  as('pg_ctl', '-D', primary, '-l', join(base, 'primary.log'), '-w', 'start');
  started.push(primary);

  step('pgbench -i, then walship backup --fast: a base backup into the same archive');
  as('pgbench', '-h', sock, '-p', '54391', '-U', 'postgres', '-i', '-s', '1', '-q');
  const pgEnv = { ...env, PGHOST: sock, PGPORT: '54391', PGUSER: 'postgres' };
  const backupId = run(bin, ['backup', '--fast', '--label', 'demo'], { env: pgEnv });
  console.log(run(bin, ['backup', 'list'], { env }));
  step('writes before the restore point');
  psql(54391, "create table demo (step text, at timestamptz default now()); insert into demo(step) values ('before the restore point')");
  as('pgbench', '-h', sock, '-p', '54391', '-U', 'postgres', '-n', '-t', '500');
  const before = psql(54391, 'select sum(abalance) from pgbench_accounts');
  psql(54391, "select pg_create_restore_point('demo_target')");
  step('writes after the restore point (these must not come back)');
  psql(54391, "insert into demo(step) values ('AFTER the restore point')");
  as('pgbench', '-h', sock, '-p', '54391', '-U', 'postgres', '-n', '-t', '500');
  const last = psql(54391, 'select pg_walfile_name(pg_switch_wal())');
  for (let i = 0; i < 100 && psql(54391, 'select last_archived_wal from pg_stat_archiver') < last; i++) spawnSync('sleep', ['0.2']);
  console.log(psql(54391, "select 'archived: ' || archived_count || ', failed: ' || failed_count from pg_stat_archiver"));
  as('pg_ctl', '-D', primary, '-m', 'fast', 'stop');
  started = [];
  console.log(run('find', [store, '-type', 'f']).split('\n').sort().map((l) => `  ${l.slice(store.length + 1)}`).join('\n'));

  step(`walship restore -D ${restored} --backup ${backupId} --target-name demo_target --archive-mode off --start`);
  // The restored copy keeps the primary's port (stopped above); --archive-mode off
  // keeps it from archiving its new timeline into the demo's archive.
  started.push(restored);
  console.log(run(bin, ['restore', '-D', restored, '--backup', backupId, '--target-name', 'demo_target', '--archive-mode', 'off', '--start'], { env }));
  console.log(run('grep', ['-E', '^(restore_command|recovery_target_name|recovery_target_action|archive_mode)', join(restored, 'postgresql.auto.conf')], { allowFail: true }));

  step('what came back');
  console.log(psql(54391, "select step from demo order by at"));
  const after = psql(54391, 'select sum(abalance) from pgbench_accounts');
  console.log(`sum(abalance) at the target: ${before}, restored: ${after}`);
  const fetched = run('grep', ['-c', 'restored 0', join(restored, 'walship-restore-start.log')], { allowFail: true });
  console.log(`segments restored by walship: ${fetched}`);
  if (after !== before) throw new Error('restored data differs from the restore point');
  console.log('\nOK: restored exactly to the restore point.');
} finally {
  for (const d of started) as('pg_ctl', '-D', d, '-m', 'immediate', 'stop');
  if (process.env.KEEP !== '1') rmSync(base, { recursive: true, force: true });
  else console.log(`kept ${base}`);
}
