/**
 * Install the built walship CLI somewhere the `postgres` OS user can run it.
 *
 * archive_command/restore_command run as postgres, which may not be able to
 * read the repository (CI may clone into a 0700 home directory). So we copy
 * the runnable parts into a fresh world-readable temp dir:
 *
 *   <dir>/package.json      ("type": "module" makes dist/*.mjs/ bin ESM-safe)
 *   <dir>/bin/walship       launcher: import('../dist/main.mjs')
 *   <dir>/dist/**           esbuild output
 *   <dir>/node_modules/...  only what the bundle leaves external: the native
 *                           addons and everything they need at runtime
 *
 * Runtime needs of the addons (checked in node_modules, lz4-napi 2.10.0 and
 * @napi-rs/blake-hash 1.3.4): their index.js only requires Node builtins
 * (fs, path, child_process) plus the per-platform package named in
 * optionalDependencies (@antoniomuso/lz4-napi-<platform>,
 * @napi-rs/blake-hash-<platform>), whose "main" is the .node file. There is no
 * @node-rs/helper dependency. Rather than hard-coding the platform package
 * names we copy the dependency + optionalDependency closure of whatever is
 * present in node_modules, so another platform's CI works unchanged.
 *
 * The install is verified at the end by loading both addons as postgres, so
 * a missing file fails here with a clear message instead of as an opaque
 * archive_command failure deep inside a test.
 */
