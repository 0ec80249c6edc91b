import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../src/errors.js';
import { chownTree, resolveOwner } from '../../src/restore/owner.js';

/** restore --owner: resolved and checked before anything is written; the tree handed over without following links. */

const id = (args: string[]) => Number(execFileSync('id', args).toString().trim());
const pgUid = id(['-u', 'postgres']);
const pgGid = id(['-g', 'postgres']);
const asRoot = process.getuid?.() === 0;

describe('--owner USER[:GROUP]', () => {
  it('resolves a user to its uid and primary group, or to the group given', async () => {
    expect(await resolveOwner('postgres', 0)).toEqual({ user: 'postgres', uid: pgUid, gid: pgGid });
    const daemonGid = Number(execFileSync('getent', ['group', 'daemon']).toString().split(':')[2]);
    expect(await resolveOwner('postgres:daemon', 0)).toEqual({ user: 'postgres', uid: pgUid, gid: daemonGid });
  });

  for (const [spec, why] of [
    ['root', /belong to root, and PostgreSQL refuses to run as root/],
    ['0', /belong to root/],
    ['root:postgres', /belong to root/],
    ['no-such-user-walship', /there is no user "no-such-user-walship"/],
    ['postgres:no-such-group-walship', /there is no group "no-such-group-walship"/],
    ['postgres:daemon:x', /expected USER or USER:GROUP/],
    ['', /expected USER or USER:GROUP/],
  ] as const) {
    it(`"${spec}" is refused: ${why.source}`, async () => {
      const err = await resolveOwner(spec, 0).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidInputError);
      expect((err as Error).message).toMatch(why);
    });
  }

  it('without root, only the user walship runs as can be named (chown to another user needs root)', async () => {
    const err = await resolveOwner('postgres', pgUid + 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as InvalidInputError).message).toMatch(/only root can give files to another user/);
    expect((err as InvalidInputError).hint).toMatch(/as root/);
    expect((await resolveOwner('postgres', pgUid)).uid).toBe(pgUid);
  });

  it.runIf(asRoot)('chownTree gives the tree away, symbolic links themselves and never what they point to', async () => {
    const base = mkdtempSync(join(tmpdir(), 'walship-owner-'));
    try {
      const root = join(base, 'data');
      const outside = join(base, 'outside');
      mkdirSync(join(root, 'global'), { recursive: true });
      mkdirSync(join(root, 'pg_tblspc'));
      mkdirSync(outside);
      writeFileSync(join(root, 'global', 'pg_control'), 'x');
      writeFileSync(join(outside, 'f'), 'y');
      symlinkSync(outside, join(root, 'pg_tblspc', '16384'));
      await chownTree(root, { user: 'postgres', uid: pgUid, gid: pgGid });
      for (const p of [root, join(root, 'global'), join(root, 'global', 'pg_control'), join(root, 'pg_tblspc'), join(root, 'pg_tblspc', '16384')]) {
        const st = lstatSync(p);
        expect([p, st.uid, st.gid]).toEqual([p, pgUid, pgGid]);
      }
      expect(lstatSync(outside).uid).toBe(0);
      expect(lstatSync(join(outside, 'f')).uid).toBe(0);
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });

  it.runIf(asRoot)('chownTree resolves a root that is a symbolic link (/var/lib/pg/main -> /data/pg) and hands over what it points to', async () => {
    const base = mkdtempSync(join(tmpdir(), 'walship-owner-'));
    try {
      const real = join(base, 'real');
      mkdirSync(join(real, 'global'), { recursive: true });
      writeFileSync(join(real, 'global', 'pg_control'), 'x');
      const link = join(base, 'main');
      symlinkSync(real, link);
      await chownTree(link, { user: 'postgres', uid: pgUid, gid: pgGid });
      for (const p of [real, join(real, 'global'), join(real, 'global', 'pg_control')]) expect([p, lstatSync(p).uid]).toEqual([p, pgUid]);
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});
