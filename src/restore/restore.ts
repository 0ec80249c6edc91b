import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BackupDescriptor, Progress } from '../backup/index.js';
import type { KeyProvider } from '../crypto/index.js';
import { CorruptObjectError, errorMessage } from '../errors.js';
import { collectWhileRestoring } from '../memory.js';
import type { Store } from '../store/index.js';
import { chooseBackup, type Choice } from './choose.js';
import { chownTree, type Owner } from './owner.js';
import type { ChildCommand } from '../child/index.js';
import { partProcesses } from './part-processes.js';
import { rewriteAutoConf } from './recovery-conf.js';
import { pgProgram, runProgram } from './start.js';
import type { RecoveryTarget, TargetAction, TimelineChoice } from './target.js';
import { prepareEmptyDir, removeControl, tablespaceTargets, writeParts, writeSmallFile } from './write.js';

export interface RestoreOptions {
  readonly store: Store;
  readonly keys: KeyProvider | undefined;
  readonly backups: readonly BackupDescriptor[];
  readonly dataDir: string;
  readonly requested: string | undefined;
  readonly target: RecoveryTarget;
  readonly timeline: TimelineChoice;
  readonly action: TargetAction;
  readonly archiveModeOff: boolean;
  readonly standby: boolean;
  readonly tablespaceMap: readonly string[];
  readonly jobs: number;
  readonly restoreCommand: string;
  readonly comment: (backup: BackupDescriptor) => string;
  readonly onChosen?: (c: Choice) => Progress | undefined;
  readonly onPart?: (n: number, total: number, rawBytes: number) => void;
  readonly warn: (message: string) => void;
  /** --owner: everything restored is given to this user (walship runs as root). */
  readonly owner?: Owner;
  /**
   * Runs once the backup is chosen and before anything is written (a drill
   * checks free space and PostgreSQL's programs there, and places the
   * tablespaces); what it returns overrides `tablespaceMap`. A throw stops
   * the restore with nothing written.
   */
  readonly preflight?: (c: Choice) => Promise<{ readonly tablespaceMap?: readonly string[] } | undefined>;
  /** Write some parts in processes of their own (the CLI's `walship restore-part`); without it, all here. */
  readonly partProcesses?: ChildCommand;
}

export interface RestoreResult {
  readonly choice: Choice;
  readonly commentedOut: readonly string[];
  readonly verified: 'passed' | 'skipped';
}

/**
 * walship restore, up to a directory PostgreSQL can start: choose the
 * backup (every refusal comes before anything is written), check that the
 * directories are empty, download and verify the parts in parallel, write
 * backup_label, tablespace_map, backup_manifest, the recovery settings and
 * the signal file, then pg_control last, and run pg_verifybackup. On any
 * failure after writing began, pg_control is removed (or never written),
 * so the directory cannot be started by mistake.
 */
export async function restoreBackup(o: RestoreOptions): Promise<RestoreResult> {
  const choice = await chooseBackup({ store: o.store, keys: o.keys, backups: o.backups, requested: o.requested, target: o.target, timeline: o.timeline });
  const b = choice.backup;
  const pre = await o.preflight?.(choice);
  const tablespaceDirs = await tablespaceTargets(b, pre?.tablespaceMap ?? o.tablespaceMap);
  const roots = [await prepareEmptyDir(o.dataDir, 'the data directory')];
  for (const [oid, dir] of tablespaceDirs) roots.push(await prepareEmptyDir(dir, `the directory of tablespace ${oid}`));
  const progress = o.onChosen?.(choice);
  const stopCollecting = collectWhileRestoring();
  try {
    const meta = await writeParts({
      reader: { store: o.store, keys: o.keys, plaintextRequired: o.keys?.encrypts === true },
      backup: b,
      dataDir: o.dataDir,
      tablespaceDirs,
      jobs: o.jobs,
      onBytes: progress?.add,
      onPart: o.onPart,
      elsewhere: o.partProcesses ? partProcesses(o.partProcesses) : undefined,
    }).finally(stopCollecting);
    progress?.done();
    await writeSmallFile(join(o.dataDir, 'backup_label'), meta.backupLabel);
    let remapped = false;
    if (meta.tablespaceMap) {
      const map = meta.tablespaceMap
        .toString('utf8')
        .split('\n')
        .map((l) => {
          const m = /^(\d+) (.*)$/.exec(l);
          if (!m) return l;
          const to = tablespaceDirs.get(m[1]!);
          if (to !== undefined && to !== m[2]) remapped = true;
          return to === undefined ? l : `${m[1]} ${to}`;
        })
        .join('\n');
      await writeSmallFile(join(o.dataDir, 'tablespace_map'), map);
    }
    await writeSmallFile(join(o.dataDir, 'backup_manifest'), meta.backupManifest);
    const old = await readFile(join(o.dataDir, 'postgresql.auto.conf'), 'utf8').catch(() => '');
    const auto = rewriteAutoConf(old, {
      restoreCommand: o.restoreCommand,
      target: o.target,
      timeline: choice.timeline,
      action: o.action,
      archiveModeOff: o.archiveModeOff,
      comment: o.comment(b),
    });
    await writeSmallFile(join(o.dataDir, 'postgresql.auto.conf'), auto.text);
    await writeSmallFile(join(o.dataDir, o.standby ? 'standby.signal' : 'recovery.signal'), '');
    // Last: without pg_control nothing can start this directory.
    await writeSmallFile(join(o.dataDir, 'global', 'pg_control'), meta.pgControl);
    const verifier = pgProgram('pg_verifybackup', b.pgVersion);
    const r = await runProgram(verifier, ['-n', '-q', ...(remapped ? ['-i', 'tablespace_map'] : []), o.dataDir]);
    let verified: 'passed' | 'skipped' = 'passed';
    if (r.code === null) {
      verified = 'skipped';
      o.warn(`pg_verifybackup could not be run (${r.output.trim()}): the restored files were checked against the descriptor's BLAKE3s only`);
    } else if (r.code !== 0) {
      throw new CorruptObjectError(`pg_verifybackup finds the restored directory does not match its backup_manifest:\n${r.output.trim()}`, {
        hint: 'the directory was left without global/pg_control so that it cannot be started; restore another backup',
      });
    }
    // Last, after pg_verifybackup: until the owner has the files they are
    // root's, which PostgreSQL cannot start, so an unverified directory is
    // never startable; a failed chown goes through the cleanup below.
    if (o.owner) for (const r of roots) await chownTree(r, o.owner);
    return { choice, commentedOut: auto.commentedOut, verified };
  } catch (err) {
    progress?.done();
    await removeControl(o.dataDir).catch((e: unknown) => o.warn(`could not remove ${o.dataDir}/global/pg_control after the failure: ${errorMessage(e)}`));
    throw err;
  }
}
