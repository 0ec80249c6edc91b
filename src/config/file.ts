import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import { settingForKey, type SettingName } from './settings.js';

export interface FileValue {
  readonly value: string;
  readonly where: string;
}

/**
 * Reads a `key = value` file (the same shape as postgresql.conf): `#`
 * comments, blank lines, optional quotes around the value. An unknown key is
 * an error rather than a silent no-op: a typo in a backup tool's
 * configuration must not go unnoticed until the restore.
 */
export function readConfigFile(path: string): Map<SettingName, FileValue> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError(`cannot read config file ${path} (${code})`, {
      hint: 'check --config / WALSHIP_CONFIG and that the file is readable by the PostgreSQL OS user',
    });
  }
  const out = new Map<SettingName, FileValue>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/^\s+|\s+$/g, '');
    if (line === '' || line.startsWith('#')) return;
    const where = `${path}:${i + 1}`;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new ConfigError(`${where}: expected "name = value", got "${line}"`);
    const key = line.slice(0, eq).trim();
    const setting = settingForKey(key);
    if (!setting) throw new ConfigError(`${where}: unknown setting "${key}"`);
    out.set(setting, { value: unquote(line.slice(eq + 1).trim()), where });
  });
  return out;
}

function unquote(v: string): string {
  if (v.length >= 2 && (v[0] === "'" || v[0] === '"') && v[v.length - 1] === v[0]) return v.slice(1, -1);
  return v;
}
