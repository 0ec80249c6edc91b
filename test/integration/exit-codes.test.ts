/**
 * The exit-code guard, black-box: the installed launcher, run as postgres in
 * a directory that looks like a data directory in archive recovery, on a
 * standby, and on a standby whose promotion is pending. Whatever global
 * options come first and whatever breaks (bad arguments, a build chunk
 * deleted or unparsable, an exception or rejection nobody handles, the whole
 * bundle missing), a fetch that gives no answer must exit 200, except on a
 * standby with no promotion pending, where it exits 1 and PostgreSQL retries.
 * push exits 1.
 *
 * Each case breaks a private copy of the install, never the shared one.
 */
import { cp, mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { chownTreeToPostgres, runAsPostgres, type RunResult } from '../support/postgres-user.js';
import { fileArchive, tempDir, walshipBin } from '../support/walship.js';

const NAME = '000000010000000000000001';

type Mode = 'recovery' | 'standby' | 'promoting';
const MODES: Record<Mode, { files: string[]; fetchFails: number }> = {
  recovery: { files: ['recovery.signal'], fetchFails: 200 },
  standby: { files: ['standby.signal'], fetchFails: 1 },
  promoting: { files: ['standby.signal', 'promote'], fetchFails: 200 },
};

interface Form {
  readonly label: string;
  args(config: string): string[];
  env(config: string): Record<string, string>;
}

/** Every way of naming the config file, and none. */
const FORMS: readonly Form[] = [
  { label: '(no option, env store)', args: () => [], env: () => ({}) },
  { label: '-c F', args: (c) => ['-c', c], env: () => ({}) },
  { label: '--config F', args: (c) => ['--config', c], env: () => ({}) },
  { label: '--config=F', args: (c) => [`--config=${c}`], env: () => ({}) },
  { label: '-cF', args: (c) => [`-c${c}`], env: () => ({}) },
  { label: 'WALSHIP_CONFIG=F', args: () => [], env: (c) => ({ WALSHIP_CONFIG: c }) },
];

let installRoot: string;
let bin: string;
let config: string;
let baseEnv: Record<string, string>;
let storeUrl: string;
const dirs = {} as Record<Mode, string>;

beforeAll(async () => {
  // A private copy of the install that the cases below may break.
  const installed = dirname(dirname(walshipBin()));
  const base = await tempDir('walship-exitcodes-');
  installRoot = join(base, 'install');
  await cp(installed, installRoot, { recursive: true, preserveTimestamps: true });
  bin = join(installRoot, 'bin', 'walship');

  const archive = await fileArchive();
  config = join(base, 'walship.conf');
  await writeFile(config, `WALSHIP_STORE = ${archive.env.WALSHIP_STORE}\n`);
  storeUrl = archive.env.WALSHIP_STORE!;
  baseEnv = { WALSHIP_SPOOL_DIR: archive.env.WALSHIP_SPOOL_DIR!, WALSHIP_PREFETCH: '0' };

  for (const mode of Object.keys(MODES) as Mode[]) {
    const d = join(base, mode);
    await mkdir(join(d, 'pg_wal'), { recursive: true });
    for (const f of MODES[mode].files) await writeFile(join(d, f), '');
    dirs[mode] = d;
  }
  await chownTreeToPostgres(base);
});

async function run(form: Form, mode: Mode, command: string[]): Promise<RunResult> {
  // The form without an option still needs a store for the cases that get that far.
  const storeEnv: Record<string, string> = form.label.startsWith('(no option') ? { WALSHIP_STORE: storeUrl } : {};
  return runAsPostgres(bin, [...form.args(config), ...command], {
    cwd: dirs[mode],
    env: { ...baseEnv, ...storeEnv, ...form.env(config) },
    timeoutMs: 120_000,
  });
}

/** Runs every form in every mode, a few at a time, and checks each exit code. */
async function expectEveryForm(command: string[], expected: (mode: Mode) => number, forms: readonly Form[] = FORMS): Promise<void> {
  const cases = forms.flatMap((form) => (Object.keys(MODES) as Mode[]).map((mode) => ({ form, mode })));
  const results: string[] = [];
  const want: string[] = [];
  for (let i = 0; i < cases.length; i += 3) {
    const batch = cases.slice(i, i + 3);
    const rs = await Promise.all(batch.map(({ form, mode }) => run(form, mode, command)));
    batch.forEach(({ form, mode }, j) => {
      results.push(`${form.label} in ${mode}: exit ${rs[j]!.code}`);
      want.push(`${form.label} in ${mode}: exit ${expected(mode)}`);
    });
  }
  expect(results).toEqual(want);
}

const fetchFails = (mode: Mode): number => MODES[mode].fetchFails;

async function chunk(prefix: string): Promise<string> {
  const dir = join(installRoot, 'dist', 'chunks');
  const name = (await readdir(dir)).find((f) => f.startsWith(`${prefix}-`) && f.endsWith('.mjs'));
  if (!name) throw new Error(`no ${prefix}-*.mjs chunk in ${dir}`);
  return join(dir, name);
}

/** Replaces a file of the private install for the duration of `body`. */
async function withReplaced(path: string, content: string | undefined, body: () => Promise<void>): Promise<void> {
  const saved = `${path}.saved`;
  await rename(path, saved);
  try {
    if (content !== undefined) {
      await writeFile(path, content);
      await chownTreeToPostgres(path);
    }
    await body();
  } finally {
    await rm(path, { force: true });
    await rename(saved, path);
  }
}

describe('exit codes hold whatever global options come first', () => {
  it('fetch with a missing %p (an argument error)', async () => {
    await expectEveryForm(['fetch', NAME], fetchFails);
  });

  it('fetch into a directory that does not exist (the ordinary failure path)', async () => {
    await expectEveryForm(['fetch', NAME, 'no-such-dir/RECOVERYXLOG'], fetchFails);
  });

  it('fetch with its build chunk deleted', async () => {
    await withReplaced(await chunk('fetch'), undefined, () => expectEveryForm(['fetch', NAME, 'pg_wal/RECOVERYXLOG'], fetchFails));
  });

  it('fetch with its build chunk unparsable', async () => {
    await withReplaced(await chunk('fetch'), 'export const = ;\n', () => expectEveryForm(['fetch', NAME, 'pg_wal/RECOVERYXLOG'], fetchFails));
  });

  it('fetch that throws outside any promise (uncaught exception)', async () => {
    const code = "export function runFetch() { setTimeout(() => { throw new Error('test: uncaught'); }, 0); return new Promise(() => {}); }\n";
    await withReplaced(await chunk('fetch'), code, () => expectEveryForm(['fetch', NAME, 'pg_wal/RECOVERYXLOG'], fetchFails));
  });

  it('fetch whose rejection nobody handles (unhandled rejection)', async () => {
    const code = "export function runFetch() { Promise.reject(new Error('test: unhandled')); return new Promise(() => {}); }\n";
    await withReplaced(await chunk('fetch'), code, () => expectEveryForm(['fetch', NAME, 'pg_wal/RECOVERYXLOG'], fetchFails));
  });

  it('fetch and push when dist/main.mjs is missing (the launcher answers)', async () => {
    await withReplaced(join(installRoot, 'dist', 'main.mjs'), undefined, async () => {
      await expectEveryForm(['fetch', NAME, 'pg_wal/RECOVERYXLOG'], fetchFails);
      await expectEveryForm(['push', `pg_wal/${NAME}`], () => 1);
    });
  });

  it('--store N before the command: the launcher still finds fetch when dist/main.mjs is missing, and a pinned fetch that cannot run stops recovery', async () => {
    const pinned: readonly Form[] = [
      { label: '--store 2', args: () => ['--store', '2'], env: () => ({ WALSHIP_STORE: storeUrl }) },
      { label: '-c F --store 1', args: (c) => ['-c', c, '--store', '1'], env: () => ({}) },
    ];
    await withReplaced(join(installRoot, 'dist', 'main.mjs'), undefined, () => expectEveryForm(['fetch', NAME, 'pg_wal/RECOVERYXLOG'], fetchFails, pinned));
    // With the bundle there: --store 2 without WALSHIP_STORE2 is a configuration error, which fetch never reports as "not found".
    await expectEveryForm(['fetch', NAME, 'pg_wal/RECOVERYXLOG'], fetchFails, pinned.slice(0, 1));
  });

  it('push, backup, init and agent refuse --store (they write the archive)', async () => {
    const form: Form = { label: '--store 2', args: () => ['--store', '2'], env: () => ({ WALSHIP_STORE: storeUrl }) };
    const push = await run(form, 'recovery', ['push', `pg_wal/${NAME}`]);
    expect(push.code).toBe(1);
    expect(push.stderr).toContain('--store 2 cannot be used with push');
    for (const command of [['backup'], ['init'], ['agent']]) {
      const r = await run(form, 'recovery', command);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`--store 2 cannot be used with ${command[0]}`);
    }
  });

  it('push with its build chunk deleted exits 1', async () => {
    await withReplaced(await chunk('push'), undefined, () => expectEveryForm(['push', `pg_wal/${NAME}`], () => 1));
  });

  it('fetch with any one build chunk deleted', async () => {
    // Whichever chunk is gone (a shared one that main.mjs might import
    // statically, or one only some commands load), fetch never answers
    // "not found" in archive recovery.
    const dir = join(installRoot, 'dist', 'chunks');
    const chunks = (await readdir(dir)).filter((f) => f.endsWith('.mjs')).sort();
    expect(chunks.length).toBeGreaterThan(3);
    const form = FORMS[2]!;
    for (const c of chunks) {
      await withReplaced(join(dir, c), undefined, () =>
        expectEveryForm(['fetch', NAME, 'no-such-dir/RECOVERYXLOG'], fetchFails, [form]).catch((err: unknown) => {
          throw new Error(`with ${c} deleted: ${String(err)}`);
        }),
      );
    }
  });
});
