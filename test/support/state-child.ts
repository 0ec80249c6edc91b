/**
 * A child process for the spool-state concurrency tests (bundled with
 * esbuild by the test, because Node 20 cannot run TypeScript itself).
 *
 *   write   SPOOL ID COUNT   records COUNT calls of a fixed mix (see below),
 *                            as one walship process after another would
 *   compact SPOOL STOPFILE   folds in a loop until STOPFILE exists
 *   read    SPOOL STOPFILE   reads snapshots in a loop until STOPFILE exists
 *                            and fails if any counter ever goes backwards
 *
 * Per index i of a writer: every call is a push of 1 raw byte and 3 stored
 * bytes except every 5th, which is a STORE_UNAVAILABLE failure; every 2nd
 * call also records a fetch (ok, 7 bytes) and every 3rd a prefetch hit.
 */
import { existsSync } from 'node:fs';
import { StoreUnavailableError } from '../../src/errors.js';
import { compactState, readState, recordFetch, recordPrefetch, recordPush, recordPushFailure, type ArchiveState } from '../../src/spool/state.js';

const [mode, spoolDir, a, b] = process.argv.slice(2) as [string, string, string, string];
const warn = (msg: unknown) => {
  process.stderr.write(`warn: ${String(msg)}\n`);
  process.exitCode = 3;
};
const log = { warn } as unknown as Parameters<typeof recordPush>[2];

function counters(s: ArchiveState): number[] {
  return [
    s.push.calls.archived ?? 0,
    s.push.calls.failed ?? 0,
    s.push.rawBytes,
    s.push.storedBytes,
    s.push.duration.count,
    s.fetch.calls.ok ?? 0,
    s.fetch.rawBytes,
    s.prefetch.hits,
  ];
}

if (mode === 'write') {
  const id = a;
  const count = Number(b);
  for (let i = 0; i < count; i++) {
    const file = `00000001${id.padStart(8, '0')}${i.toString(16).toUpperCase().padStart(8, '0')}`;
    if (i % 5 === 4) {
      await recordPushFailure(spoolDir, { file, error: new StoreUnavailableError('injected', { file }), ms: 2 }, log);
    } else {
      await recordPush(spoolDir, { file, outcome: 'archived', rawBytes: 1, storedBytes: 3, ms: 5 }, log);
    }
    if (i % 2 === 0) await recordFetch(spoolDir, { file, outcome: 'ok', rawBytes: 7, storedBytes: 2, ms: 1 }, log);
    if (i % 3 === 0) await recordPrefetch(spoolDir, true, log);
  }
} else if (mode === 'compact') {
  const stop = a;
  let compacted = 0;
  let busy = 0;
  while (!existsSync(stop)) {
    if ((await compactState(spoolDir)) === 'compacted') compacted++;
    else busy++;
    await new Promise((r) => setTimeout(r, 2));
  }
  process.stdout.write(JSON.stringify({ compacted, busy }));
} else if (mode === 'read') {
  const stop = a;
  let prev: number[] | undefined;
  let reads = 0;
  while (!existsSync(stop)) {
    const now = counters((await readState(spoolDir)).state);
    if (prev && now.some((v, i) => v < prev![i]!)) {
      process.stderr.write(`counter went backwards: ${JSON.stringify(prev)} -> ${JSON.stringify(now)}\n`);
      process.exit(4);
    }
    prev = now;
    reads++;
  }
  process.stdout.write(JSON.stringify({ reads, last: prev }));
} else {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exit(2);
}
