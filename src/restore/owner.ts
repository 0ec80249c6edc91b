import { execFile } from 'node:child_process';
import { realpath } from 'node:fs/promises';
import { promisify } from 'node:util';
import { InvalidInputError, LocalIoError } from '../errors.js';

/**
 * `restore --owner USER[:GROUP]`: walship restore run as root (a systemd
 * unit, a runbook's sudo) writes root-owned files that PostgreSQL, which
 * never runs as root, cannot use. Everything restored is handed to USER
 * (and GROUP, else USER's primary group) before the restore reports success.
 */
export interface Owner {
  readonly user: string;
  readonly uid: number;
  readonly gid: number;
}

const run = promisify(execFile);

/** One getent(1) entry's fields, or undefined when there is none. */
async function getent(db: 'passwd' | 'group', key: string): Promise<string[] | undefined> {
  try {
    const { stdout } = await run('getent', [db, key]);
    const line = stdout.split('\n')[0] ?? '';
    return line === '' ? undefined : line.split(':');
  } catch (err) {
    // getent exits 2 for "no such entry"; anything else (not installed) is reported.
    if ((err as { code?: unknown }).code === 2) return undefined;
    throw new LocalIoError(`cannot look up ${db === 'passwd' ? 'user' : 'group'} "${key}" (getent: ${(err as Error).message})`, { cause: err });
  }
}

/**
 * Resolves and checks --owner before anything is written: a known user (and
 * group), never root (PostgreSQL refuses to start as root, so a root-owned
 * data directory is useless), and walship must run as root to chown (or
 * already be that user, when there is nothing to change).
 */
export async function resolveOwner(spec: string, currentUid: number | undefined = process.getuid?.()): Promise<Owner> {
  const m = /^([^:\s]+)(?::([^:\s]+))?$/.exec(spec);
  if (!m) throw new InvalidInputError(`--owner "${spec}": expected USER or USER:GROUP`);
  const [, userSpec, groupSpec] = m as unknown as [string, string, string | undefined];
  const pw = await getent('passwd', userSpec);
  if (!pw) throw new InvalidInputError(`--owner ${spec}: there is no user "${userSpec}" on this host`, { hint: 'name the OS user PostgreSQL runs as (usually postgres)' });
  const uid = Number(pw[2]);
  let gid = Number(pw[3]);
  if (groupSpec !== undefined) {
    const gr = await getent('group', groupSpec);
    if (!gr) throw new InvalidInputError(`--owner ${spec}: there is no group "${groupSpec}" on this host`);
    gid = Number(gr[2]);
  }
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new LocalIoError(`--owner ${spec}: getent gave no numeric ids`);
  if (uid === 0) {
    throw new InvalidInputError(`--owner ${spec}: the restored directory would belong to root, and PostgreSQL refuses to run as root`, {
      hint: 'name the OS user PostgreSQL runs as (usually postgres)',
    });
  }
  if (currentUid !== undefined && currentUid !== 0 && currentUid !== uid) {
    throw new InvalidInputError(`--owner ${spec}: only root can give files to another user, and walship runs as uid ${currentUid}`, {
      hint: `run walship restore as root (sudo), or as ${pw[0]} itself without --owner`,
    });
  }
  return { user: pw[0]!, uid, gid };
}

/**
 * Gives `root` and everything under it to the owner, without following
 * symbolic links (pg_tblspc/<oid> links are changed themselves; the
 * tablespace directories they point to are passed as roots of their own).
 *
 * coreutils' chown -R does the walk, not a loop of lchown calls here: once
 * the first directory belongs to the owner, that user could swap a
 * subdirectory for a symbolic link between our lstat and readdir, and a
 * root-run walk would then give away files outside the data directory.
 * chown's traversal (fts, physical, descriptor-relative) does not follow
 * such a swap. A root that is itself a symbolic link (/var/lib/pg/main ->
 * /data/pg) is resolved first, so that its content is handed over too.
 */
export async function chownTree(root: string, owner: Owner): Promise<void> {
  let real: string;
  try {
    real = await realpath(root);
  } catch (err) {
    throw new LocalIoError(`cannot resolve ${root} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err });
  }
  try {
    await run('chown', ['-R', '-P', '--no-dereference', `${owner.uid}:${owner.gid}`, '--', real]);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new LocalIoError(`cannot give ${real} to ${owner.user} (chown: ${(e.stderr ?? e.message).trim()})`, { cause: err });
  }
}
