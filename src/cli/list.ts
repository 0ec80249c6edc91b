import { bytes, listArchive, type ArchiveListing } from '../archive/index.js';
import { ConfigError } from '../errors.js';
import { commandContext, commandLogger, type GlobalOptions } from './context.js';
import { EXIT } from './exit-codes.js';
import { reportError } from './report.js';

export interface ListOptions {
  readonly timeline?: string;
  readonly json?: boolean;
}

/** walship list: timelines, their history, segment ranges, gaps and sizes. 0 listed, 2 usage, 3 could not read. */
export async function runList(opts: ListOptions, globals: GlobalOptions): Promise<number> {
  const log = commandLogger('list');
  let timeline: number | undefined;
  if (opts.timeline !== undefined) {
    timeline = /^[0-9]+$/.test(opts.timeline) ? Number(opts.timeline) : /^[0-9A-Fa-f]{8}$/.test(opts.timeline) ? Number.parseInt(opts.timeline, 16) : NaN;
    if (!Number.isSafeInteger(timeline) || timeline < 1) {
      log.error(`--timeline ${opts.timeline} is not a timeline: expected a number such as 2 (or 8 hex digits, 00000002)`);
      return EXIT.USAGE;
    }
  }
  try {
    const { store, keys } = await commandContext(globals, log);
    const listing = await listArchive(store, keys, { timeline });
    process.stdout.write(opts.json ? `${JSON.stringify(listing, null, 2)}\n` : render(listing, timeline));
    return EXIT.OK;
  } catch (err) {
    reportError(log, err);
    return err instanceof ConfigError ? EXIT.USAGE : EXIT.ERROR;
  }
}

function render(l: ArchiveListing, only: number | undefined): string {
  const out: string[] = [];
  out.push(
    `archive   ${l.store}`,
    `cluster   system ${l.systemIdentifier}${l.pgMajor ? `, PostgreSQL ${l.pgMajor}` : ''}, ${bytes(l.segmentSize)} segments, archive created ${l.createdAt}`,
  );
  if (l.timelines.length === 0) out.push('', only === undefined ? 'no WAL archived yet' : `nothing archived on timeline ${only}`);
  for (const t of l.timelines) {
    out.push('');
    const from = t.parent ? `  from timeline ${t.parent.timeline} at ${t.parent.switchLsn} (first segment ${t.parent.switchSegment})${t.parent.reason ? `: ${t.parent.reason}` : ''}` : '';
    out.push(`timeline ${t.timeline}${from}`);
    if (t.historyFile) {
      const state = t.historyFile.state === 'ok' ? '' : `  ${t.historyFile.state.toUpperCase()}${t.historyFile.message ? `: ${t.historyFile.message}` : ''}`;
      out.push(`  history   ${t.historyFile.name}${state}`);
    }
    if (t.ranges.length === 0) out.push('  segments  none');
    const runsInOrder = [
      ...t.ranges.map((r) => ({ ...r, line: `  segments  ${r.first}${r.count > 1 ? ` … ${r.last}` : ''}  (${r.count})` })),
      ...t.gaps.map((g) => ({ ...g, line: `  GAP       ${g.first}${g.count > 1 ? ` … ${g.last}` : ''}  (${g.count} missing)` })),
    ].sort((a, b) => (a.first < b.first ? -1 : a.first > b.first ? 1 : 0));
    for (const r of runsInOrder) out.push(r.line);
    for (const p of t.partials) out.push(`  partial   ${p}`);
    for (const b of t.backups) out.push(`  backup    ${b}`);
    out.push(
      `  size      ${bytes(t.rawBytes)} raw, ${bytes(t.storedBytes)} stored${t.oldestArchived ? `; archived ${t.oldestArchived} … ${t.newestArchived}` : ''}`,
    );
  }
  if (l.baseBackups.length > 0) {
    out.push('', 'base backups (from .backup files)');
    for (const b of l.baseBackups) {
      out.push(`  ${b.label ? `'${b.label}'  ` : ''}${b.name}  start ${b.start}${b.stop ? `  stop ${b.stop}` : ''}${b.startTime ? `  ${b.startTime}` : ''}${b.stopTime ? ` … ${b.stopTime}` : ''}`);
    }
  }
  const unreadable = l.unreadable.filter((p) => !p.name.endsWith('.history'));
  if (unreadable.length > 0) {
    out.push('', 'could not read');
    for (const p of unreadable) out.push(`  ${p.key}: ${p.message}`);
  }
  if (l.strays.length > 0) {
    out.push('', 'not walship objects (left alone)');
    for (const s of l.strays) out.push(`  ${s}`);
  }
  out.push(
    '',
    `total     ${l.totals.objects} objects, ${bytes(l.totals.rawBytes)} raw${l.totals.rawExact ? '' : ' (some history/backup files unread)'}, ${bytes(l.totals.storedBytes)} stored${
      l.totals.rawBytes > 0 ? ` (${((100 * l.totals.storedBytes) / l.totals.rawBytes).toFixed(0)} %)` : ''
    }`,
  );
  return `${out.join('\n')}\n`;
}
