import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { GlobalOptions } from './context.js';

/** The restore_command restore and drill write: this walship, the same config file and store pin, never credentials. */
export function restoreCommand(globals: GlobalOptions): string {
  const entry = process.argv[1] ?? '';
  const launcher = resolve(dirname(entry), '..', 'bin', 'walship');
  const bin = existsSync(launcher) ? launcher : 'walship';
  const config = globals.config ?? process.env.WALSHIP_CONFIG;
  const q = (s: string) => (/^[A-Za-z0-9_./=:-]+$/.test(s) ? s : `"${s.replace(/(["\\$`])/g, '\\$1')}"`);
  // --store N pins the restore's reads to one store (a region down); keep that pin.
  const pin = globals.store ? ` --store ${q(globals.store)}` : '';
  return `${q(bin)}${config ? ` -c ${q(resolve(config))}` : ''}${pin} fetch %f %p`;
}
