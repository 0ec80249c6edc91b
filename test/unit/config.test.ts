import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig, parseStoreUrl } from '../../src/config/index.js';
import { ConfigError } from '../../src/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'walship-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(text: string): string {
  const p = join(dir, `c${Math.random().toString(36).slice(2)}.conf`);
  writeFileSync(p, text);
  return p;
}

describe('configuration', () => {
  it('has sane defaults with only a store', () => {
    const c = loadConfig({ env: { WALSHIP_STORE: 'file:///var/lib/walship', HOME: '/home/pg' } });
    expect(c).toMatchObject({
      store: { kind: 'file', dir: '/var/lib/walship' },
      compression: 'lz4',
      encryption: 'none',
      logLevel: 'info',
      spoolDir: expect.stringMatching(/\.walship$/),
      timeoutMs: 30000,
      retries: 3,
      s3: { forcePathStyle: false },
    });
  });

  it('reads a config file and lets the environment win', () => {
    const p = file(`# walship\nstore = s3://bkt/pg/main\ns3-endpoint = "http://127.0.0.1:9000"\nWALSHIP_COMPRESSION=none\nlog_level = debug\n`);
    const c = loadConfig({ configFile: p, env: { WALSHIP_LOG_LEVEL: 'warn' } });
    expect(c.store).toEqual({ kind: 's3', bucket: 'bkt', prefix: 'pg/main', url: 's3://bkt/pg/main' });
    expect(c.s3.endpoint).toBe('http://127.0.0.1:9000');
    expect(c.compression).toBe('none');
    expect(c.logLevel).toBe('warn');
  });

  it('takes the file from WALSHIP_CONFIG', () => {
    const p = file('store = file:///x\n');
    expect(loadConfig({ env: { WALSHIP_CONFIG: p } }).store.url).toBe('file:///x');
  });

  it.each([
    [{}, /^WALSHIP_STORE is not set: expected file:\/\/\/absolute\/dir or s3:\/\/bucket/],
    [{ WALSHIP_STORE: 'file://relative/dir' }, /^WALSHIP_STORE="file:\/\/relative\/dir" is invalid: expected/],
    [{ WALSHIP_STORE: '/var/lib/walship' }, /WALSHIP_STORE=.* is invalid/],
    [{ WALSHIP_STORE: 'file:///a/../b' }, /WALSHIP_STORE=.* is invalid/],
    [{ WALSHIP_STORE: 's3://Bad_Bucket' }, /WALSHIP_STORE=.* is invalid/],
    [{ WALSHIP_STORE: 'file:///x', WALSHIP_COMPRESSION: 'zstd' }, /^WALSHIP_COMPRESSION="zstd" is invalid: expected lz4 or none$/],
    [{ WALSHIP_STORE: 'file:///x', WALSHIP_ENCRYPTION: 'aes' }, /^WALSHIP_ENCRYPTION="aes" is invalid: expected none, keyfile or kms$/],
    [{ WALSHIP_STORE: 'file:///x', WALSHIP_ENCRYPTION: 'keyfile' }, /needs WALSHIP_KEY_FILE/],
    [{ WALSHIP_STORE: 'file:///x', WALSHIP_KEY_FILE: 'relative.key' }, /WALSHIP_KEY_FILE=.*absolute/],
    [{ WALSHIP_STORE: 'file:///x', WALSHIP_S3_FORCE_PATH_STYLE: 'maybe' }, /^WALSHIP_S3_FORCE_PATH_STYLE="maybe" is invalid: expected true or false$/],
    [{ WALSHIP_STORE: 'file:///x', WALSHIP_S3_ENDPOINT: 'localhost:9000' }, /WALSHIP_S3_ENDPOINT=.* is invalid: expected an http/],
    [{ WALSHIP_STORE: 'file:///x', WALSHIP_TIMEOUT: '0' }, /WALSHIP_TIMEOUT="0" is invalid/],
    [{ WALSHIP_STORE: 'file:///x', WALSHIP_RETRIES: 'lots' }, /WALSHIP_RETRIES="lots" is invalid/],
    [{ WALSHIP_STORE: 'file:///x', WALSHIP_SPOOL_DIR: 'spool' }, /WALSHIP_SPOOL_DIR="spool" is invalid/],
    [{ WALSHIP_STORE: 'file:///x', WALSHIP_LOG_LEVEL: 'loud' }, /WALSHIP_LOG_LEVEL="loud" is invalid/],
  ])('a bad setting is a one-line error naming it: %j', (env, message) => {
    let err: unknown;
    try {
      loadConfig({ env });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).not.toContain('\n');
  });

  it('names the file and line of a bad or unknown key', () => {
    const p = file('store = file:///x\n\ncompresion = lz4\n');
    expect(() => loadConfig({ configFile: p, env: {} })).toThrow(`${p}:3: unknown setting "compresion"`);
    const q = file('store = file:///x\ncompression = brotli\n');
    expect(() => loadConfig({ configFile: q, env: {} })).toThrow(`WALSHIP_COMPRESSION (${q}:2)="brotli" is invalid`);
    expect(() => loadConfig({ configFile: join(dir, 'nope.conf'), env: {} })).toThrow(/cannot read config file .*nope\.conf \(ENOENT\)/);
  });

  it('normalises store URLs', () => {
    expect(parseStoreUrl('file:///srv/wal/')).toMatchObject({ dir: '/srv/wal', url: 'file:///srv/wal' });
    expect(parseStoreUrl('s3://my-bucket')).toMatchObject({ bucket: 'my-bucket', prefix: '' });
    expect(parseStoreUrl('s3://my.bucket/a/b/')).toMatchObject({ prefix: 'a/b', url: 's3://my.bucket/a/b' });
  });
});
