// The backup/restore rows of the report (issue 11): their targets and their table.
import { paired } from './report.mjs';

const f = (n, d = 1) => (n === undefined || Number.isNaN(n) ? '–' : n.toFixed(d));
const mb = (kb) => (kb === undefined ? '–' : (kb / 1024).toFixed(0));
const x = (r) => (r === undefined ? '–' : `${r.toFixed(2)}×`);
/** A ratio against a target of 1: three decimals where two would round a miss up to "1.00×". */
const x1 = (r) => (r !== undefined && r < 1 && r.toFixed(2) === '1.00' ? `${r.toFixed(3)}×` : x(r));
const perPass = (p) => (p.list.length > 1 ? ` (per pass: ${p.list.map((v) => v.toFixed(2)).join(', ')})` : '');
const isWalship = (label) => label.startsWith('walship') || label.startsWith('node');
const TOOL = { walship: 'walship', pgbackrest: 'pgBackRest' };
const COMMAND = {
  backup: { walship: '`walship backup --fast`', pgbackrest: '`pgbackrest --log-level-console=info --type=full backup` (start-fast=y)' },
  restore: { walship: '`walship restore --pgdata DIR -j 2`', pgbackrest: '`pgbackrest --log-level-console=info restore --pg1-path=DIR`' },
};

const phaseText = (ph) => Object.entries(ph).map(([k, v]) => `${k} ${f(v)} s`).join(', ');

const find = (rows, tool) => rows?.find((r) => r.tool === tool);

/** The largest process among rows, optionally only walship's own. */
function largest(rows, which) {
  let best;
  for (const r of rows) {
    for (const [label, kb] of Object.entries(r.peaks ?? {})) {
      if (which(label) && (!best || kb > best.kb)) best = { label, kb, op: r.op };
    }
  }
  return best;
}

function throughputTarget(res, op) {
  const bk = res.backup;
  const rows = bk?.[op] ?? [];
  const p = paired(rows, 'walship', 'pgbackrest', 'mbPerS');
  const w = find(rows, 'walship');
  const g = find(rows, 'pgbackrest');
  const cores = (r) => (r?.cpuS !== undefined && r.wallS ? r.cpuS / r.wallS : undefined);
  return {
    target: `${op} throughput (MB/s of database size) ≥ pgBackRest (process-max=2)`,
    measured: p ? `${x1(p.median)}${perPass(p)}; medians: walship ${f(w.mbPerS, 0)}, pgBackRest ${f(g.mbPerS, 0)} MB/s` : 'not measured',
    met: p ? p.median >= 1 : undefined,
    cause:
      p && p.median < 1
        ? [
            `walship used ${f(w.cpuSPerGb)} CPU s/GB against pgBackRest's ${f(g.cpuSPerGb)} and kept ${f(cores(w), 2)} cores busy on average over its ${f(w.wallS)} s (pgBackRest ${f(cores(g), 2)} over ${f(g.wallS)} s)`,
            w.runqWaitS !== undefined
              ? `its threads waited ${f(w.runqWaitS)} s in all for a CPU held by something else (pgBackRest's ${f(g.runqWaitS)} s; /proc schedstat, summed over threads; load average at the start ${res.meta?.loadStart ?? '–'})`
              : undefined,
            w.phases ? `time by phase (medians, from each tool's log): walship ${phaseText(w.phases)}${g.phases ? `; pgBackRest ${phaseText(g.phases)}` : ''}` : undefined,
            w.parts !== undefined ? `the backup has ${w.parts} parts (--part-size 1 GiB) and walship moves whole parts, 2 at a time (one in its own process), and a part holds at least one file of up to 1 GiB; pgBackRest's 2 processes share out files` : undefined,
          ].filter(Boolean).join('; ')
        : undefined,
  };
}