import { builtinModules } from 'node:module';
import { chmod, cp, lstat, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { runAsPostgres } from './postgres-user.js';

/** The node binary running the tests; walship runs under the same one. */
export const nodePath: string = process.execPath;

/** Packages the esbuild bundle keeps external (native addons). */
export const NATIVE_PACKAGES: readonly string[] = Object.freeze(['lz4-napi', '@napi-rs/blake-hash', '@node-rs/crc32']);

export interface InstallOptions {
  /** Fail if dist/main.mjs is missing (default true). */
  requireDist?: boolean;
  /** Additional top-level packages to copy (with their dependency closure). */
  extraPackages?: string[];
  /**
   * Scan dist/ for bare import/require specifiers and copy those packages too
   * (only ones present in node_modules). Default true: a future `external`
   * added to the build is then picked up without touching the tests.
   */
  scanDistExternals?: boolean;
}

export interface PostgresInstall {
  /** Install root (0755, contents a+rX). */
  dir: string;
  /** Absolute path of <dir>/bin/walship. */
  bin: string;
  /** node_modules packages that were copied, sorted. */
  packages: string[];
}

/**
 * Copy the built CLI plus its external runtime packages to a temp dir and
 * verify that postgres can execute node and load the native addons from it.
 */
export async function installForPostgres(repoRoot: string, opts: InstallOptions = {}): Promise<PostgresInstall> {
  const root = resolve(repoRoot);
  await assertNodeUsableByPostgres();

  const launcher = join(root, 'bin', 'walship');
  if (!existsSync(join(root, 'package.json'))) throw new Error(`installForPostgres: no package.json in ${root}`);
  if (!existsSync(launcher)) throw new Error(`installForPostgres: ${launcher} is missing`);
  const hasDist = existsSync(join(root, 'dist', 'main.mjs'));
  if ((opts.requireDist ?? true) && !hasDist) {
    throw new Error(`installForPostgres: ${join(root, 'dist', 'main.mjs')} is missing; run \`npm run build\` first`);
  }

  const dir = await mkdtemp(join(tmpdir(), 'walship-install-'));
  try {
    await cp(join(root, 'package.json'), join(dir, 'package.json'));
    await cp(join(root, 'bin'), join(dir, 'bin'), { recursive: true, dereference: true });
    if (existsSync(join(root, 'dist'))) await cp(join(root, 'dist'), join(dir, 'dist'), { recursive: true, dereference: true });

    const wanted = new Set<string>([...NATIVE_PACKAGES, ...(opts.extraPackages ?? [])]);
    if ((opts.scanDistExternals ?? true) && existsSync(join(root, 'dist'))) {
      for (const name of await scanBareSpecifiers(join(root, 'dist'))) {
        if (existsSync(join(root, 'node_modules', name, 'package.json'))) wanted.add(name);
      }
    }
    const packages = await copyPackageClosure(root, dir, [...wanted]);

    await makeWorldReadable(dir);
    const bin = join(dir, 'bin', 'walship');
    await chmod(bin, 0o755);

    await verifyInstall(dir, bin);
    return { dir, bin, packages };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Delete an install made by installForPostgres (refuses anything else). */
export async function removeInstall(dir: string): Promise<void> {
  // Guard against a typo wiping something important: only our own temp dirs.
  if (!basename(dir).startsWith('walship-install-')) throw new Error(`removeInstall: refusing to delete ${dir}`);
  await rm(dir, { recursive: true, force: true });
}

/**
 * Throw a clear error unless postgres can execute the node binary (e.g. it
 * lives under /root/.nvm, which postgres cannot traverse).
 */
export async function assertNodeUsableByPostgres(): Promise<void> {
  const r = await runAsPostgres(nodePath, ['-e', 'process.stdout.write(process.version)']);
  if (r.code !== 0 || r.stdout !== process.version) {
    throw new Error(
      `the postgres OS user cannot run ${nodePath} (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}\n` +
        'archive_command runs walship as postgres; install node somewhere world-executable (e.g. /usr/bin/node) ' +
        'or make every parent directory of the node binary o+x.',
    );
  }
}

// ---- helpers ----------------------------------------------------------

interface PackageJson {
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

/**
 * Copy each package and its runtime closure (dependencies must exist,
 * optionalDependencies are copied when installed, e.g. only the platform
 * binary for this machine). Returns the sorted list of copied names.
 */
async function copyPackageClosure(root: string, dest: string, roots: string[]): Promise<string[]> {
  const copied = new Set<string>();
  const queue: Array<{ name: string; optional: boolean; from: string }> = roots.map((name) => ({ name, optional: false, from: '(root)' }));
  while (queue.length > 0) {
    const { name, optional, from } = queue.shift()!;
    if (copied.has(name)) continue;
    const src = join(root, 'node_modules', name);
    if (!existsSync(join(src, 'package.json'))) {
      if (optional) continue;
      throw new Error(`installForPostgres: required package ${name} (needed by ${from}) is not installed in ${join(root, 'node_modules')}`);
    }
    // dereference: follow `npm link`/workspace symlinks so postgres gets real files.
    await cp(src, join(dest, 'node_modules', name), { recursive: true, dereference: true });
    copied.add(name);
    const pkg = JSON.parse(await readFile(join(src, 'package.json'), 'utf8')) as PackageJson;
    const optionalDeps = new Set(Object.keys(pkg.optionalDependencies ?? {}));
    for (const dep of new Set([...Object.keys(pkg.dependencies ?? {}), ...optionalDeps])) {
      // A dependency nested under the package's own node_modules came along with it.
      if (existsSync(join(src, 'node_modules', dep, 'package.json'))) continue;
      queue.push({ name: dep, optional: optionalDeps.has(dep), from: name });
    }
  }
  return [...copied].sort();
}

const BUILTINS = new Set(builtinModules);

/**
 * Bare specifiers in static imports, dynamic imports and require() calls of
 * the bundle, reduced to package names. A heuristic (regex, not a parser):
 * false positives only cause an extra copy of an installed package.
 */
async function scanBareSpecifiers(distDir: string): Promise<Set<string>> {
  const found = new Set<string>();
  const patterns = [/\bfrom\s*["']([^"'\s]+)["']/g, /\bimport\s*\(\s*["']([^"'\s]+)["']\s*\)/g, /\bimport\s*["']([^"'\s]+)["']/g, /\brequire\s*\(\s*["']([^"'\s]+)["']\s*\)/g];
  for (const file of await listFiles(distDir)) {
    if (!/\.(m|c)?js$/.test(file)) continue;
    const text = await readFile(file, 'utf8');
    for (const re of patterns) {
      for (const m of text.matchAll(re)) {
        const spec = m[1];
        if (!spec || spec.startsWith('.') || spec.startsWith('/') || spec.startsWith('node:')) continue;
        const parts = spec.split('/');
        const name = spec.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] ?? spec);
        if (BUILTINS.has(name)) continue;
        found.add(name);
      }
    }
  }
  return found;
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** chmod -R a+rX: directories 0755-ish, files gain a+r and keep/extend their x bits. */
async function makeWorldReadable(path: string): Promise<void> {
  const st = await lstat(path);
  if (st.isSymbolicLink()) return;
  if (st.isDirectory()) {
    await chmod(path, (st.mode & 0o7777) | 0o755);
    for (const e of await readdir(path)) await makeWorldReadable(join(path, e));
    return;
  }
  const mode = st.mode & 0o7777;
  await chmod(path, mode | 0o444 | (mode & 0o111 ? 0o111 : 0));
}

/**
 * As postgres: load both addons from the install dir and exercise them once,
 * and check the launcher is executable. Resolution goes through
 * createRequire(<dir>/package.json), i.e. the same lookup the bundle's
 * imports perform from <dir>/dist.
 */
async function verifyInstall(dir: string, bin: string): Promise<void> {
  const script = [
    "const { createRequire } = require('node:module');",
    "const fs = require('node:fs');",
    'const [dir, bin] = process.argv.slice(1);',
    "const req = createRequire(dir + '/package.json');",
    "const lz4 = req('lz4-napi');",
    "const blake = req('@napi-rs/blake-hash');",
    "const input = Buffer.from('walship install check '.repeat(64));",
    "if (!lz4.uncompressSync(lz4.compressSync(input)).equals(input)) throw new Error('lz4 round trip mismatch');",
    "const digest = blake.blake3(input).toString('hex');",
    "if (!/^[0-9a-f]{64}$/.test(digest)) throw new Error('unexpected blake3 digest ' + digest);",
    "if (req('@node-rs/crc32').crc32c(Buffer.from('123456789')) !== 0xe3069283) throw new Error('crc32c check value mismatch');",
    'fs.accessSync(bin, fs.constants.R_OK | fs.constants.X_OK);',
    "process.stdout.write(JSON.stringify({ lz4: req.resolve('lz4-napi'), blake: req.resolve('@napi-rs/blake-hash'), digest }));",
  ].join('\n');
  const r = await runAsPostgres(nodePath, ['-e', script, dir, bin]);
  if (r.code !== 0) {
    throw new Error(`installForPostgres: verification as postgres failed (exit ${r.code}) for ${dir}:\n${r.stderr.trim()}`);
  }
  // Every resolved path must be inside the install, not leaking back to the repo.
  const res = JSON.parse(r.stdout) as { lz4: string; blake: string };
  for (const p of [res.lz4, res.blake]) {
    if (!p.startsWith(dir + '/')) throw new Error(`installForPostgres: addon resolved outside the install dir: ${p}`);
  }
}
