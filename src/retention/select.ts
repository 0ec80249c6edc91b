import type { BackupDescriptor } from '../backup/index.js';

/**
 * Which walship backups a retention policy keeps. Pure: the descriptors and
 * the clock in, the decision out, so that it can be tested on synthetic
 * catalogues.
 *
 * A window of backups is kept (the newest N, or those that ended in the last
 * N days), plus the newest backup that ended before a days window starts: a
 * restore to a point early in the window starts from a backup that ended
 * before that point, so without it the window's first hours could not be
 * restored. The newest backup is always kept.
 */
export type BackupPolicy = { readonly kind: 'count'; readonly count: number } | { readonly kind: 'days'; readonly days: number };

export interface KeptBackup {
  readonly backup: BackupDescriptor;
  /** Why it stays, in words. */
  readonly why: string;
}

export interface BackupSelection {
  /** Oldest first (by end time). Never empty when there was a backup. */
  readonly keep: readonly KeptBackup[];
  /** Oldest first. */
  readonly remove: readonly BackupDescriptor[];
  /** The policy in words, for the plan. */
  readonly policy: string;
}

const byEnd = (a: BackupDescriptor, b: BackupDescriptor): number => (a.stopTime < b.stopTime ? -1 : a.stopTime > b.stopTime ? 1 : a.id < b.id ? -1 : 1);

/** A backup kept whatever the policy says, and why (the one a restore of the newest timeline starts from). */
export interface MustKeep {
  readonly id: string;
  readonly why: string;
}

export function selectBackups(backups: readonly BackupDescriptor[], policy: BackupPolicy, now: Date, mustKeep?: MustKeep): BackupSelection {
  const sorted = [...backups].sort(byEnd);
  const keep = new Map<string, string>();
  let words: string;
  if (policy.kind === 'count') {
    if (!Number.isInteger(policy.count) || policy.count < 1) throw new RangeError(`keep at least one backup, not ${policy.count}`);
    words = `--keep-backups ${policy.count}: the newest ${policy.count === 1 ? 'backup' : `${policy.count} backups`}`;
    sorted.slice(-policy.count).forEach((b, i, kept) => keep.set(b.id, kept.length - i === 1 ? 'the newest backup' : `the ${kept.length - i}${ordinal(kept.length - i)} newest backup`));
  } else {
    if (!(policy.days > 0)) throw new RangeError(`a window of at least one day, not ${policy.days}`);
    const cutoff = new Date(now.getTime() - policy.days * 86_400_000);
    words = `--keep-backup-days ${policy.days}: backups that ended since ${cutoff.toISOString()}, and the newest one before`;
    const inWindow = sorted.filter((b) => Date.parse(b.stopTime) >= cutoff.getTime());
    for (const b of inWindow) keep.set(b.id, `ended ${b.stopTime}, in the window`);
    const before = sorted.filter((b) => Date.parse(b.stopTime) < cutoff.getTime()).at(-1);
    if (before) {
      keep.set(
        before.id,
        inWindow.length > 0
          ? `the newest backup that ended before the window (${cutoff.toISOString()}): restores to the window's start begin from it`
          : `the newest backup: none ended in the window, and the last backup is never removed`,
      );
    }
  }
  if (mustKeep && !keep.has(mustKeep.id) && sorted.some((b) => b.id === mustKeep.id)) keep.set(mustKeep.id, mustKeep.why);
  return {
    keep: sorted.filter((b) => keep.has(b.id)).map((b) => ({ backup: b, why: keep.get(b.id)! })),
    remove: sorted.filter((b) => !keep.has(b.id)),
    policy: words,
  };
}

function ordinal(n: number): string {
  return n % 10 === 1 && n % 100 !== 11 ? 'st' : n % 10 === 2 && n % 100 !== 12 ? 'nd' : n % 10 === 3 && n % 100 !== 13 ? 'rd' : 'th';
}
