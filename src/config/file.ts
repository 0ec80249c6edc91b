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
    // Never echo the line: it may be a DSN or an endpoint with a password in
    // it, and this message lands in PostgreSQL's server log. Name the file,
    // the line and, when it can be told, the setting.
    if (eq <= 0) {
      const named = settingForKey(line.split(/[\s:]/, 1)[0]!);
      throw new ConfigError(`${where}: expected "name = value"${named ? ` for ${named}` : ''}; the line has no "="`, {
        hint: `fix line ${i + 1} of ${path}, e.g. WALSHIP_STORE = s3://bucket/prefix`,
      });
    }
    const key = line.slice(0, eq).trim();
    const setting = settingForKey(key);
    if (!setting) {
      const shown = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(key) ? `"${key}"` : '(not a setting name)';
      throw new ConfigError(`${where}: unknown setting ${shown}`, { hint: 'the settings are listed in the README (WALSHIP_*)' });
    }
    out.set(setting, { value: unquote(line.slice(eq + 1).trim()), where });
  });
  return out;
}

function unquote(v: string): string {
  if (v.length >= 2 && (v[0] === "'" || v[0] === '"') && v[v.length - 1] === v[0]) return v.slice(1, -1);
  return v;
}
