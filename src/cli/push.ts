import { basename } from 'node:path';
import { ArchiveChangedError, ArchiveMissingError, errorMessage, ForeignClusterError } from '../errors.js';
import { releaseSegmentMemory } from '../memory.js';
import type { Logger } from '../log/index.js';
import { openBoundArchive } from '../pipeline/archive-binding.js';
import { removeLeftoverPool } from '../pipeline/prefetch.js';
import { pushEverywhere, pushTargetsFor, type PushTargets } from '../pipeline/push-targets.js';
import { checkRecordedObject } from '../pipeline/recorded-object.js';
import { nextReadyFiles } from '../pipeline/ready-files.js';
import { tryOpenClusterSpool } from '../spool/cluster.js';
import { fileIdentity, PushMarkers, revokeMarkers } from '../spool/push-markers.js';
import { recordPush, recordPushFailure } from '../spool/state.js';
import { isWalName } from '../wal/index.js';
import { commandContext, commandLogger, type GlobalOptions } from './context.js';
import { EXIT } from './exit-codes.js';
import { mib, reportError } from './report.js';

/**
 * archive_command = 'walship push %p': 0 only when the file is safely archived.
 *
 * PostgreSQL calls this once per file, serially. To keep up with a busy
 * server, each call also archives the next few `.ready` files
 * (WALSHIP_PUSH_CONCURRENCY) concurrently and leaves a marker for each; when
 * PostgreSQL then asks for one of them, the call finds the marker and returns
 * without touching the store. The exit status only ever speaks for %p.
 */
export async function runPush(path: string, globals: GlobalOptions): Promise<number> {
  const started = performance.now();
  const log = commandLogger('push');
  // Where the outcome is recorded for metrics/status; unknown until the configuration loaded.
  let spoolDir: string | undefined;
  try {
    const ctx = await commandContext(globals, log);
    const { config, store } = ctx;
    // archive_command runs in the data directory.
    const cluster = await tryOpenClusterSpool(config.spoolDir, process.cwd(), (m) => log.warn(m));
    spoolDir = cluster?.dir;
    const archive = await openBoundArchive(store, config, process.cwd(), cluster, (m) => log.warn(m));
    // Archiving means recovery is over: a prefetch pool left in pg_wal goes.
    await removeLeftoverPool(process.cwd(), (m) => log.warn(m));
    const markers = archive.cluster
      ? new PushMarkers(archive.cluster.dir, { archiveId: archive.manifest.archiveId, storeFingerprint: archive.fingerprint })
      : undefined;
    const name = basename(path);
    if (markers && isWalName(name)) {
      let marker = await markers.lookup(name, path);
      if (marker) {
        try {
          await checkRecordedObject(store, name, marker);
        } catch (err) {
          if (!(err instanceof ArchiveMissingError)) throw err;
          // The store lost what markers vouch for: none counts, the file is archived for real.
          log.warn({ file: name }, `${errorMessage(err)}; every look-ahead marker is dropped and ${name} is archived again`);
          await revokeMarkers(archive.cluster!.dir);
          marker = undefined;
        }
      }
      if (marker) {
        await markers.remove(name);
        const ms = Math.round(performance.now() - started);
        log.info(
          { file: name, rawBytes: marker.size, storedBytes: marker.storedBytes, ms, outcome: 'archived-ahead' },
          `${name} was archived ahead of time at ${marker.at} (confirmed by the store then) in ${ms} ms`,
        );
        if (spoolDir) await recordPush(spoolDir, { file: name, outcome: 'archived-ahead', rawBytes: marker.size, storedBytes: marker.storedBytes, ms }, log);
        return EXIT.OK;
      }
    }
    const targets = await pushTargetsFor(ctx, ctx.second, archive.manifest, log);
    // Look-ahead is only worth it when its markers can be kept.
    const ahead = markers ? await nextReadyFiles(path, name, config.pushConcurrency - 1) : [];
    // %p first, then the look-ahead files, one after the other: the work is
    // CPU-bound on one thread (measured: two in flight were no faster and
    // held more memory), and what one segment needed is released before the
    // next one is read.
    const r = await pushEverywhere(targets, path);
    for (const p of ahead) {
      releaseSegmentMemory();
      await pushAhead(p, targets, markers!, log);
    }
    const ms = Math.round(performance.now() - started);
    const fields = { file: r.file, key: r.key, rawBytes: r.rawBytes, storedBytes: r.storedBytes, encrypted: r.encrypted, ms, ahead: ahead.length, ...(r.second ? { second: r.second.outcome } : {}) };
    const also = r.second ? ` and ${targets.second!.store.description}` : '';
    if (r.outcome === 'already-archived') {
      log.warn({ ...fields, outcome: r.outcome }, `${r.file} was already archived with identical content; nothing to do`);
    } else {
      log.info(fields, `archived ${r.file} (${mib(r.rawBytes)} → ${mib(r.storedBytes)}${r.encrypted ? ', encrypted' : ''})${also} in ${ms} ms`);
    }
    if (spoolDir) await recordPush(spoolDir, { file: r.file, outcome: r.outcome, rawBytes: r.rawBytes, storedBytes: r.storedBytes, ms }, log);
    if (markers && Math.random() < 0.01) await markers.prune(24 * 3600 * 1000);
    return EXIT.OK;
  } catch (err) {
    reportError(log, err, 'error', `could not archive ${path}: `);
    // The store is not (or no longer) the archive the outstanding look-ahead
    // markers were confirmed by: none of them may answer PostgreSQL any more.
    if (spoolDir && (err instanceof ArchiveMissingError || err instanceof ArchiveChangedError || err instanceof ForeignClusterError)) {
      await revokeMarkers(spoolDir).catch(() => undefined);
    }
    if (spoolDir) await recordPushFailure(spoolDir, { file: basename(path), error: err, ms: Math.round(performance.now() - started) }, log);
    return EXIT.FAILED;
  }
}

/**
 * Archives a file PostgreSQL has not asked for yet. Failures are only
 * logged: PostgreSQL will ask for the file later and get the real answer.
 */
async function pushAhead(path: string, targets: PushTargets, markers: PushMarkers, log: Logger): Promise<void> {
  const name = basename(path);
  try {
    if (await markers.lookup(name, path)) return;
    const before = await fileIdentity(path);
    const r = await pushEverywhere(targets, path);
    // Only a file that did not change while it was read may be vouched for.
    const after = await fileIdentity(path);
    if (JSON.stringify(before) !== JSON.stringify(after)) return;
    await markers.record(name, before, r.blake3, r.storedBytes);
    log.debug({ file: name, storedBytes: r.storedBytes }, `archived ${name} ahead of PostgreSQL's request`);
  } catch (err) {
    // A vanished file means PostgreSQL archived (or recycled) it meanwhile: not worth a warning.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || /ENOENT/.test(errorMessage(err))) return;
    log.warn({ file: name }, `look-ahead archiving of ${name} failed (PostgreSQL will retry it): ${errorMessage(err)}`);
  }
}
