import { runAgent } from '../agent/run.js';
import { reportError } from './report.js';
import { commandLogger, type GlobalOptions } from './context.js';
import { EXIT } from './exit-codes.js';

/**
 * `walship agent [-D DATADIR]`: the resident archiver (src/agent). Started
 * on demand by bin/walship (WALSHIP_AGENT=on) or by systemd
 * (walship-agent@.service).
 */
export async function runAgentCommand(opts: { pgdata?: string }, globals: GlobalOptions): Promise<number> {
  const log = commandLogger('agent');
  try {
    return await runAgent({ pgdata: opts.pgdata }, globals, log);
  } catch (err) {
    reportError(log, err, 'error', 'agent: ');
    return EXIT.ERROR;
  }
}
