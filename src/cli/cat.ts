import { readArchived } from '../pipeline/fetch.js';
import { parseWalName } from '../wal/index.js';
import { commandContext, commandLogger, type GlobalOptions } from './context.js';
import { EXIT } from './exit-codes.js';
import { reportError } from './report.js';

/** walship cat NAME > file: the raw, verified file on stdout, for getting WAL out by hand. */
export async function runCat(name: string, globals: GlobalOptions): Promise<number> {
  const log = commandLogger('cat');
  try {
    parseWalName(name);
    if (process.stdout.isTTY) {
      log.error(`refusing to write binary WAL to a terminal; redirect it: walship cat ${name} > ${name}`);
      return EXIT.USAGE;
    }
    const { config, store, keys } = await commandContext(globals, log);
    const r = await readArchived({ name, store, keys, retries: config.retries });
    if (r.status === 'not-found') {
      log.error({ file: name, key: r.key }, `${name} is not in the archive`);
      return EXIT.FAILED;
    }
    await new Promise<void>((resolve, reject) => process.stdout.write(r.data, (err) => (err ? reject(err) : resolve())));
    return EXIT.OK;
  } catch (err) {
    reportError(log, err);
    return EXIT.ERROR;
  }
}