/** Targets of issue 11, in the shape of report.mjs's targets(). */
export function backupTargets(res) {
  const bk = res.backup;
  const all = [...(bk?.backup ?? []), ...(bk?.restore ?? [])];
  const mine = largest(all.filter((r) => r.tool === 'walship'), isWalship);
  const other = largest(all.filter((r) => r.tool === 'walship'), (l) => !isWalship(l));
  const theirs = largest(all.filter((r) => r.tool === 'pgbackrest'), () => true);
  const cpu = (op) => {
    const p = paired(bk?.[op] ?? [], 'walship', 'pgbackrest', 'cpuSPerGb');
    return `${op}: walship ${f(find(bk?.[op], 'walship')?.cpuSPerGb)}, pgBackRest ${f(find(bk?.[op], 'pgbackrest')?.cpuSPerGb)} s/GB (${p ? x(p.median) : '–'})`;
  };
  return [
    throughputTarget(res, 'backup'),
    throughputTarget(res, 'restore'),
    {
      target: 'backup and restore: peak RSS per process ≤ 150 MB',
      measured: mine
        ? `walship's largest process ${mb(mine.kb)} MB (${mine.label}, ${mine.op})${other && other.kb >= 8192 ? `; the largest it started: ${mb(other.kb)} MB (${other.label})` : ''}; pgBackRest's largest ${theirs ? `${mb(theirs.kb)} MB (${theirs.label}, ${theirs.op})` : '–'}`
        : 'not measured',
      met: mine ? mine.kb / 1024 <= 150 : undefined,
      cause: mine && mine.kb / 1024 > 150 ? `the largest is ${mine.label} during ${mine.op}` : undefined,
    },
    {
      target: 'backup and restore: CPU s per GB of database (every process each tool started), reported',
      measured: all.length ? `${cpu('backup')}; ${cpu('restore')}` : 'not measured',
      met: undefined,
      result: all.length ? 'reported' : undefined,
    },
  ];
}

/** The section with the rows themselves. */
export function renderBackup(res) {
  const bk = res.backup;
  if (!bk || bk.backup.length + bk.restore.length === 0) return [];
  const L = [];
  L.push(`## Backup and restore (issue 11): pgbench scale ${bk.scale}, database ${f(bk.dbBytes / 1e9, 2)} GB, ${bk.repeat} passes`);
  L.push('');
  L.push(
    `One PostgreSQL 15 cluster (\`pgbench -i -s ${bk.scale}\`, logged tables; data directory without pg_wal ${f(bk.dataBytes / 1e9, 2)} GB) archiving to both tools (\`walship push %p && pgbackrest archive-push %p\`). walship: file store, LZ4, AES-256-GCM keyfile, default part size (1 GiB) and \`-j 2\` for backup (its default) and restore. pgBackRest: local repo, lz4, aes-256-cbc, process-max=2. Each pass runs the two backups back to back, then the two restores (into a new empty directory, removed afterwards), the order alternating between passes; the cluster is idle. Backups are timed until the tool exits, so they include the wait for the last WAL segment to be archived (by both tools, as archive_command pushes to both); walship restore's time includes its own \`pg_verifybackup -n\`. MB/s = database size (sum of pg_database_size) ÷ wall time. CPU: user+sys of every process the call started (cgroup), per GB of database; PostgreSQL's own work (checkpoint, archiver) is not in it. Waited for a CPU: time the call's threads were runnable while other work held the cores (/proc/<pid>/task/<tid>/schedstat, sampled every 20 ms, summed over threads), the shared machine's share of a slow run. Peak RSS: the largest single process. Figures are medians over the runs (wall times of every run in brackets, pass order); ÷ pgBackRest is the median of per-pass ratios walship ÷ pgBackRest.`,
  );
  L.push('');
  L.push('| operation | tool | runs | wall s, median (each) | MB/s | ÷ pgBackRest (MB/s) | CPU s/GB | ÷ pgBackRest (CPU) | waited for a CPU, s (all threads) | peak RSS MB (process) |');
  L.push('|---|---|---|---|---|---|---|---|---|---|');
  for (const op of ['backup', 'restore']) {
    for (const r of bk[op]) {
      const wall = r.allWallS.length <= 1 ? f(r.wallS) : `${f(r.wallS)} (${r.allWallS.map((v) => f(v)).join(', ')})`;
      const vs = (key) => {
        if (r.tool !== 'walship') return '1.00×';
        const p = paired(bk[op], 'walship', 'pgbackrest', key);
        return p ? `${x(p.median)}${perPass(p)}` : '–';
      };
      const peaks = Object.entries(r.peaks ?? {}).filter(([, kb], i) => i === 0 || kb >= 8192).slice(0, 2).map(([l, kb]) => `${mb(kb)} (${l})`).join(', ') || '–';
      L.push(`| ${op} | ${TOOL[r.tool]}: ${COMMAND[op][r.tool]} | ${r.passes} | ${wall} | ${f(r.mbPerS, 0)} | ${vs('mbPerS')} | ${f(r.cpuSPerGb)} | ${vs('cpuSPerGb')} | ${f(r.runqWaitS)} | ${peaks} |`);
    }
  }
  L.push('');
  for (const op of ['backup', 'restore']) {
    for (const tool of ['walship', 'pgbackrest']) {
      const ph = find(bk[op], tool)?.phases;
      if (ph) L.push(`${TOOL[tool]} ${op}, time by phase (medians, from the time stamps of its log lines): ${phaseText(ph)}.`, '');
    }
  }
  return L;
}
