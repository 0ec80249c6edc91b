import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { storeFingerprint } from '../config/index.js';
import { ArchiveChangedError, errorMessage } from '../errors.js';
import type { Logger } from '../log/index.js';
import { openBoundArchive } from '../pipeline/archive-binding.js';
import { pushTargetsFor } from '../pipeline/push-targets.js';
import { checkRecordedObject } from '../pipeline/recorded-object.js';
import { ReplicationLoop } from './replication-loop.js';
import { notifyingPusher } from './pusher-notify.js';
import { openClusterSpool, readBinding } from '../spool/cluster.js';
import { holdsFlock } from '../spool/flock-held.js';
import { PushMarkers } from '../spool/push-markers.js';
import { writeFileAtomic } from '../spool/atomic-file.js';
import { describeError, stateDir } from '../spool/state.js';
import { commandContext, type GlobalOptions } from '../cli/context.js';
import { configFileStamp } from './config-watch.js';
import { agentLogger } from './log-file.js';
import { runLoop } from './loop.js';
import { agentPaths, type AgentPaths } from './paths.js';
import { postmasterAlive, readPostmasterIdentity } from './postmaster.js';
import type { Pusher } from './pusher.js';
import { startPusher } from './pusher-mixed.js';
import { beat, writeStatus } from './health.js';
import { prefetchParallelism, RecoveryFeeder } from './recovery.js';
import { loadConfig } from '../config/index.js';

/** flock(1) exit status when the lock is held by someone else (-E). */
const LOCK_CONFLICT = 75;

export interface AgentArgs {
  readonly pgdata?: string | undefined;
}

/**
 * `walship agent`: the resident archiver of one data directory. Exactly one
 * runs per data directory: it holds `<cluster spool>/agent.lock` (flock)
 * for its whole life. Started without the lock (by hand, by systemd), it
 * runs itself again under `flock -xn`, which exits at once when another
 * agent holds it. Returns the exit status.
 */
