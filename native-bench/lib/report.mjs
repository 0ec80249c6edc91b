// The results table (markdown): printed, and written to results/latest.md.
import { backupTargets, renderBackup } from './backup-report.mjs';

const f = (n, d = 1) => (n === undefined || Number.isNaN(n) ? '–' : n.toFixed(d));
const mb = (kb) => (kb === undefined ? '–' : (kb / 1024).toFixed(0));
const ratio = (a, b) => (a === undefined || b === undefined || !b ? undefined : a / b);
const x = (r) => (r === undefined ? '–' : `${r.toFixed(2)}×`);

/** The largest process, and the next one if it is big enough to matter (not a `stat` in a launcher). */
function peakCell(peaks) {
  const top = Object.entries(peaks ?? {}).filter(([, kb], i) => i === 0 || kb >= 8192).slice(0, 2);
  return top.length === 0 ? '–' : top.map(([label, kb]) => `${mb(kb)} (${label})`).join(', ');
}

const find = (rows, id) => rows.find((r) => r.id === id);

const passesOf = (rows) => {
  const n = rows[0]?.passes ?? 1;
  return n === 1 ? 'once' : n === 2 ? 'twice' : `${n} times`;
};

/** "16.1 (15.2, 16.1, 19.0)": the median, then every run in pass order. */
function wallCell(r) {
  const all = r.allWallS ?? [];
  return all.length <= 1 ? f(r.wallS) : `${f(r.wallS)} (${all.map((w) => f(w)).join(', ')})`;
}

const fallbackCell = (fb) => (fb === undefined ? '–' : Object.keys(fb).length === 0 ? '0' : Object.entries(fb).map(([k, n]) => `${n} ${k}`).join(', '));

