import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { ConfigError } from '../../src/errors.js';

const base = { WALSHIP_STORE: 'file:///var/lib/walship', WALSHIP_CONFIG: '/dev/null' };

describe('KMS settings', () => {
  it('defaults: no key id, key cache on, rotate every 24 h, no count limit', () => {
    const c = loadConfig({ env: base });
    expect(c.kms).toEqual({ keyId: undefined, readKeyIds: [], region: undefined, endpoint: undefined, keyCache: true, rotateAgeMs: 86_400_000, rotateSegments: 0 });
  });

  it.each([
    '1234abcd-12ab-34cd-56ef-1234567890ab',
    'mrk-1234abcd12ab34cd56ef1234567890ab',
    'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab',
    'alias/walship-prod',
    'arn:aws:kms:eu-west-1:111122223333:alias/walship-prod',
    'arn:aws-us-gov:kms:us-gov-west-1:111122223333:alias/walship',
  ])('accepts the key id %s', (id) => {
    const c = loadConfig({ env: { ...base, WALSHIP_ENCRYPTION: 'kms', WALSHIP_KMS_KEY_ID: id } });
    expect(c.encryption).toBe('kms');
    expect(c.kms.keyId).toBe(id);
  });

  it.each([
    [{ WALSHIP_ENCRYPTION: 'kms' }, /WALSHIP_ENCRYPTION=kms needs WALSHIP_KMS_KEY_ID/],
    [{ WALSHIP_KMS_KEY_ID: 'walship key' }, /WALSHIP_KMS_KEY_ID="walship key" is invalid: expected an AWS KMS key id, key ARN, alias\/NAME or alias ARN/],
    [{ WALSHIP_KMS_KEY_ID: 'arn:aws:s3:::bucket' }, /WALSHIP_KMS_KEY_ID/],
    [{ WALSHIP_KMS_REGION: 'EU West' }, /WALSHIP_KMS_REGION/],
    [{ WALSHIP_KMS_ENDPOINT: 'kms.local' }, /WALSHIP_KMS_ENDPOINT="kms.local" is invalid/],
    [{ WALSHIP_KEY_ROTATE_AGE: '0' }, /WALSHIP_KEY_ROTATE_AGE="0" is invalid: expected a duration such as 24h/],
    [{ WALSHIP_KEY_ROTATE_AGE: '1 week' }, /WALSHIP_KEY_ROTATE_AGE/],
    [{ WALSHIP_KEY_ROTATE_AGE: '400d' }, /WALSHIP_KEY_ROTATE_AGE/],
    [{ WALSHIP_KEY_ROTATE_SEGMENTS: '-1' }, /WALSHIP_KEY_ROTATE_SEGMENTS/],
    [{ WALSHIP_KMS_KEY_CACHE: 'maybe' }, /WALSHIP_KMS_KEY_CACHE/],
  ])('refuses %j', (env, message) => {
    expect(() => loadConfig({ env: { ...base, ...env } })).toThrow(ConfigError);
    expect(() => loadConfig({ env: { ...base, ...env } })).toThrow(message);
  });

  it.each([
    ['90', 90_000],
    ['90s', 90_000],
    ['15m', 900_000],
    ['15min', 900_000],
    ['12h', 43_200_000],
    ['7d', 604_800_000],
    [' 24H ', 86_400_000],
  ])('WALSHIP_KEY_ROTATE_AGE=%s is %i ms', (v, ms) => {
    expect(loadConfig({ env: { ...base, WALSHIP_KEY_ROTATE_AGE: v } }).kms.rotateAgeMs).toBe(ms);
  });

  it('reads region, endpoint, cache and count limit; keyfile settings are unaffected', () => {
    const c = loadConfig({
      env: {
        ...base,
        WALSHIP_ENCRYPTION: 'kms',
        WALSHIP_KMS_KEY_ID: 'alias/x',
        WALSHIP_KMS_REGION: 'eu-central-1',
        WALSHIP_KMS_ENDPOINT: 'https://kms.eu-central-1.amazonaws.com',
        WALSHIP_KMS_KEY_CACHE: 'off',
        WALSHIP_KEY_ROTATE_SEGMENTS: '5000',
        WALSHIP_KEY_FILE: '/etc/walship/old.key',
      },
    });
    expect(c.kms).toMatchObject({ region: 'eu-central-1', endpoint: 'https://kms.eu-central-1.amazonaws.com', keyCache: false, rotateSegments: 5000 });
    expect(c.keyFiles).toEqual(['/etc/walship/old.key']);
  });
});
