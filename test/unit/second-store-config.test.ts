import { describe, expect, it } from 'vitest';
import { loadConfig, pinStore, type Config } from '../../src/config/index.js';
import { storeFingerprint } from '../../src/config/fingerprint.js';
import { ConfigError } from '../../src/errors.js';

/**
 * WALSHIP_STORE2: which settings the second store takes from the first and
 * which are its own, what a bad one says, and how --store N narrows the
 * configuration to one store.
 */

const BASE = { WALSHIP_STORE: 'file:///srv/a', HOME: '/home/pg' } as const;

function load(env: Record<string, string>): Config {
  return loadConfig({ env: { ...BASE, ...env } });
}

function second(env: Record<string, string>): Config {
  const c = load(env);
  expect(c.second).toBeDefined();
  return c.second!.config;
}

function configError(env: Record<string, string>): ConfigError {
  try {
    load(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('second store settings', () => {
  it('is absent without WALSHIP_STORE2', () => {
    expect(load({}).second).toBeUndefined();
  });

  it('has its own location, defaults to sync, and a key cache of its own under the first store spool', () => {
    const c = load({ WALSHIP_STORE2: 'file:///srv/b', WALSHIP_SPOOL_DIR: '/var/spool/w' });
    expect(c.second!.mode).toBe('sync');
    expect(c.second!.config.store).toEqual({ kind: 'file', dir: '/srv/b', url: 'file:///srv/b' });
    expect(c.store.url).toBe('file:///srv/a');
    expect(c.second!.config.keyCacheDir).toBe('/var/spool/w/store2');
    expect(c.second!.config.spoolDir).toBe('/var/spool/w');
    expect(c.spoolDir).toBe('/var/spool/w');
  });

  it('takes the mode from WALSHIP_STORE2_MODE', () => {
    expect(load({ WALSHIP_STORE2: 'file:///srv/b', WALSHIP_STORE2_MODE: 'async' }).second!.mode).toBe('async');
  });

  it('never inherits the S3 endpoint or region: the first store\'s server is not the second\'s', () => {
    const c = second({
      WALSHIP_STORE: 's3://bkt/a',
      WALSHIP_S3_ENDPOINT: 'http://127.0.0.1:9000',
      WALSHIP_S3_REGION: 'eu-west-1',
      WALSHIP_S3_FORCE_PATH_STYLE: 'true',
      WALSHIP_STORE2: 's3://bkt-dr/a',
    });
    expect(c.s3).toEqual({ endpoint: undefined, region: undefined, forcePathStyle: false });
    const own = second({ WALSHIP_STORE: 's3://bkt/a', WALSHIP_STORE2: 's3://bkt-dr/a', WALSHIP_STORE2_S3_ENDPOINT: 'http://127.0.0.1:9001', WALSHIP_STORE2_S3_REGION: 'us-west-2' });
    expect(own.s3.endpoint).toBe('http://127.0.0.1:9001');
    expect(own.s3.region).toBe('us-west-2');
  });

  it('inherits every key setting when no WALSHIP_STORE2_ key setting is set', () => {
    const c = second({ WALSHIP_ENCRYPTION: 'keyfile', WALSHIP_KEY_FILE: '/k/one', WALSHIP_STORE2: 'file:///srv/b' });
    expect(c.encryption).toBe('keyfile');
    expect(c.keyFiles).toEqual(['/k/one']);
  });

  it('inherits everything that is not location or keys (compression, retries)', () => {
    const c = second({ WALSHIP_COMPRESSION: 'none', WALSHIP_RETRIES: '5', WALSHIP_STORE2: 'file:///srv/b' });
    expect(c.compression).toBe('none');
    expect(c.retries).toBe(5);
  });

  it('with any WALSHIP_STORE2_ key setting, takes only its own key settings (no half-inherited KMS settings)', () => {
    const c = second({
      WALSHIP_ENCRYPTION: 'kms',
      WALSHIP_KMS_KEY_ID: 'alias/main',
      WALSHIP_KMS_REGION: 'eu-west-1',
      WALSHIP_KMS_ENDPOINT: 'http://127.0.0.1:4566',
      WALSHIP_STORE2: 'file:///srv/b',
      WALSHIP_STORE2_ENCRYPTION: 'kms',
      WALSHIP_STORE2_KMS_KEY_ID: 'alias/dr',
    });
    expect(c.encryption).toBe('kms');
    expect(c.kms.keyId).toBe('alias/dr');
    expect(c.kms.region).toBeUndefined();
    expect(c.kms.endpoint).toBeUndefined();
  });

  it('a key file of its own replaces the first store\'s', () => {
    const c = second({ WALSHIP_ENCRYPTION: 'keyfile', WALSHIP_KEY_FILE: '/k/one', WALSHIP_STORE2: 'file:///srv/b', WALSHIP_STORE2_KEY_FILE: '/k/two' });
    expect(c.encryption).toBe('keyfile');
    expect(c.keyFiles).toEqual(['/k/two']);
  });

  it('naming only the DR KMS key keeps the copies encrypted (WALSHIP_ENCRYPTION is inherited)', () => {
    const c = second({ WALSHIP_ENCRYPTION: 'kms', WALSHIP_KMS_KEY_ID: 'alias/main', WALSHIP_STORE2: 'file:///srv/b', WALSHIP_STORE2_KMS_KEY_ID: 'alias/dr' });
    expect(c.encryption).toBe('kms');
    expect(c.kms.keyId).toBe('alias/dr');
  });

  it('a key file of its own under an inherited kms mode is an error that asks for the mode, never plaintext', () => {
    const err = configError({ WALSHIP_ENCRYPTION: 'kms', WALSHIP_KMS_KEY_ID: 'alias/main', WALSHIP_STORE2: 'file:///srv/b', WALSHIP_STORE2_KEY_FILE: '/k/two' });
    expect(err.message).toMatch(/^the second store \(WALSHIP_STORE2\): WALSHIP_ENCRYPTION=kms needs WALSHIP_STORE2_KMS_KEY_ID/);
    expect(second({ WALSHIP_ENCRYPTION: 'kms', WALSHIP_KMS_KEY_ID: 'alias/main', WALSHIP_STORE2: 'file:///srv/b', WALSHIP_STORE2_ENCRYPTION: 'keyfile', WALSHIP_STORE2_KEY_FILE: '/k/two' }).encryption).toBe('keyfile');
  });

  it('WALSHIP_STORE2_ENCRYPTION=none is honoured when said', () => {
    const c = second({ WALSHIP_ENCRYPTION: 'keyfile', WALSHIP_KEY_FILE: '/k/one', WALSHIP_STORE2: 'file:///srv/b', WALSHIP_STORE2_ENCRYPTION: 'none' });
    expect(c.encryption).toBe('none');
    expect(c.keyFiles).toEqual([]);
  });

  it.each([
    [{ WALSHIP_STORE2: 'file://relative' }, /^the second store \(WALSHIP_STORE2\): WALSHIP_STORE2="file:\/\/relative" is invalid/],
    [{ WALSHIP_STORE2: 'file:///srv/b', WALSHIP_STORE2_ENCRYPTION: 'keyfile' }, /^the second store \(WALSHIP_STORE2\): WALSHIP_STORE2_ENCRYPTION=keyfile needs WALSHIP_STORE2_KEY_FILE/],
    [{ WALSHIP_STORE2: 'file:///srv/b', WALSHIP_STORE2_KEY_FILE: 'rel.key' }, /^the second store \(WALSHIP_STORE2\): WALSHIP_STORE2_KEY_FILE="rel.key" is invalid/],
    [{ WALSHIP_STORE2: 's3://bkt-dr', WALSHIP_STORE2_S3_ENDPOINT: 'nohttp:9000' }, /^the second store \(WALSHIP_STORE2\): WALSHIP_STORE2_S3_ENDPOINT=.* is invalid/],
    [{ WALSHIP_STORE2: 'file:///srv/b', WALSHIP_STORE2_ENCRYPTION: 'kms' }, /^the second store \(WALSHIP_STORE2\): .*needs WALSHIP_STORE2_KMS_KEY_ID/],
  ])('a bad second-store setting is one line that says it is the second store\'s: %j', (env, message) => {
    const err = configError(env);
    expect(err.message).toMatch(message);
    expect(err.message).not.toContain('\n');
  });

  it('an invalid mode names WALSHIP_STORE2_MODE', () => {
    expect(configError({ WALSHIP_STORE2: 'file:///srv/b', WALSHIP_STORE2_MODE: 'later' }).message).toMatch(/^WALSHIP_STORE2_MODE="later" is invalid: expected sync \(push exits 0 only when both stores hold the file\) or async/);
  });

  it.each([
    [{ WALSHIP_STORE2: 'file:///srv/a' }],
    [{ WALSHIP_STORE2: 'file:///srv/a/' }],
    [{ WALSHIP_STORE: 's3://bkt/p', WALSHIP_STORE2: 's3://bkt/p/' }],
  ])('refuses the first store again as the second: %j', (env) => {
    expect(configError(env).message).toMatch(/^WALSHIP_STORE2=".*" is the first store again: expected a second, separate store$/);
  });

  it('accepts the same bucket and prefix on another S3 endpoint', () => {
    const c = second({ WALSHIP_STORE: 's3://bkt/p', WALSHIP_S3_ENDPOINT: 'http://127.0.0.1:9000', WALSHIP_STORE2: 's3://bkt/p', WALSHIP_STORE2_S3_ENDPOINT: 'http://127.0.0.1:9001' });
    expect(c.store.url).toBe('s3://bkt/p');
  });
});

describe('pinStore (--store N)', () => {
  const both = load({ WALSHIP_STORE2: 'file:///srv/b', WALSHIP_STORE2_MODE: 'async', WALSHIP_SPOOL_DIR: '/var/spool/w', WALSHIP_ENCRYPTION: 'keyfile', WALSHIP_KEY_FILE: '/k/one', WALSHIP_STORE2_KEY_FILE: '/k/two' });

  it('--store 1 is the first store alone', () => {
    const c = pinStore(both, 1);
    expect(c.store.url).toBe('file:///srv/a');
    expect(c.keyFiles).toEqual(['/k/one']);
    expect(c.second).toBeUndefined();
  });

  it('--store 2 is the second store alone, with its own keys and the first store\'s spool (the cluster\'s journal lives there)', () => {
    const c = pinStore(both, 2);
    expect(c.store.url).toBe('file:///srv/b');
    expect(c.keyFiles).toEqual(['/k/two']);
    expect(c.spoolDir).toBe('/var/spool/w');
    expect(c.second).toBeUndefined();
  });

  it('--store 2 without WALSHIP_STORE2 is a configuration error that says so', () => {
    expect(() => pinStore(load({}), 2)).toThrow(ConfigError);
    expect(() => pinStore(load({}), 2)).toThrow(/--store 2 asks for the second store, but WALSHIP_STORE2 is not set/);
  });

  it('--store 1 without a second store is the configuration as it is', () => {
    expect(pinStore(load({}), 1).store.url).toBe('file:///srv/a');
  });
});

describe('storeFingerprint with a second store', () => {
  const env = {};
  const one = load({});
  const sync = load({ WALSHIP_STORE2: 'file:///srv/b' });
  const async = load({ WALSHIP_STORE2: 'file:///srv/b', WALSHIP_STORE2_MODE: 'async' });
  const other = load({ WALSHIP_STORE2: 'file:///srv/c' });

  it('differs with and without a second store, between modes and between second stores', () => {
    const prints = [one, sync, async, other].map((c) => storeFingerprint(c, env));
    expect(new Set(prints).size).toBe(4);
  });

  it('is stable for one configuration', () => {
    expect(storeFingerprint(sync, env)).toBe(storeFingerprint(load({ WALSHIP_STORE2: 'file:///srv/b' }), env));
  });

  it('pinned to the first store it is the one-store fingerprint', () => {
    expect(storeFingerprint(pinStore(sync, 1), env)).toBe(storeFingerprint(one, env));
  });
});

describe('the second store keeps its own key caches, and its errors name its settings', () => {
  it('its KMS data-key cache is <spool>/store2, pinned or not; the spool itself stays the first store\'s', () => {
    const c = loadConfig({ env: { ...BASE, WALSHIP_STORE2: 'file:///srv/b', WALSHIP_SPOOL_DIR: '/spool' } });
    expect(c.keyCacheDir).toBe('/spool');
    expect(c.second?.config.keyCacheDir).toBe('/spool/store2');
    expect(c.second?.config.spoolDir).toBe('/spool');
    const pinned = pinStore(c, 2);
    expect(pinned.keyCacheDir).toBe('/spool/store2');
    expect(pinned.spoolDir).toBe('/spool');
  });

  it('a missing second-store key setting is named as WALSHIP_STORE2_…', () => {
    const env = { ...BASE, WALSHIP_STORE2: 'file:///srv/b', WALSHIP_STORE2_ENCRYPTION: 'kms' };
    expect(() => loadConfig({ env })).toThrow(/the second store \(WALSHIP_STORE2\): WALSHIP_STORE2_ENCRYPTION=kms needs WALSHIP_STORE2_KMS_KEY_ID/);
  });
});
