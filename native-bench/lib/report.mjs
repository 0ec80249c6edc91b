// The results table (markdown): printed, and written to results/latest.md.

const f = (n, d = 1) => (n === undefined || Number.isNaN(n) ? '–' : n.toFixed(d));
const mb = (kb) => (kb === undefined ? '–' : (kb / 1024).toFixed(0));
const ratio = (a, b) => (a === undefined || b === undefined || !b ? undefined : a / b);
const x = (r) => (r === undefined ? '–' : `${r.toFixed(2)}×`);

/** The largest process, and the next one if it is big enough to matter (not a `stat` in a launcher). */
function peakCell(peaks) {
  const top = Object.entries(peaks ?? {}).filter(([, kb], i) => i === 0 || kb >= 8192).slice(0, 2);
  return top.length === 0 ? '–' : top.map(([label, kb]) => `${mb(kb)} (${label})`).join(', ');
}

function walshipPeak(rows) {
  let best;
  for (const r of rows) {
    for (const [label, kb] of Object.entries(r.peaks ?? {})) {
      if ((label.startsWith('walship') || label.startsWith('node')) && (!best || kb > best.kb)) best = { label, kb, row: r.label };
    }
  }
  return best;
}

const find = (rows, id) => rows.find((r) => r.id === id);

/** "16.1 (19.0)": the best run, then the others. */
const passesOf = (rows) => {
  const n = rows[0]?.passes ?? 1;
  return n === 1 ? 'once' : n === 2 ? 'twice' : `${n} times`;
};

function wallCell(r) {
  const others = (r.allWallS ?? []).filter((w) => w !== r.wallS);
  return others.length === 0 ? f(r.wallS) : `${f(r.wallS)} (${others.map((w) => f(w)).join(', ')})`;
}

export function targets(res) {
  const out = [];
  const wEnc = find(res.a, 'walship-enc');
  const pEnc = find(res.a, 'pgbackrest-enc');
  const thr = ratio(wEnc?.segPerS, pEnc?.segPerS);
  out.push({
    target: 'archive throughput ≥ 1.5× pgBackRest async (process-max=2), encryption on',
    measured: thr === undefined ? 'not measured' : `${x(thr)} (walship ${f(wEnc.segPerS)} vs pgBackRest ${f(pEnc.segPerS)} segments/s)`,
    met: thr === undefined ? undefined : thr >= 1.5,
  });
  const lat = find(res.b, 'walship-enc') ?? find(res.b, 'walship-plain');
  out.push({
    target: 'single push call ≤ 100 ms median, local store',
    measured: lat ? `${f(lat.medianMs, 0)} ms (${lat.encrypt ? 'encryption on' : 'no encryption'})` : 'not measured',
    met: lat ? lat.medianMs <= 100 : undefined,
  });
  const cp = find(res.c, 'cp');
  const wr = find(res.c, 'walship-enc');
  const rr = ratio(wr?.wallS, cp?.wallS);
  out.push({
    target: 'PITR replay ≤ 1.05× the same replay with cp as restore_command',
    measured: rr === undefined ? 'not measured' : `${x(rr)} (walship ${f(wr.wallS)} s vs cp ${f(cp.wallS)} s, encryption on)`,
    met: rr === undefined ? undefined : rr <= 1.05,
  });
  const pushCpu = wEnc?.cpuMsPerSeg;
  const fetchCpu = wr?.cpuMsPerSeg;
  const cpuKnown = pushCpu !== undefined || fetchCpu !== undefined;
  out.push({
    target: 'CPU per segment ≤ 30 ms with encryption (push; fetch)',
    measured: cpuKnown ? `push ${f(pushCpu)} ms, fetch ${f(fetchCpu)} ms` : 'not measured',
    met: cpuKnown ? [pushCpu, fetchCpu].every((v) => v === undefined || v <= 30) : undefined,
  });
  const peak = walshipPeak([...res.a, ...res.c].filter((r) => r.tool === 'walship'));
  out.push({
    target: 'peak memory per process ≤ 150 MB',
    measured: peak ? `${mb(peak.kb)} MB (${peak.label}, ${peak.row})` : 'not measured',
    met: peak ? peak.kb / 1024 <= 150 : undefined,
  });
  return out;
}

