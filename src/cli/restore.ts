import type { GlobalOptions } from './context.js';
import { EXIT } from './exit-codes.js';

export async function runRestore(_opts: Record<string, unknown>, _globals: GlobalOptions): Promise<number> {
  process.stderr.write('walship restore: not implemented yet\n');
  return EXIT.FAILED;
}