export async function runAgent(args: AgentArgs, globals: GlobalOptions, stderr: Logger): Promise<number> {
  const dataDir = resolve(args.pgdata ?? process.env.WALSHIP_PGDATA ?? process.env.PGDATA ?? '.');
  process.chdir(dataDir);
  const config = loadConfig({ configFile: globals.config });
  const cluster = await openClusterSpool(config.spoolDir, dataDir);
  const paths = agentPaths(cluster.dir);

  if (!holdsFlock(paths.lock)) {
    if (process.env.WALSHIP_AGENT_LOCKED === '1') {
      stderr.error(`not holding ${paths.lock} although started under flock; exiting`);
      return 3;
    }
    return relaunchUnderLock(paths, stderr);
  }

  const log = agentLogger(paths.log, paths.dir, config.logLevel);
  // Alive from the first moment: a caller that started this agent stops
  // waiting for it when the heartbeat goes stale (bin/walship, HEARTBEAT_STALE_MS).
  await beat(paths);
  const heartbeat = setInterval(() => void beat(paths).catch(() => undefined), 1000);
  const postmaster = await readPostmasterIdentity(dataDir);
  if (!postmaster || !(await postmasterAlive(dataDir, postmaster))) {
    log.info(`no PostgreSQL server runs in ${dataDir}; the agent only runs beside one`);
    return 0;
  }
  let stopRequested: string | undefined;
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, () => (stopRequested = sig));

  const started = new Date().toISOString();
  let pusher: Pusher | undefined;
  let replication: ReplicationLoop | undefined;
  try {
    const stamp = configFileStamp(globals.config);
    const ctx = await commandContext(globals, log);
    const { store, keys } = ctx;
    const archive = await openBoundArchive(store, config, dataDir, cluster, (m) => log.warn(m));
    const fingerprint = storeFingerprint(config);
    const archiveId = archive.manifest.archiveId;
    // What this agent archives to: a caller with another configuration does
    // not wait for it (bin/walship compares the fingerprint with its own).
    await writeFileAtomic(paths.identity, `v1 ${archiveId} ${fingerprint} ${process.pid}\n`);
    const markers = new PushMarkers(cluster.dir, { archiveId, storeFingerprint: fingerprint });
    await markers.prune(24 * 3600 * 1000);
    // bin/walship records its answers (and its fallbacks) only into an
    // existing journal; when the agent answers every call, no Node push
    // would ever create it.
    await mkdir(join(stateDir(cluster.dir), 'events'), { recursive: true, mode: 0o700 });

    const slots = config.agentJobs ?? availableParallelism();
    const targets = await pushTargetsFor(ctx, ctx.second, archive.manifest, log);
    pusher = await startPusher(globals, archive.manifest, targets, slots, log);
    log.info({ dataDir, slots, archiveId, storeFingerprint: fingerprint }, `agent started for ${dataDir} (archive ${archiveId} at ${store.description})`);

    // The recovery side runs beside the archiving loop: a standby with
    // archive_mode=always does both, a promoted server moves from one to the other.
    const feeder = new RecoveryFeeder({
      dataDir,
      store,
      // As restore_command's own fetch gets them, so that a pooled segment is verified exactly as fetch verifies.
      keys,
      archiveId,
      storeFingerprint: fingerprint,
      segmentSize: archive.manifest.segmentSize,
      depth: config.prefetch,
      parallel: prefetchParallelism(config.prefetch, availableParallelism()),
      log,
    });
    // WALSHIP_STORE2_MODE=async: the agent keeps the second store following the first.
    replication =
      ctx.second && config.second?.mode === 'async'
        ? new ReplicationLoop({ first: ctx, second: ctx.second, manifest: archive.manifest, spoolDir: config.spoolDir, log })
        : undefined;
    replication?.start();
    let archivingDone = false;
    const recovery = (async () => {
      while (!archivingDone) {
        await feeder.tick().catch((err: unknown) => log.warn(`prefetch round failed: ${errorMessage(err)}`));
        // Quick rounds while PostgreSQL is being fed: a finished download starts the next within 100 ms.
        await sleepUnless(feeder.status().active ? 100 : 500, () => archivingDone);
      }
      await feeder.close();
    })();

    const reason = await runLoop({
      dataDir,
      paths,
      markers,
      pusher: replication ? notifyingPusher(pusher, () => replication?.nudge()) : pusher,
      log,
      idleMs: config.agentIdleMs,
      otherActivity: () => Math.max(feeder.lastActivity(), replication?.lastActivity() ?? 0),
      prefetchStatus: () => feeder.status(),
      // bin/walship sees a file store's walship.json and objects itself; an S3 store only through the agent.
      archiveCheck:
        config.store.kind === 's3'
          ? {
              archiveId,
              check: async (want: string) => {
                const now = await openBoundArchive(store, config, dataDir, cluster);
                if (now.manifest.archiveId !== archiveId) throw new ArchiveChangedError(`${store.description} holds archive ${now.manifest.archiveId}, not ${archiveId}`);
                // Without a record there is nothing to vouch for: the call waits for the agent's own archiving.
                const marker = await markers.lookup(want, join(dataDir, 'pg_wal', want));
                if (marker) await checkRecordedObject(store, want, marker);
              },
            }
          : undefined,
      shouldStop: async () => {
        if (stopRequested) return `signal ${stopRequested}`;
        if (!(await postmasterAlive(dataDir, postmaster))) return 'the PostgreSQL server is gone';
        if (configFileStamp(globals.config) !== stamp) return 'the configuration file changed';
        const b = await readBinding(dataDir).catch(() => undefined);
        if (b?.archiveId !== archiveId) return 'the data directory was bound to another archive';
        if (!holdsFlock(paths.lock)) return `${paths.lock} is no longer this agent's lock`;
        return undefined;
      },
    });
    archivingDone = true;
    await recovery;
    log.info(`agent exits: ${reason}`);
    return 0;
  } catch (err) {
    const e = describeError(err);
    log.error({ code: e.code, hint: e.hint }, `agent stopped: ${e.message}`);
    await writeStatus(paths, {
      pid: process.pid,
      started,
      queueDepth: 0,
      inFlight: 0,
      lastCompleted: undefined,
      lastError: { file: '', code: e.code, message: e.message, at: new Date().toISOString() },
      updated: new Date().toISOString(),
    }).catch(() => undefined);
    return 1;
  } finally {
    clearInterval(heartbeat);
    replication?.stop();
    await pusher?.close();
  }
}

function sleepUnless(ms: number, stop: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const step = Math.min(ms, 100);
    let left = ms;
    const t = setInterval(() => {
      left -= step;
      if (left <= 0 || stop()) {
        clearInterval(t);
        resolve();
      }
    }, step);
  });
}

/** Runs this same command again under `flock -xn LOCK`; 0 when another agent already holds it. */
function relaunchUnderLock(paths: AgentPaths, stderr: Logger): Promise<number> {
  return new Promise((done) => {
    const child = spawn('flock', ['-xn', '-E', String(LOCK_CONFLICT), paths.lock, process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
      stdio: 'inherit',
      env: { ...process.env, WALSHIP_AGENT_LOCKED: '1' },
    });
    for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, () => child.kill(sig));
    child.on('error', (err) => {
      stderr.error(`cannot run flock(1) to take ${paths.lock} (${err.message}); install util-linux`);
      done(3);
    });
    child.on('exit', (code, signal) => {
      if (code === LOCK_CONFLICT) {
        stderr.info(`an agent already runs for this data directory (it holds ${paths.lock})`);
        return done(0);
      }
      done(code ?? (signal ? 1 : 0));
    });
  });
}
