// The two tools under test, set up with equal settings: LZ4, a local
// repository/store, encryption on or off, one spool directory per run.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { AS_ROOT, chownPg, pgEnv, run, runOk, which } from './proc.mjs';

// ---- walship -----------------------------------------------------------------

/**
 * Copy the built walship (bin/, dist/, package.json and the packages the
 * bundle leaves external) into the work dir: the PostgreSQL user can run it
 * there even if the checkout is private, and a rebuild of dist/ in the
 * checkout during the run cannot change what is being measured.
 */
export async function installWalship(root, dir) {
  if (!existsSync(join(root, 'dist', 'main.mjs'))) throw new Error(`${root}/dist/main.mjs is missing: run "npm run build" (npm run bench does)`);
  for (const p of ['package.json', 'bin', 'dist']) cpSync(join(root, p), join(dir, p), { recursive: true, dereference: true });
  const wanted = new Set(['lz4-napi', '@napi-rs/blake-hash', '@node-rs/crc32', ...bareImports(join(root, 'dist'))]);
  const queue = [...wanted];
  const copied = new Set();
  while (queue.length > 0) {
    const name = queue.shift();
    const src = join(root, 'node_modules', name);
    if (copied.has(name) || !existsSync(join(src, 'package.json'))) continue;
    cpSync(src, join(dir, 'node_modules', name), { recursive: true, dereference: true });
    copied.add(name);
    const pkg = JSON.parse(readFileSync(join(src, 'package.json'), 'utf8'));
    for (const dep of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })) {
      if (!existsSync(join(src, 'node_modules', dep))) queue.push(dep);
    }
  }
  spawnSync('chmod', ['-R', 'a+rX', dir]);
  const buildId = fingerprint([join(dir, 'bin'), join(dir, 'dist')]);
  const bin = join(dir, 'bin', 'walship');
  chmodSync(bin, 0o755);
  const r = await run(bin, ['--version'], { pg: true, env: pgEnv('/tmp') });
  if (r.code !== 0) throw new Error(`the installed walship does not run as the PostgreSQL user: ${r.stderr || r.stdout}`);
  return { bin, version: r.stdout.trim(), buildId };
}

/** A short hash of every file under the given dirs: which build a result came from. */
function fingerprint(dirs) {
  const hash = createHash('sha256');
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) hash.update(e.name).update(readFileSync(p));
    }
  };
  for (const d of dirs) walk(d);
  return hash.digest('hex').slice(0, 12);
}

/** Package names the bundle imports at run time (native addons, anything a later build leaves external). */
function bareImports(distDir) {
  const found = new Set();
  const builtins = new Set(builtinModules);
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(m|c)?js$/.test(e.name)) {
        const text = readFileSync(p, 'utf8');
        for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|\bimport\s+)["']([^"'\s./][^"'\s]*)["']/g)) {
          const spec = m[1];
          if (spec.startsWith('node:')) continue;
          const parts = spec.split('/');
          const name = spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
          if (!builtins.has(name)) found.add(name);
        }
      }
    }
  };
  walk(distDir);
  return found;
}

export async function walshipKey(bin, path) {
  await runOk(bin, ['key', 'create', '--file', path], { pg: true, env: pgEnv('/tmp') });
}

/**
 * Environment for one walship run. `lookAhead: false` turns off look-ahead
 * push and the prefetch pool; `agent: true` sends push through the resident
 * agent (WALSHIP_AGENT=on, its other settings at their defaults); otherwise
 * walship's defaults apply.
 */
export function walshipEnv({ home, store, spool, keyFile, lookAhead = true, agent = false }) {
  return pgEnv(home, {
    WALSHIP_STORE: `file://${store}`,
    WALSHIP_SPOOL_DIR: spool,
    WALSHIP_COMPRESSION: 'lz4',
    WALSHIP_ENCRYPTION: keyFile ? 'keyfile' : 'none',
    ...(keyFile ? { WALSHIP_KEY_FILE: keyFile } : {}),
    ...(lookAhead ? {} : { WALSHIP_PUSH_CONCURRENCY: '1', WALSHIP_PREFETCH: '0' }),
    ...(agent ? { WALSHIP_AGENT: 'on' } : {}),
  });
}

// ---- pgBackRest --------------------------------------------------------------

/**
 * pgBackRest from the distribution's packages, installed when absent (as
 * root). Returns its version, or undefined with a reason.
 */
export async function ensurePgbackrest(log) {
  const have = which('pgbackrest');
  if (have) return { bin: have, version: (await run(have, ['version'])).stdout.trim() };
  if (!AS_ROOT) return { reason: 'pgbackrest is not installed and the bench is not root (apt-get install pgbackrest)' };
  if (!which('apt-get')) return { reason: 'pgbackrest is not installed and there is no apt-get' };
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let policy = (await run('apt-cache', ['policy', 'pgbackrest'], { env })).stdout;
  if (!/Candidate: (?!\(none\))/.test(policy)) {
    log('pgbackrest: no install candidate; apt-get update ...');
    await run('apt-get', ['update'], { env, timeoutMs: 300_000 });
    policy = (await run('apt-cache', ['policy', 'pgbackrest'], { env })).stdout;
    if (!/Candidate: (?!\(none\))/.test(policy)) return { reason: 'no pgbackrest package in the configured apt sources' };
  }
  log(`pgbackrest: apt-get install -y pgbackrest (${/Candidate: (\S+)/.exec(policy)?.[1]}) ...`);
  const r = await run('apt-get', ['install', '-y', 'pgbackrest'], { env, timeoutMs: 600_000 });
  const bin = which('pgbackrest');
  if (r.code !== 0 || !bin) return { reason: `apt-get install pgbackrest failed: ${(r.stderr || r.stdout).trim().split('\n').at(-1)}` };
  return { bin, version: (await run(bin, ['version'])).stdout.trim(), installed: true };
}

export const STANZA = 'bench';
export const CIPHER_PASS = 'walship-bench-passphrase-not-a-secret';

/**
 * A pgBackRest configuration in its own directory (config-path), so nothing
 * from /etc/pgbackrest applies. Equal settings: LZ4, asynchronous archiving
 * with two processes, a local repository, AES-256-CBC when encrypted.
 */
export function pgbackrestConfig({ dir, repo, pgPath, encrypt }) {
  for (const d of [dir, join(dir, 'conf.d'), join(dir, 'spool'), join(dir, 'lock'), join(dir, 'log'), repo]) mkdirSync(d, { recursive: true });
  const lines = [
    '[global]',
    `repo1-path=${repo}`,
    ...(encrypt ? ['repo1-cipher-type=aes-256-cbc', `repo1-cipher-pass=${CIPHER_PASS}`] : ['repo1-cipher-type=none']),
    'compress-type=lz4',
    'archive-async=y',
    'process-max=2',
    `spool-path=${join(dir, 'spool')}`,
    `lock-path=${join(dir, 'lock')}`,
    `log-path=${join(dir, 'log')}`,
    'log-level-console=warn',
    'log-level-stderr=warn',
    'log-level-file=off',
    '',
    `[${STANZA}]`,
    `pg1-path=${pgPath}`,
    '',
  ];
  writeFileSync(join(dir, 'pgbackrest.conf'), lines.join('\n'), { mode: 0o640 });
  chownPg(dir);
  chownPg(repo);
  return { configPath: dir, args: [`--config-path=${dir}`, `--stanza=${STANZA}`] };
}

export async function stanzaCreate(bin, cfg, home) {
  await runOk(bin, [...cfg.args, '--no-online', 'stanza-create'], { pg: true, env: pgEnv(home) });
}
