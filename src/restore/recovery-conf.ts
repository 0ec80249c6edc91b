import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RecoveryTarget, TargetAction } from './target.js';
import { writeSmallFile } from './write.js';

/**
 * The recovery settings walship writes into postgresql.auto.conf (read
 * last, so it wins over postgresql.conf and its includes).
 *
 * PostgreSQL refuses to start ("multiple recovery targets specified") when
 * more than one recovery_target* has a value. So earlier restore_command and
 * recovery_target* lines in postgresql.auto.conf are commented out, and every
 * target setting walship does not use is written empty *before* the one it
 * uses: a stale target in postgresql.conf or an included file is then
 * overridden by an empty value (PostgreSQL applies only the last value of
 * each setting, in file order, and an empty target while none is set yet is
 * accepted).
 */
export const TARGET_SETTINGS = ['recovery_target', 'recovery_target_lsn', 'recovery_target_name', 'recovery_target_time', 'recovery_target_xid'] as const;

const RECOVERY_LINE = /^\s*(restore_command|recovery_target\w*)\s*=/i;
const ARCHIVE_MODE_LINE = /^\s*archive_mode\s*=/i;

export function quote(v: string): string {
  return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

export interface RecoverySettings {
  readonly restoreCommand: string;
  readonly target: RecoveryTarget;
  readonly timeline: number;
  readonly action: TargetAction;
  readonly archiveModeOff: boolean;
  readonly comment: string;
}

export function targetSetting(t: RecoveryTarget): [string, string] | undefined {
  switch (t.kind) {
    case 'time':
      return ['recovery_target_time', t.text];
    case 'lsn':
      return ['recovery_target_lsn', t.text];
    case 'name':
      return ['recovery_target_name', t.text];
    case 'xid':
      return ['recovery_target_xid', t.text];
    case 'immediate':
      return ['recovery_target', 'immediate'];
    case 'latest':
      return undefined;
  }
}

/** The new postgresql.auto.conf: the old one with recovery lines commented out, then walship's block. */
export function rewriteAutoConf(old: string, s: RecoverySettings): { text: string; commentedOut: string[] } {
  const commentedOut: string[] = [];
  const lines = old === '' ? [] : old.replace(/\n$/, '').split('\n');
  const kept = lines.map((l) => {
    if (RECOVERY_LINE.test(l) || (s.archiveModeOff && ARCHIVE_MODE_LINE.test(l))) {
      commentedOut.push(l.trim());
      return `# ${l}    # commented out by walship restore`;
    }
    return l;
  });
  const chosen = targetSetting(s.target);
  const block = [
    '',
    `# ${s.comment}`,
    `restore_command = ${quote(s.restoreCommand)}`,
    ...TARGET_SETTINGS.filter((n) => n !== chosen?.[0]).map((n) => `${n} = ''`),
    ...(chosen ? [`${chosen[0]} = ${quote(chosen[1])}`] : []),
    `recovery_target_timeline = ${quote(String(s.timeline))}`,
    `recovery_target_action = ${quote(s.action)}`,
    ...(s.archiveModeOff ? ["archive_mode = 'off'"] : []),
    '',
  ];
  return { text: `${kept.join('\n')}${kept.length ? '\n' : ''}${block.join('\n')}`, commentedOut };
}

/**
 * Appends server settings under a comment to postgresql.auto.conf (a drill's
 * port, socket and small memory): PostgreSQL applies the last value of each
 * setting, so these win over the copied postgresql.conf and over the lines
 * above. pg_verifybackup ignores postgresql.auto.conf, so this may follow
 * the restore's own check.
 */
export async function appendServerSettings(dataDir: string, settings: readonly (readonly [string, string])[], comment: string): Promise<void> {
  const path = join(dataDir, 'postgresql.auto.conf');
  const old = await readFile(path, 'utf8').catch(() => '');
  const block = ['', `# ${comment}`, ...settings.map(([k, v]) => `${k} = ${quote(v)}`), ''].join('\n');
  await writeSmallFile(path, `${old}${old === '' || old.endsWith('\n') ? '' : '\n'}${block}`);
}

/**
 * Configuration outside the data directory that sets recovery parameters
 * (Debian keeps postgresql.conf in /etc/postgresql/<version>/<cluster>/):
 * walship's empty values override them, but the operator should know.
 */
export async function outsideRecoverySettings(etcRoot = '/etc/postgresql'): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string, depth: number): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(dir, n);
      if (n.endsWith('.conf')) {
        const text = await readFile(p, 'utf8').catch(() => '');
        text.split('\n').forEach((l, i) => {
          if (RECOVERY_LINE.test(l)) found.push(`${p}:${i + 1}: ${l.trim()}`);
        });
      } else if (depth < 3) await walk(p, depth + 1);
    }
  };
  await walk(etcRoot, 0);
  return found;
}
