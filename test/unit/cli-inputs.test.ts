/**
 * Inputs walship gets from outside: %p as PostgreSQL and pg_rewind pass it,
 * config files whose lines may hold passwords, and history file names.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { ConfigError, InvalidInputError } from '../../src/errors.js';
import { checkPathArgument } from '../../src/pipeline/paths.js';
import { InvalidWalNameError, parseWalName } from '../../src/wal/index.js';

const root = mkdtempSync(join(tmpdir(), 'walship-inputs-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A directory that looks like a data directory to walship: PG_VERSION and pg_wal. */
function dataDir(name: string): string {
  const d = join(root, name);
  mkdirSync(join(d, 'pg_wal'), { recursive: true });
  writeFileSync(join(d, 'PG_VERSION'), '15\n');
  return d;
}

describe('%p with ".." (pg_rewind -c -D ../data)', () => {
  const data = dataDir('data');
  const elsewhere = join(root, 'work');
  mkdirSync(elsewhere, { recursive: true });

  it('accepts the path pg_rewind builds from a relative -D, run from another directory', () => {
    // fe_archive.c: "%s/pg_wal/%s" with the -D argument, in pg_rewind's working directory.
    expect(checkPathArgument('../data/pg_wal/000000010000000000000003', '%p', elsewhere)).toBe('../data/pg_wal/000000010000000000000003');
  });

  it('accepts a ".." that stays inside the data directory it runs in', () => {
    expect(checkPathArgument('pg_wal/../pg_wal/RECOVERYXLOG', '%p', data)).toBe('pg_wal/../pg_wal/RECOVERYXLOG');
  });

  it('refuses a ".." that leads out of the data directory', () => {
    for (const p of ['../data/pg_wal/../../escape', 'pg_wal/../../work/x', '../work/pg_wal/000000010000000000000003']) {
      expect(() => checkPathArgument(p, '%p', data), p).toThrow(InvalidInputError);
      expect(() => checkPathArgument(p, '%p', data), p).toThrow(/".." component that leaves the data directory/);
    }
  });

  it('refuses a pg_wal that is not in a data directory', () => {
    mkdirSync(join(root, 'notdata', 'pg_wal'), { recursive: true });
    expect(() => checkPathArgument('../notdata/pg_wal/000000010000000000000003', '%p', elsewhere)).toThrow(InvalidInputError);
  });

  it('still refuses empty paths and NUL', () => {
    expect(() => checkPathArgument('', '%p', data)).toThrow(InvalidInputError);
    expect(() => checkPathArgument('pg_wal/x\0y', '%p', data)).toThrow(InvalidInputError);
  });
});

describe('config errors never show a value that may hold a password', () => {
  const SECRET = 'Sup3rSecretPw';

  function configFile(text: string): string {
    const p = join(root, `c${Math.random().toString(36).slice(2)}.conf`);
    writeFileSync(p, text);
    return p;
  }

  function messageOf(fn: () => unknown): string {
    try {
      fn();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const e = err as ConfigError;
      return `${e.message} ${e.hint ?? ''}`;
    }
    throw new Error('expected a ConfigError');
  }

  it('a line without "=" is named by file, line and setting, not echoed', () => {
    const p = configFile(`WALSHIP_STORE = file:///var/lib/walship\nWALSHIP_PG_DSN postgresql://walship:${SECRET}@db/postgres\n`);
    const msg = messageOf(() => loadConfig({ configFile: p, env: {} }));
    expect(msg).toContain(`${p}:2`);
    expect(msg).toContain('WALSHIP_PG_DSN');
    expect(msg).not.toContain(SECRET);
  });

  it('an unknown key that is not a setting name is not echoed', () => {
    const p = configFile(`WALSHIP_STORE = file:///var/lib/walship\nwalship:${SECRET}@db = x\n`);
    const msg = messageOf(() => loadConfig({ configFile: p, env: {} }));
    expect(msg).toContain(`${p}:2`);
    expect(msg).not.toContain(SECRET);
  });

  it.each([
    ['WALSHIP_STORE', `s3://walship:${SECRET}@bucket/prefix`],
    ['WALSHIP_S3_ENDPOINT', `ftp://walship:${SECRET}@minio:9000`],
    ['WALSHIP_KMS_ENDPOINT', `ftp://walship:${SECRET}@kms:4566`],
  ])('an invalid %s is named, its value is not shown', (name, value) => {
    const env = { WALSHIP_STORE: 'file:///var/lib/walship', [name]: value };
    const fromEnv = messageOf(() => loadConfig({ env }));
    expect(fromEnv).toContain(name);
    expect(fromEnv).not.toContain(SECRET);
    const p = configFile(`WALSHIP_STORE = file:///var/lib/walship\n${name} = ${value}\n`);
    const fromFile = messageOf(() => loadConfig({ configFile: p, env: {} }));
    expect(fromFile).toContain(`${name} (${p}:2)`);
    expect(fromFile).not.toContain(SECRET);
  });
});

describe('history file names', () => {
  it('timeline 0 (InvalidTimeLineID) has no history file name', () => {
    expect(() => parseWalName('00000000.history')).toThrow(InvalidWalNameError);
  });

  it('00000001.history parses: PostgreSQL asks for it at promotion, and must hear "not found"', () => {
    expect(parseWalName('00000001.history')).toMatchObject({ kind: 'history', timeline: 1 });
  });

  it('every later timeline has one', () => {
    expect(parseWalName('00000002.history')).toMatchObject({ kind: 'history', timeline: 2 });
    expect(parseWalName('0000000A.history')).toMatchObject({ kind: 'history', timeline: 10 });
    expect(parseWalName('FFFFFFFF.history')).toMatchObject({ kind: 'history', timeline: 0xffffffff });
  });
});