const median = (xs) => {
  const s = xs.filter((v) => v !== undefined && Number.isFinite(v)).sort((a, b) => a - b);
  return s.length === 0 ? undefined : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/**
 * Ratios of two rows pass by pass (each pass measured them back to back),
 * key(a) ÷ key(b); undefined when they never ran in the same pass.
 */
export function paired(rows, idA, idB, key) {
  const a = find(rows, idA);
  const b = find(rows, idB);
  if (!a?.runs || !b?.runs) return undefined;
  const list = [];
  for (const ra of a.runs) {
    const rb = b.runs.find((r) => r.pass === ra.pass);
    const v = ratio(ra[key], rb?.[key]);
    if (v !== undefined) list.push(v);
  }
  return list.length === 0 ? undefined : { median: median(list), list };
}

const ratios = (p) => (p.list.length > 1 ? ` (per pass: ${p.list.map((v) => v.toFixed(2)).join(', ')})` : '');

/** The codec work of one 16 MiB segment on one core, from the micro-benchmarks: compress, hash, encrypt. */
function codecFloorMs(codecs) {
  const ms = (prefix) => {
    const c = codecs?.results.find((r) => r.name.startsWith(prefix));
    return c ? (16.777216 / c.mbPerS) * 1000 : undefined;
  };
  const parts = [ms('LZ4 frame compress'), ms('BLAKE3'), ms('AES-256-GCM encrypt')];
  return parts.every((v) => v !== undefined) ? parts.reduce((x, y) => x + y, 0) : undefined;
}

/** walship's largest process and its largest sum, over rows with a segment size. */
function walshipMemory(rows) {
  let peak;
  let sum;
  for (const r of rows) {
    for (const [label, kb] of Object.entries(r.peaks ?? {})) {
      if ((label.startsWith('walship') || label.startsWith('node')) && (!peak || kb > peak.kb)) peak = { label, kb, row: r.label };
    }
    if (r.walshipSumHwmKb !== undefined && (!sum || r.walshipSumHwmKb > sum.kb)) sum = { kb: r.walshipSumHwmKb, rssKb: r.walshipSumKb, row: r.label };
  }
  return { peak, sum };
}

/** A walship row's largest walship process and its sum of peaks, in kB. */
function rowMemory(r) {
  const own = Object.entries(r.peaks ?? {}).filter(([label]) => label.startsWith('walship') || label.startsWith('node'));
  const [label, kb] = own.sort((a, b) => b[1] - a[1])[0] ?? [];
  return { label, kb, sumKb: r.walshipSumHwmKb };
}

const rowWithin = (r) => {
  const m = rowMemory(r);
  return m.kb !== undefined && m.kb / 1024 <= 150 && (m.sumKb === undefined || m.sumKb / 1024 <= 300);
};

/** What the largest process of a (d) row held at its peak: /proc status (anon/file) and, with BENCH_MEMPROBE=1, V8 heap and Buffers. */
function heldAtPeak(r, label) {
  const b = r.rssBreakdown?.[label];
  const p = r.memprobe?.[label];
  const parts = [];
  if (b) parts.push(`at its largest sampled RSS ${mb(b.rssKb)} MB: ${mb(b.anonKb)} anonymous, ${mb(b.fileKb)} file-backed (code, mapped files), ${b.threads} threads`);
  if (p) {
    const rest = p.rss - p.heapTotal - p.external;
    // external counts what was allocated, RSS only what was touched: a huge allocation not yet written can exceed it.
    const restCell = rest >= 0 ? `the rest ${mb(rest / 1024)} (Node's own code and data, native allocators: lz4-napi's and @napi-rs/blake-hash's mimalloc, OpenSSL)` : 'external exceeds RSS (allocated, not all touched yet)';
    parts.push(`process.memoryUsage() at its peak RSS ${mb(p.rss / 1024)} MB: V8 heap ${mb(p.heapTotal / 1024)} (used ${mb(p.heapUsed / 1024)}), external ${mb(p.external / 1024)} (of it ArrayBuffers/Buffers ${mb(p.arrayBuffers / 1024)}), ${restCell}`);
  }
  return parts.join('; ');
}

function gibCause(r) {
  const m = rowMemory(r);
  const over = [m.kb / 1024 > 150 ? `${m.label} ${mb(m.kb)} MB` : undefined, m.sumKb !== undefined && m.sumKb / 1024 > 300 ? `all walship processes ${mb(m.sumKb)} MB` : undefined].filter(Boolean).join(', ');
  const held = heldAtPeak(r, m.label);
  return `${r.label}: ${over}${held ? ` (${held})` : ''}`;
}

/** The targets of issue 10: { target, measured, met, cause }. */
export function targets(res) {
  const out = [];
  const cores = res.meta?.cores ?? 2;
  const agentA = find(res.a, 'walship-agent-enc');
  const pA = find(res.a, 'pgbackrest-enc');
  const thr = paired(res.a, 'walship-agent-enc', 'pgbackrest-enc', 'segPerS');
  {
    const fb = Object.entries(agentA?.fallbacks ?? {});
    const busy = agentA?.cpuMsPerSeg !== undefined ? (agentA.cpuMsPerSeg * agentA.segPerS) / 1000 : undefined;
    out.push({
      target: 'archive throughput (serial calls, .ready present) ≥ 1.5× pgBackRest async (process-max=2)',
      measured: thr ? `${x(thr.median)}${ratios(thr)}; medians: agent ${f(agentA.segPerS, 1)}, pgBackRest ${f(pA.segPerS, 1)} segments/s` : 'not measured',
      met: thr ? thr.median >= 1.5 : undefined,
      cause:
        thr && thr.median < 1.5
          ? [
              busy !== undefined ? `the agent's run kept ${f(busy, 2)} of ${cores} cores busy (CPU ${f(agentA.cpuMsPerSeg)} ms/segment × ${f(agentA.segPerS, 1)} segments/s)${busy > 0.8 * cores ? ': CPU-bound, so throughput follows CPU per segment' : ': not CPU-bound, the time goes to waiting'}` : undefined,
              agentA?.callCpuMsPerSeg !== undefined ? `of the agent row's ${f(agentA.cpuMsPerSeg)} ms CPU per segment, ${f(agentA.callCpuMsPerSeg)} ms are PostgreSQL's calls themselves (bin/walship in sh and the processes it starts while it waits and checks, /usr/bin/time of each call), the rest the agent` : undefined,
              fb.length > 0 ? `the launcher fell back to in-process archiving ${fb.map(([k, n]) => `${n}× ${k}`).join(', ')}` : undefined,
            ].filter(Boolean).join('; ')
          : undefined,
    });
  }
  const push = res.push;
  const warm = push?.modes?.warm;
  const cold = push?.modes?.cold;
  const inproc = push?.modes?.inproc;
  {
    const floor = codecFloorMs(res.codecs);
    out.push({
      target: 'warm push (agent running; .ready created and push invoked at once) ≤ 50 ms median (aim 30)',
      measured: warm ? `${f(warm.medianMs, 0)} ms (min ${f(warm.minMs, 0)}, max ${f(warm.maxMs, 0)}, ${warm.samples.length} calls)` : 'not measured',
      met: warm ? warm.medianMs <= 50 : undefined,
      cause:
        warm && warm.medianMs > 50
          ? [
              warm.agentArchivedMedianMs !== undefined
                ? `the agent logged "archived" ${f(warm.agentArchivedMedianMs, 0)} ms (median) after the .ready file appeared, and the call exited ${f(warm.medianMs - warm.agentArchivedMedianMs, 0)} ms later (bin/walship looks for the record after sleeps of 2 ms doubling to 50 ms, then checks it and answers with short-lived programs: sha256sum, od, date, stat, rm, mv; native-bench/launcher-handover.mjs counts them)`
                : undefined,
              floor !== undefined ? `one segment's codec work alone is ${f(floor, 0)} ms on one core (LZ4 compress + BLAKE3 + AES-GCM, codec table), and the agent gives one file to one slot (on 2 cores both slots run on the agent's own thread)` : undefined,
              Object.keys(warm.fallbacks ?? {}).length ? `fallbacks: ${JSON.stringify(warm.fallbacks)}` : undefined,
            ].filter(Boolean).join('; ')
          : undefined,
    });
  }
  {
    const p = push?.coldOverInproc ?? [];
    const slower = p.filter((v) => v > 1).length;
    out.push({
      target: "cold push (no agent; the call starts it) never slower than today's in-process push",
      measured: cold && inproc ? `${x(push.medianColdOverInproc)} median of per-round ratios (${slower} of ${p.length} rounds slower); medians cold ${f(cold.medianMs, 0)} ms, in-process ${f(inproc.medianMs, 0)} ms` : 'not measured',
      met: cold && inproc ? push.medianColdOverInproc <= 1 : undefined,
      cause:
        cold && inproc && push.medianColdOverInproc > 1
          ? `a cold call pays the agent's start-up (Node, the bundle, configuration and keys, and worker threads for cores beyond two) before the first file: ${f(cold.medianMs - inproc.medianMs, 0)} ms more than the in-process push at the median${cold.agentStartMedianMs !== undefined ? `; the agent logged its start ${f(cold.agentStartMedianMs, 0)} ms and the file archived ${f(cold.agentArchivedMedianMs, 0)} ms after the .ready file appeared (medians)` : ''}${Object.keys(cold.fallbacks ?? {}).length ? `; fallbacks: ${JSON.stringify(cold.fallbacks)}` : ''}`
          : undefined,
    });
  }
  {
    const cpu = paired(res.a, 'walship-agent-enc', 'pgbackrest-enc', 'cpuMsPerSeg');
    const mcpu = paired(res.a, 'walship-agent-enc', 'pgbackrest-enc', 'machineCpuMsPerSeg');
    const floor = codecFloorMs(res.codecs);
    out.push({
      target: "CPU per segment, archive ≤ pgBackRest's (aim ≤ 0.5×)",
      measured: cpu
        ? `${x(cpu.median)}${ratios(cpu)}; medians: agent ${f(agentA.cpuMsPerSeg)}, pgBackRest ${f(pA.cpuMsPerSeg)} ms/segment (every process each tool started); whole machine (/proc/stat): ${mcpu ? x(mcpu.median) : '–'}, ${f(agentA.machineCpuMsPerSeg)} vs ${f(pA.machineCpuMsPerSeg)} ms/segment`
        : 'not measured',
      met: cpu ? cpu.median <= 1 : undefined,
      cause:
        cpu && cpu.median > 1
          ? [
              agentA.callCpuMsPerSeg !== undefined ? `${f(agentA.callCpuMsPerSeg)} ms per segment are the calls (bin/walship), ${f(agentA.cpuMsPerSeg - agentA.callCpuMsPerSeg)} ms the agent (pgBackRest: ${f(pA.callCpuMsPerSeg)} ms in its calls)` : undefined,
              floor !== undefined ? `walship's codec work alone is ${f(floor, 0)} ms per segment (LZ4 compress + BLAKE3 + AES-GCM, codec table) before push's decode check` : undefined,
            ].filter(Boolean).join('; ')
          : undefined,
    });
    const fcpu = paired(res.c, 'walship-enc', 'pgbackrest-enc', 'cpuMsPerSeg');
    const wC = find(res.c, 'walship-enc');
    const pC = find(res.c, 'pgbackrest-enc');
    out.push({
      target: "CPU per segment, restore (PITR replay, restore side) ≤ pgBackRest's",
      measured: fcpu ? `${x(fcpu.median)}${ratios(fcpu)}; medians: walship ${f(wC.cpuMsPerSeg)}, pgBackRest ${f(pC.cpuMsPerSeg)} ms/segment` : 'not measured',
      met: fcpu ? fcpu.median <= 1 : undefined,
      cause: fcpu && fcpu.median > 1 ? `this row replays with the agent off (WALSHIP_AGENT defaults to off), the detached prefetch worker filling the pool; ${replayCalls(wC)}` : undefined,
    });
  }
  {
    const m16 = walshipMemory([...res.a.map((r) => ({ ...r, label: `(a) ${r.label}` })), ...res.c.map((r) => ({ ...r, label: `(c) ${r.label}` }))].filter((r) => r.tool === 'walship'));
    const both = (m) => m.peak && m.sum && m.peak.kb / 1024 <= 150 && m.sum.kb / 1024 <= 300;
    const cell = (m) =>
      m.peak ? `largest process ${mb(m.peak.kb)} MB (${m.peak.label}, ${m.peak.row}); all walship processes together ${m.sum ? `${mb(m.sum.kb)} MB (${m.sum.row}; sampled RSS sum ${mb(m.sum.rssKb)} MB)` : '–'}` : 'not measured';
    out.push({
      target: 'memory, 16 MiB segments: ≤ 150 MB per process, ≤ 300 MB all walship processes',
      measured: cell(m16),
      met: m16.peak ? both(m16) : undefined,
      cause: m16.peak && !both(m16) ? `the largest is ${m16.peak.label}` : undefined,
    });
    const gibRows = (res.gib?.rows ?? []).filter((r) => r.tool === 'walship');
    const mg = walshipMemory(gibRows);
    const misses = gibRows.filter((r) => !rowWithin(r));
    const unmeasured = (res.gib?.planned ?? []).filter((l) => !gibRows.some((r) => r.label === l));
    out.push({
      target: 'memory, 1 GiB segments: ≤ 150 MB per process, ≤ 300 MB all walship processes',
      measured: mg.peak
        ? `${cell(mg)}; ${gibRows.length - misses.length} of ${gibRows.length} rows within both bounds${misses.length ? ` (over: ${misses.map((r) => r.label).join('; ')})` : ''}${unmeasured.length ? `; not measured: ${unmeasured.join('; ')}` : ''}`
        : `not measured${res.gibReason ? `: ${res.gibReason}` : res.gib ? ': no walship row completed' : ''}`,
      // "met" needs every walship row; one row over the bounds is a miss whatever else ran.
      met: !mg.peak ? undefined : misses.length > 0 ? false : unmeasured.length > 0 ? undefined : both(mg),
      result: mg.peak && misses.length === 0 && unmeasured.length > 0 ? 'partial (within bounds so far)' : undefined,
      cause: mg.peak && !both(mg) ? misses.map((r) => gibCause(r)).join('; ') : undefined,
    });
  }
  {
    const vsP = paired(res.c, 'walship-enc', 'pgbackrest-enc', 'wallS');
    const vsR = paired(res.c, 'walship-enc', 'redo', 'wallS');
    const pVsR = paired(res.c, 'pgbackrest-enc', 'redo', 'wallS');
    out.push({
      target: 'PITR replay ≤ pgBackRest async and ≤ 1.15× the redo limit (every segment in pg_wal)',
      measured:
        vsP || vsR
          ? `÷ pgBackRest ${vsP ? `${x(vsP.median)}${ratios(vsP)}` : '–'}; ÷ redo limit ${vsR ? `${x(vsR.median)}${ratios(vsR)}` : '–'} (pgBackRest ÷ redo limit ${pVsR ? x(pVsR.median) : '–'})`
          : 'not measured',
      met: vsP && vsR ? vsP.median <= 1 && vsR.median <= 1.15 : undefined,
      cause:
        vsP && vsR && !(vsP.median <= 1 && vsR.median <= 1.15)
          ? `walship's replay runs with the agent off (its default), the prefetch worker filling the pool; ${replayCalls(find(res.c, 'walship-enc'))}; CPU on the restore side ${f(find(res.c, 'walship-enc')?.cpuMsPerSeg)} ms/segment vs ${f(find(res.c, 'pgbackrest-enc')?.cpuMsPerSeg)} for pgBackRest`
          : undefined,
    });
  }
  return out;
}

/** How a replay row's restore_command calls were answered, from walship's log lines (one per call). */
function replayCalls(row) {
  const c = row?.walshipCalls;
  if (!c) return 'how its calls were answered was not recorded';
  return `${c.handovers} of ${c.handovers + c.node} restore_command calls were answered by bin/walship from the pool without starting Node (the rest ran Node)`;
}

/** Section (d): 1 GiB segments. */
function renderGib(g) {
  const L = [];
  L.push(`## (d) 1 GiB segments: peak memory of push and fetch (${g.segments} segments of \`initdb --wal-segsize=1024\`, encryption on)`);
  L.push('');
  L.push(
    `Corpus: the first ${g.segments} completed 1 GiB segments of a PostgreSQL 15 cluster initialised with \`--wal-segsize=1024\`, filled by \`pgbench -i -s ${g.scale ?? '–'}\` and then TPC-B with range UPDATEs (full_page_writes on, wal_compression off); ${g.reused ? 'reused from the cache' : `generated in ${g.generationSeconds} s`}. ` +
      'Local store, LZ4; walship AES-256-GCM keyfile, pgBackRest aes-256-cbc. Archive rows: the data directory holds every segment with its .ready file and the bench plays the archiver, `sh -c \'<archive_command> pg_wal/<segment>\'`, one call at a time, .ready → .done after exit 0 (as (a)); the agent row has a stand-in postmaster and its first call starts the agent. ' +
      'Fetch rows (restore_command) read back what the archive rows stored, in a data directory with recovery.signal and a stand-in postmaster, in the order archive recovery asks: the next timeline\'s history file (exit 1), each segment into pg_wal/RECOVERYXLOG (exit 0, compared byte for byte with the corpus), the segment after the last (exit 1); then recovery.signal is removed and the postmaster stopped, which ends the prefetch worker and the agent. ' +
      'Memory: every process the calls started, detached ones included (cgroup), VmHWM sampled every 20 ms plus /usr/bin/time\'s max RSS of each call; "all walship" is the largest sum, over the samples, of the VmHWM of the walship processes alive at that moment (an upper bound), with the largest sum of their current RSS in brackets.',
  );
  if (g.env) L.push(`**Experiment:** walship's processes ran with \`${g.env}\` added to their environment (BENCH_GIB_ENV).`);
  L.push('');
  L.push('| row | calls: s per segment, median | wall s | CPU ms/segment | peak RSS MB (process) | all walship MB (RSS sum) | ≤ 150 / 300 MB | verified |');
  L.push('|---|---|---|---|---|---|---|---|');
  for (const r of g.rows) {
    const perSeg = r.kind === 'fetch' ? r.msPerSeg / 1000 : r.wallS / r.segments;
    const within = r.tool === 'walship' ? (rowWithin(r) ? 'met' : '**missed**') : '(reference)';
    const fb = r.fallbacks && Object.keys(r.fallbacks).length ? `; agent fallbacks: ${fallbackCell(r.fallbacks)}` : '';
    L.push(`| ${r.label} | ${f(perSeg, 1)}${r.callMs ? ` (${r.callMs.map((ms) => f(ms / 1000, 1)).join(', ')})` : ''} | ${f(r.wallS)} | ${f(r.cpuMsPerSeg, 0)} | ${peakCell(r.peaks)} | ${r.tool === 'walship' ? `${mb(r.walshipSumHwmKb)} (${mb(r.walshipSumKb)})` : '–'} | ${within} | ${r.verified}${fb} |`);
  }
  L.push('');
  const held = g.rows.filter((r) => r.tool === 'walship').map((r) => {
    const m = rowMemory(r);
    const h = m.label ? heldAtPeak(r, m.label) : '';
    return h ? `- ${r.label}: ${m.label}, ${h}.` : undefined;
  }).filter(Boolean);
  if (held.length > 0) {
    L.push(`What the largest walship process of each row held (/proc/<pid>/status at its largest sampled VmRSS${g.memprobe ? '; BENCH_MEMPROBE=1: process.memoryUsage() sampled every 25 ms inside it' : ''}):`);
    L.push('');
    L.push(...held);
    L.push('');
  }
  return L;
}

export function renderReport(res) {
  const L = [];
  const m = res.meta;
  L.push('# walship native-bench');
  L.push('');
  L.push(`${m.date} · ${m.cpu} × ${m.cores} · Linux ${m.kernel} · Node ${m.node} · ${m.postgres} · ${m.pgbackrest ?? 'pgBackRest: not available'} · walship ${m.walship}`);
  L.push('');
  if (m.corpusSegments !== undefined) L.push(
    `Corpus: ${m.corpusSegments} WAL segments of 16 MiB (${f((m.corpusSegments * 16) / 1024, 2)} GiB) of real PostgreSQL 15 WAL from pgbench (bulk load at scale ${m.scale}, then TPC-B with batch updates), full_page_writes on, wal_compression off, default checkpoints; LZ4 compresses it ${f(res.codecs?.lz4Ratio, 1)}×. ${m.corpusReused ? 'Reused from the cache.' : `Generated in ${m.corpusSeconds} s.`}`,
  );
  L.push(`Load average at start ${m.loadStart}, at end ${m.loadEnd}: the machine is shared, so absolute numbers are noisy; compare the ratios, which pit the tools against each other in the same run.`);
  L.push(`CPU and memory: ${m.accounting}.`);
  L.push('');
  L.push(res.backupOnly ? '## Targets (issue 11)' : `## Targets (issue 10${res.backup ? '; backup and restore: issue 11' : ''})`);
  L.push('');
  L.push(`Ratios are medians of per-pass ratios: in each pass the rows compared ran back to back (order alternating between passes), and each pass gives one ratio. Encryption on, local file store, LZ4.`);
  L.push('');
  L.push('| metric and target | measured | result |');
  L.push('|---|---|---|');
  // A backup-only run measured none of issue 10's rows: leave them out rather than list them as not measured.
  const ts = [...(res.backupOnly ? [] : targets(res)), ...(res.backup || res.backupOnly ? backupTargets(res) : [])];
  for (const t of ts) L.push(`| ${t.target} | ${t.measured} | ${t.met === undefined ? (t.result ?? '–') : t.met ? '**met**' : '**missed**'} |`);
  L.push('');
  const causes = ts.filter((t) => t.met === false && t.cause);
  if (causes.length > 0) {
    L.push('Measured causes of the misses:');
    L.push('');
    for (const t of causes) L.push(`- *${t.target.split(' ≤')[0].split(' ≥')[0].split(' never')[0].replace(/:$/, '')}*: ${t.cause}.`);
    L.push('');
  }
  if (res.a.length > 0) {
    L.push(`## (a) Archive throughput: ${m.corpusSegments} segments, one call per segment in order, serial, .ready files present`);
    L.push('');
    L.push(`Each call is \`sh -c '<archive_command> pg_wal/<segment>'\` in the data directory, as PostgreSQL runs it; .ready becomes .done after exit 0. Local store; LZ4; walship: AES-256-GCM keyfile, pgBackRest: aes-256-cbc, archive-async=y, process-max=2. The agent row runs with WALSHIP_AGENT=on and a stand-in postmaster (a \`sleep\` named in postmaster.pid, since the agent serves a running server only); the first call starts the agent. Rows marked "every pass" ran ${passesOf(res.a.filter((r) => r.every))}, the others once (first pass); figures are medians over the runs (wall times of every run in brackets, pass order), peak RSS the largest. ÷ pgBackRest is the median of per-pass ratios. CPU: every process the calls started (cgroup), then the whole machine from /proc/stat (includes anything else running).`);
    L.push('');
    L.push('| tool | encryption | mode | runs | wall s, median (each) | segments/s | MB/s | ÷ pgBackRest (throughput) | CPU ms/segment: tool (its calls); whole machine | peak RSS MB (process) | all walship MB | agent fallbacks | stored MiB |');
    L.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const r of res.a) {
      const peerId = `pgbackrest-${r.encrypt ? 'enc' : 'plain'}`;
      const pr = r.tool === 'walship' ? paired(res.a, r.id, peerId, 'segPerS') : undefined;
      const single = res.a.find((p) => p.id === peerId);
      const vs = r.tool === 'pgbackrest' ? '1.00×' : pr ? x(pr.median) : x(ratio(r.segPerS, single?.segPerS));
      const mode = r.tool === 'walship' ? (r.agent ? 'agent' : r.lookAhead ? 'in-process, look-ahead default' : 'in-process, look-ahead off') : 'async';
      L.push(
        `| ${r.toolLabel} | ${r.encrypt ? 'on' : 'off'} | ${mode} | ${r.passes}${r.every ? '' : ' (once)'} | ${wallCell(r)} | ${f(r.segPerS, 2)} | ${f(r.mbPerS, 0)} | ${vs} | ${f(r.cpuMsPerSeg)} (${f(r.callCpuMsPerSeg)}); ${f(r.machineCpuMsPerSeg)} | ${peakCell(r.peaks)} | ${r.tool === 'walship' ? mb(r.walshipSumHwmKb) : '–'} | ${fallbackCell(r.fallbacks)} | ${f(r.storedBytes / 1048576, 0)} |`,
      );
    }
    L.push('');
  }
  if (res.push || res.b.length > 0) {
    const runs = res.push?.modes?.warm?.samples.length ?? res.b[0]?.runs ?? '–';
    L.push(`## (b) One push call, encryption on (${runs} calls per row, a fresh segment each, after one warm-up)`);
    L.push('');
    L.push('Timed from spawn to exit of `sh -c \'<archive_command> pg_wal/<segment>\'`. Agent warm: the agent runs and is idle; the .ready file is created and the call started at the same moment. Agent cold: no agent runs, the call starts it. In-process: WALSHIP_AGENT off, nothing to look ahead at. The three ran in the same rounds, the order rotating each round; pgBackRest and `node -e 0` ran after them. The agent columns are medians of the times in the agent\'s log, counted from the creation of the .ready file.');
    L.push('');
    L.push('| push | median ms | min ms | max ms | agent logged its start, ms | agent logged "archived", ms | agent fallbacks |');
    L.push('|---|---|---|---|---|---|---|');
    const names = { warm: 'walship, agent running (warm)', cold: 'walship, agent started by the call (cold)', inproc: 'walship in-process (WALSHIP_AGENT off)' };
    for (const [mode, m] of Object.entries(res.push?.modes ?? {})) L.push(`| ${names[mode]} | ${f(m.medianMs, 0)} | ${f(m.minMs, 0)} | ${f(m.maxMs, 0)} | ${f(m.agentStartMedianMs, 0)} | ${f(m.agentArchivedMedianMs, 0)} | ${fallbackCell(m.fallbacks)} |`);
    for (const r of res.b) L.push(`| ${r.tool === 'node' ? r.toolLabel : `${r.toolLabel} (async)`} | ${f(r.medianMs, 0)} | ${f(r.minMs, 0)} | ${f(r.maxMs, 0)} | – | – | – |`);
    L.push('');
    if (res.push) {
      L.push(`Cold ÷ in-process, per round: ${res.push.coldOverInproc.map((v) => v.toFixed(2)).join(', ')} (median ${x(res.push.medianColdOverInproc)}).${res.push.warmRestarts ? ` The warm agent was restarted ${res.push.warmRestarts} time(s) between rounds.` : ''}`);
      L.push('');
    }
  }
  if (res.c.length > 0) {
    L.push(`## (c) PITR replay of ${res.c[0]?.segments ?? '–'} segments from the base backup to a restore point, then promote`);
    L.push('');
    L.push(`Timed from starting PostgreSQL until it accepts connections after recovery; the restored data is checked against the corpus. The redo limit is the same replay with every segment copied into pg_wal beforehand and \`/bin/false\` as restore_command. CPU counts every process each restore_command started (helpers included) and the sh and /usr/bin/time it runs under (not PostgreSQL's redo): the redo-limit row shows that floor; the whole-machine figure (/proc/stat) includes PostgreSQL. Rows marked with a run count ran that many times, interleaved; the others once. Figures are medians; ÷ columns are medians of per-pass ratios where both rows ran in the same passes.`);
    L.push('');
    L.push('| restore_command | encryption | prefetch | runs | wall s, median (each) | MB/s | ÷ redo limit (time) | ÷ pgBackRest (time) | CPU ms/segment (restore side; whole machine) | peak RSS MB (process) | all walship MB |');
    L.push('|---|---|---|---|---|---|---|---|---|---|---|');
    const vs = (r, otherId) => {
      const p = paired(res.c, r.id, otherId, 'wallS');
      return p && p.list.length > 1 ? x(p.median) : x(ratio(r.wallS, find(res.c, otherId)?.wallS));
    };
    for (const r of res.c) {
      const peerId = `pgbackrest-${r.encrypt ? 'enc' : 'plain'}`;
      L.push(
        `| ${r.toolLabel} | ${r.tool === 'cp' || r.tool === 'redo' ? '–' : r.encrypt ? 'on' : 'off'} | ${{ cp: '–', redo: '–', pgbackrest: 'async', walship: r.lookAhead ? 'default' : 'off (PREFETCH=0)' }[r.tool]} | ${r.passes}${r.every ? '' : ' (once)'} | ${wallCell(r)} | ${f(r.mbPerS, 0)} | ${r.tool === 'redo' ? '1.00×' : vs(r, 'redo')} | ${r.tool === 'walship' ? vs(r, peerId) : '–'} | ${f(r.cpuMsPerSeg)}; ${f(r.machineCpuMsPerSeg)} | ${peakCell(r.peaks)} | ${r.tool === 'walship' ? mb(r.walshipSumHwmKb) : '–'} |`,
      );
    }
    L.push('');
  }
  if (res.gib) L.push(...renderGib(res.gib));
  L.push(...renderBackup(res));
  if (res.codecs) {
    L.push(`## Codec micro-benchmarks (this process, one core, ${res.codecs.segments} real segments, best of 5, MB/s of input)`);
    L.push('');
    L.push('| operation | MB/s | ms per 16 MiB segment |');
    L.push('|---|---|---|');
    for (const c of res.codecs.results) L.push(`| ${c.name} | ${f(c.mbPerS, 0)} | ${f(16.777216 / c.mbPerS * 1000, 1)} |`);
    L.push('');
  }
  const notes = [...res.notes];
  for (const r of [...res.a, ...res.b, ...res.c, ...(res.gib?.rows ?? [])]) {
    if (r.failures) notes.push(`${r.label}: ${r.failures} failed call(s) were retried.`);
    if (r.leftovers?.length) notes.push(`${r.label}: processes still running after the run (killed): ${r.leftovers.join(', ')}.`);
  }
  for (const [mode, m] of Object.entries(res.push?.modes ?? {})) if (m.leftovers?.length) notes.push(`(b) ${mode}: processes still running after the run (killed): ${m.leftovers.join(', ')}.`);
  for (const r of [...(res.backup?.backup ?? []), ...(res.backup?.restore ?? [])]) {
    if (r.leftovers?.length) notes.push(`${r.op} ${r.tool}: processes still running after the run (killed): ${r.leftovers.join(', ')}.`);
  }
  for (const e of res.errors) notes.push(`**error** ${e}`);
  if (notes.length > 0) {
    L.push('## Notes');
    L.push('');
    for (const n of notes) L.push(`- ${n}`);
    L.push('');
  }
  const backupVars = m.backup === false ? 'BENCH_BACKUP=off ' : m.backupScale === undefined ? '' : `${m.backupOnly ? 'BENCH_BACKUP_ONLY=1 ' : ''}${m.backupScale === 140 ? '' : `BENCH_BACKUP_SCALE=${m.backupScale} `}${m.backupRepeat === 3 ? '' : `BENCH_BACKUP_REPEAT=${m.backupRepeat} `}`;
  const onlyVar = `${m.only && m.only !== m.onlyDefault ? `BENCH_ONLY=${m.only} ` : ''}${res.gib?.memprobe ? 'BENCH_MEMPROBE=1 ' : ''}${res.gib?.env ? `BENCH_GIB_ENV="${res.gib.env}" ` : ''}${res.gib && res.gib.segments !== 3 ? `BENCH_GIB_SEGMENTS=${res.gib.segments} ` : ''}`;
  L.push(`Reproduce: \`${onlyVar}${backupVars}${m.backupOnly || m.corpusSegmentsWanted === 200 ? '' : `BENCH_SEGMENTS=${m.corpusSegmentsWanted} `}npm run bench\` after \`npm ci\` (this run took ${m.benchSeconds} s${m.corpusReused ? ' with a cached corpus' : ''}). See native-bench/README.md for the method.`);
  L.push('');
  return L.join('\n');
}