export function renderReport(res) {
  const L = [];
  const m = res.meta;
  L.push('# walship native-bench');
  L.push('');
  L.push(`${m.date} · ${m.cpu} × ${m.cores} · Linux ${m.kernel} · Node ${m.node} · ${m.postgres} · ${m.pgbackrest ?? 'pgBackRest: not available'} · walship ${m.walship}`);
  L.push('');
  L.push(
    `Corpus: ${m.corpusSegments} WAL segments of 16 MiB (${f((m.corpusSegments * 16) / 1024, 2)} GiB) of real PostgreSQL 15 WAL from pgbench (bulk load at scale ${m.scale}, then TPC-B with batch updates), full_page_writes on, wal_compression off, default checkpoints; LZ4 compresses it ${f(res.codecs?.lz4Ratio, 1)}×. ${m.corpusReused ? 'Reused from the cache.' : `Generated in ${m.corpusSeconds} s.`}`,
  );
  L.push(`Load average at start ${m.loadStart}, at end ${m.loadEnd}: the machine is shared, so absolute numbers are noisy; compare the ratios, which pit the tools against each other in the same run.`);
  L.push(`CPU and memory: ${m.accounting}.`);
  L.push('');
  L.push('## Targets (issue 4)');
  L.push('');
  L.push('| target | measured | result |');
  L.push('|---|---|---|');
  for (const t of targets(res)) L.push(`| ${t.target} | ${t.measured} | ${t.met === undefined ? '–' : t.met ? '**met**' : '**missed**'} |`);
  L.push('');
  if (res.a.length > 0) {
    L.push(`## (a) Archive throughput: ${m.corpusSegments} segments, one call per segment in order, serial, .ready files present`);
    L.push('');
    L.push(`Each call is \`sh -c '<archive_command> pg_wal/<segment>'\` in the data directory, as PostgreSQL runs it; .ready becomes .done after exit 0. Local store; LZ4; walship: AES-256-GCM keyfile, pgBackRest: aes-256-cbc, archive-async=y, process-max=2. Every row ran ${passesOf(res.a)}, in alternating order; throughput is from the best run, CPU the mean, peak RSS the largest.`);
    L.push('');
    L.push('| tool | encryption | look-ahead | wall s, best (others) | segments/s | MB/s | ÷ pgBackRest (throughput) | CPU ms/segment | peak RSS MB (process) | stored MiB |');
    L.push('|---|---|---|---|---|---|---|---|---|---|');
    for (const r of res.a) {
      const peer = res.a.find((p) => p.tool === 'pgbackrest' && p.encrypt === r.encrypt);
      L.push(
        `| ${r.toolLabel} | ${r.encrypt ? 'on' : 'off'} | ${r.tool === 'walship' ? (r.lookAhead ? 'default' : 'off (PUSH_CONCURRENCY=1, PREFETCH=0)') : 'async'} | ${wallCell(r)} | ${f(r.segPerS, 2)} | ${f(r.mbPerS, 0)} | ${r.tool === 'pgbackrest' ? '1.00×' : x(ratio(r.segPerS, peer?.segPerS))} | ${f(r.cpuMsPerSeg)} | ${peakCell(r.peaks)} | ${f(r.storedBytes / 1048576, 0)} |`,
      );
    }
    L.push('');
  }
  if (res.b.length > 0) {
    L.push(`## (b) Single push call with nothing to look ahead at (median of ${res.b[0]?.runs ?? '–'}, a fresh segment each time)`);
    L.push('');
    L.push('| tool | encryption | median ms | min ms | max ms | ÷ pgBackRest (time) |');
    L.push('|---|---|---|---|---|---|');
    for (const r of res.b) {
      const peer = res.b.find((p) => p.tool === 'pgbackrest' && p.encrypt === r.encrypt);
      const vs = r.tool === 'pgbackrest' ? '1.00×' : r.tool === 'node' ? '–' : x(ratio(r.medianMs, peer?.medianMs));
      L.push(`| ${r.toolLabel} | ${r.tool === 'node' ? '–' : r.encrypt ? 'on' : 'off'} | ${f(r.medianMs, 0)} | ${f(r.minMs, 0)} | ${f(r.maxMs, 0)} | ${vs} |`);
    }
    L.push('');
  }
  if (res.c.length > 0) {
    L.push(`## (c) PITR replay of ${res.c[0]?.segments ?? '–'} segments from the base backup to a restore point, then promote`);
    L.push('');
    L.push(`Timed from starting PostgreSQL until it accepts connections after recovery; the restored data is checked against the corpus. CPU counts every process each restore_command started (helpers included) and the sh and /usr/bin/time it runs under: the cp row shows that floor. Every row ran ${passesOf(res.c)}, in alternating order; wall time is the best run, CPU the mean, peak RSS the largest.`);
    L.push('');
    L.push('| restore_command | encryption | prefetch | wall s, best (others) | MB/s | ÷ cp (time) | ÷ pgBackRest (time) | CPU ms/segment (restore side) | peak RSS MB (process) |');
    L.push('|---|---|---|---|---|---|---|---|---|');
    const cp = find(res.c, 'cp');
    for (const r of res.c) {
      const peer = res.c.find((p) => p.tool === 'pgbackrest' && p.encrypt === r.encrypt);
      L.push(
        `| ${r.toolLabel} | ${r.tool === 'cp' ? '–' : r.encrypt ? 'on' : 'off'} | ${{ cp: '–', pgbackrest: 'async', walship: r.lookAhead ? 'default' : 'off (PREFETCH=0)' }[r.tool]} | ${wallCell(r)} | ${f(r.mbPerS, 0)} | ${x(ratio(r.wallS, cp?.wallS))} | ${r.tool === 'walship' ? x(ratio(r.wallS, peer?.wallS)) : '–'} | ${f(r.cpuMsPerSeg)} | ${peakCell(r.peaks)} |`,
      );
    }
    L.push('');
  }
  if (res.codecs) {
    L.push(`## Codec micro-benchmarks (this process, one core, ${res.codecs.segments} real segments, best of 5, MB/s of input)`);
    L.push('');
    L.push('| operation | MB/s | ms per 16 MiB segment |');
    L.push('|---|---|---|');
    for (const c of res.codecs.results) L.push(`| ${c.name} | ${f(c.mbPerS, 0)} | ${f(16.777216 / c.mbPerS * 1000, 1)} |`);
    L.push('');
  }
  const notes = [...res.notes];
  for (const r of [...res.a, ...res.b, ...res.c]) {
    if (r.failures) notes.push(`${r.label}: ${r.failures} failed call(s) were retried.`);
    if (r.leftovers?.length) notes.push(`${r.label}: processes still running after the run (killed): ${r.leftovers.join(', ')}.`);
  }
  for (const e of res.errors) notes.push(`**error** ${e}`);
  if (notes.length > 0) {
    L.push('## Notes');
    L.push('');
    for (const n of notes) L.push(`- ${n}`);
    L.push('');
  }
  L.push(`Reproduce: \`${m.corpusSegmentsWanted === 200 ? '' : `BENCH_SEGMENTS=${m.corpusSegmentsWanted} `}npm run bench\` after \`npm ci\` (this run took ${m.benchSeconds} s${m.corpusReused ? ' with a cached corpus' : ''}). See native-bench/README.md for the method.`);
  L.push('');
  return L.join('\n');
}
