import { access, constants } from 'node:fs/promises';
import { loadConfig } from '../config/index.js';
import { collect, formatStatus, reporterSettings, statusView, type ReporterCliOptions } from '../metrics/index.js';
import { commandLogger, type GlobalOptions } from './context.js';
import { EXIT } from './exit-codes.js';
import { reportError } from './report.js';

export interface StatusCliOptions extends ReporterCliOptions {
  readonly json?: boolean;
}

/**
 * walship status [--json]: where WAL goes, whether it gets there in time,
 * and what to do when it does not. Local reads (and the database, if
 * configured) only, like metrics; it changes nothing.
 *
 * Exit: 0 healthy; 1 a problem needs attention (listed); 2 bad arguments or
 * configuration.
 */
export async function runStatus(opts: StatusCliOptions, globals: GlobalOptions): Promise<number> {
  const log = commandLogger('status');
  let config;
  let settings;
  try {
    config = loadConfig({ configFile: globals.config });
    log.level = config.logLevel;
    settings = reporterSettings(config, opts);
  } catch (err) {
    reportError(log, err);
    return EXIT.USAGE;
  }
  const report = await collect({ ...settings.collect, compact: false });
  const keyFiles = await Promise.all(
    config.keyFiles.map(async (path) => ({ path, readable: await access(path, constants.R_OK).then(() => true, () => false) })),
  );
  const view = statusView(report, {
    store: config.store.url,
    encryption: config.encryption,
    keyFiles,
    kmsKeyId: config.encryption === 'kms' ? config.kms.keyId : undefined,
    spoolDir: report.stateDir ?? config.spoolDir,
    cluster: settings.cluster,
  });
  const text = opts.json ? `${JSON.stringify(view, null, 2)}\n` : formatStatus(view);
  await new Promise<void>((res, rej) => process.stdout.write(text, (e) => (e ? rej(e) : res())));
  return view.healthy ? EXIT.OK : EXIT.FAILED;
}
