import { isAbsolute, resolve } from 'node:path';
import { createKeyFile } from '../crypto/index.js';
import { commandLogger } from './context.js';
import { EXIT } from './exit-codes.js';
import { reportError } from './report.js';

/** walship key create --file F: a new 256-bit key, mode 0600, never overwriting. */
export async function runKeyCreate(file: string): Promise<number> {
  const log = commandLogger('key');
  const path = isAbsolute(file) ? file : resolve(file);
  try {
    const id = await createKeyFile(path);
    process.stdout.write(`created key ${id} in ${path}\nset WALSHIP_ENCRYPTION=keyfile and WALSHIP_KEY_FILE=${path}; keep a copy of this file somewhere safe\n`);
    return EXIT.OK;
  } catch (err) {
    reportError(log, err);
    return EXIT.ERROR;
  }
}
