import { parseLsn } from '../archive/history.js';
import { InvalidInputError } from '../errors.js';

/**
 * What the operator asked to recover to, checked before anything is read
 * or written. Each kind maps to one recovery_target_* setting.
 */
export type RecoveryTarget =
  | { readonly kind: 'time'; readonly text: string; readonly ms: number }
  | { readonly kind: 'lsn'; readonly text: string; readonly lsn: bigint }
  | { readonly kind: 'name'; readonly text: string }
  | { readonly kind: 'xid'; readonly text: string }
  | { readonly kind: 'immediate' }
  /** No target: replay all archived WAL. */
  | { readonly kind: 'latest' };

export type TimelineChoice = { readonly kind: 'latest' } | { readonly kind: 'current' } | { readonly kind: 'number'; readonly timeline: number };

export type TargetAction = 'promote' | 'pause' | 'shutdown';

export interface TargetOptions {
  readonly targetTime?: string;
  readonly targetLsn?: string;
  readonly targetName?: string;
  readonly targetXid?: string;
  readonly target?: string;
  readonly targetTimeline?: string;
  readonly targetAction?: string;
}

/** A time with an explicit zone: PostgreSQL and walship must read it the same way. */
const TIME = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)\s*(Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)$/i;

export function parseTime(text: string): number {
  const m = TIME.exec(text.trim());
  if (!m) {
    throw new InvalidInputError(`--target-time "${text}" is not a time with a zone`, {
      hint: "write it as '2026-12-01 14:30:00+00' (or …Z, …UTC, …+01:00): without a zone PostgreSQL and walship could read it differently",
    });
  }
  let zone = m[3]!.toUpperCase();
  if (zone === 'UTC' || zone === 'GMT') zone = 'Z';
  else if (/^[+-]\d{2}$/.test(zone)) zone = `${zone}:00`;
  else if (/^[+-]\d{4}$/.test(zone)) zone = `${zone.slice(0, 3)}:${zone.slice(3)}`;
  const frac = m[2]!.includes('.') ? m[2]!.replace(/(\.\d{3})\d+$/, '$1') : m[2]!;
  const ms = Date.parse(`${m[1]}T${frac}${zone}`);
  if (Number.isNaN(ms)) throw new InvalidInputError(`--target-time "${text}" is not a valid time`);
  return ms;
}

export function parseTarget(o: TargetOptions): { target: RecoveryTarget; timeline: TimelineChoice; action: TargetAction } {
  const given = [
    o.targetTime !== undefined && '--target-time',
    o.targetLsn !== undefined && '--target-lsn',
    o.targetName !== undefined && '--target-name',
    o.targetXid !== undefined && '--target-xid',
    o.target !== undefined && '--target',
  ].filter((x): x is string => typeof x === 'string');
  if (given.length > 1) throw new InvalidInputError(`give one recovery target, not ${given.join(' and ')}`);
  let target: RecoveryTarget = { kind: 'latest' };
  if (o.targetTime !== undefined) target = { kind: 'time', text: o.targetTime.trim(), ms: parseTime(o.targetTime) };
  else if (o.targetLsn !== undefined) {
    try {
      target = { kind: 'lsn', text: o.targetLsn.trim().toUpperCase(), lsn: parseLsn(o.targetLsn) };
    } catch {
      throw new InvalidInputError(`--target-lsn "${o.targetLsn}" is not an LSN (expected e.g. 0/3000060)`);
    }
  } else if (o.targetName !== undefined) {
    if (o.targetName === '' || o.targetName.length > 63) throw new InvalidInputError('--target-name must be 1 to 63 characters (a restore point name)');
    target = { kind: 'name', text: o.targetName };
  } else if (o.targetXid !== undefined) {
    if (!/^\d+$/.test(o.targetXid.trim())) throw new InvalidInputError(`--target-xid "${o.targetXid}" is not a transaction id (digits)`);
    target = { kind: 'xid', text: o.targetXid.trim() };
  } else if (o.target !== undefined) {
    if (o.target !== 'immediate') throw new InvalidInputError(`--target ${o.target}: the only value is immediate`);
    target = { kind: 'immediate' };
  }
  let timeline: TimelineChoice = { kind: 'latest' };
  const t = o.targetTimeline?.trim();
  if (t !== undefined && t !== 'latest') {
    if (t === 'current') timeline = { kind: 'current' };
    else if (/^\d+$/.test(t) && Number(t) >= 1) timeline = { kind: 'number', timeline: Number(t) };
    else throw new InvalidInputError(`--target-timeline ${t}: expected latest, current or a timeline number`);
  }
  const a = o.targetAction ?? 'promote';
  if (a !== 'promote' && a !== 'pause' && a !== 'shutdown') throw new InvalidInputError(`--target-action ${a}: expected promote, pause or shutdown`);
  return { target, timeline, action: a };
}

export function describeTarget(t: RecoveryTarget): string {
  switch (t.kind) {
    case 'time':
      return `time ${t.text}`;
    case 'lsn':
      return `LSN ${t.text}`;
    case 'name':
      return `restore point "${t.text}"`;
    case 'xid':
      return `transaction ${t.text}`;
    case 'immediate':
      return 'the end of the backup (immediate)';
    case 'latest':
      return 'the end of the archived WAL';
  }
}
