import { resolve } from 'node:path';
import { loadConfig } from '../config/index.js';
import { ConfigError, errorMessage } from '../errors.js';
import { collect, commonLabels, metricFamilies, parseInterval, removeStaleTemporaries, renderText, reporterSettings, writeTextfile, type ReporterCliOptions } from '../metrics/index.js';
import { VERSION } from '../version.js';
import { commandLogger, type GlobalOptions } from './context.js';
import { EXIT } from './exit-codes.js';
import { reportError } from './report.js';

export interface MetricsCliOptions extends ReporterCliOptions {
  readonly textfile?: string;
  readonly watch?: string;
}

/**
 * walship metrics [--textfile F.prom] [--watch INTERVAL]: the lag report in
 * Prometheus text format, for node_exporter's textfile collector. One shot
 * (a systemd timer, cron) or, with --watch, one long-running process that
 * rewrites the file every INTERVAL until SIGTERM. Reads only local state and,
 * if configured, the database: it never contacts the store.
 *
 * Exit: 0 written; 2 bad arguments or configuration; 3 the file could not be
 * written (one shot). With --watch a failed round is logged and retried.
 */
export async function runMetrics(opts: MetricsCliOptions, globals: GlobalOptions): Promise<number> {
  const log = commandLogger('metrics');
  let settings;
  let config;
  let target: string | undefined;
  let intervalMs: number | undefined;
  try {
    config = loadConfig({ configFile: globals.config });
    log.level = config.logLevel;
    settings = reporterSettings(config, opts);
    if (opts.textfile !== undefined) {
      target = resolve(opts.textfile);
      if (!target.endsWith('.prom')) {
        throw new ConfigError(`--textfile ${opts.textfile}: the name must end in .prom (node_exporter's textfile collector reads only *.prom files)`);
      }
    }
    if (opts.watch !== undefined) {
      intervalMs = parseInterval(opts.watch);
      if (intervalMs === undefined || intervalMs < 100) throw new ConfigError(`--watch "${opts.watch}" is invalid: expected an interval such as 15s or 1m`);
      if (!target) throw new ConfigError('--watch needs --textfile: it keeps that file fresh');
    }
  } catch (err) {
    reportError(log, err);
    return EXIT.USAGE;
  }

  const info = { version: VERSION, store: config.store.url, encryption: config.encryption, compression: config.compression };
  const once = async (): Promise<void> => {
    const report = await collect({ ...settings.collect, compact: true });
    const text = renderText(metricFamilies(report, info), commonLabels(report, settings.cluster));
    if (target) await writeTextfile(target, text);
    else await new Promise<void>((res, rej) => process.stdout.write(text, (e) => (e ? rej(e) : res())));
    log.debug({ textfile: target, lagSeconds: report.lagSeconds }, 'metrics written');
  };

  if (intervalMs === undefined) {
    try {
      await once();
      return EXIT.OK;
    } catch (err) {
      reportError(log, err);
      return EXIT.ERROR;
    }
  }

  // --watch: rewrite until told to stop; a signal ends the wait at once but
  // never interrupts a write (the rename is atomic anyway).
  let stop = false;
  let wake: () => void = () => undefined;
  const onSignal = () => {
    stop = true;
    wake();
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  await removeStaleTemporaries(target!);
  log.info({ textfile: target, intervalMs }, `writing ${target} every ${opts.watch}`);
  let failing = false;
  while (!stop) {
    const started = Date.now();
    try {
      await once();
      if (failing) log.info({ textfile: target }, 'metrics are written again');
      failing = false;
    } catch (err) {
      // Once per failure streak at error level, so the log does not flood.
      if (!failing) reportError(log, err);
      else log.debug(`metrics round failed: ${errorMessage(err)}`);
      failing = true;
    }
    const wait = Math.max(0, intervalMs - (Date.now() - started));
    await new Promise<void>((res) => {
      const t = setTimeout(res, wait);
      wake = () => {
        clearTimeout(t);
        res();
      };
    });
  }
  log.info('stopped');
  return EXIT.OK;
}
