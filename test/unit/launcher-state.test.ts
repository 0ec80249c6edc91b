import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig, storeFingerprint } from '../../src/config/index.js';
import { clusterSpoolPath } from '../../src/spool/cluster.js';
import { launcherFunction } from '../support/launcher.js';

/**
 * bin/walship recomputes, in sh, two names the Node side computes: the store
 * fingerprint (which configuration a marker was confirmed through) and the
 * cluster's spool directory. If they ever drift apart, the launcher's
 * shortcut silently stops applying (safe, but slow): these keep them in step.
 */
const fn = launcherFunction;
const base = mkdtempSync(join(tmpdir(), 'walship-launcher-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));

function sh(script: string, env: Record<string, string>, cwd = base): string {
  return execFileSync('/bin/sh', ['-c', script], { env: { PATH: process.env.PATH!, ...env }, cwd, encoding: 'utf8' }).trim();
}

describe('bin/walship computes what the Node side computes', () => {
  const stores: Array<[string, string]> = [
    ['file:///var/lib/walship', ''],
    ['file:///var/lib/walship//', ''],
    ['s3://bucket', ''],
    ['s3://bucket/', 'http://127.0.0.1:9000'],
    ['s3://my.bucket//a/b//', 'https://s3.eu-west-1.amazonaws.com'],
    ['s3://my-bucket/prod/pg15', 'http://minio:9000'],
  ];
  it.each(stores)('store fingerprint of %s (endpoint "%s")', (store, endpoint) => {
    const env = { WALSHIP_STORE: store, WALSHIP_S3_ENDPOINT: endpoint };
    const shell = sh(`config_arg=\n${fn('store_fingerprint')}\n${fn('store_text')}\n${fn('norm_store')}\nstore_fingerprint && echo "$fp" || echo none`, env);
    expect(shell).toBe(storeFingerprint(loadConfig({ env })));
  });

  const seconds: Array<Record<string, string>> = [
    { WALSHIP_STORE2: 'file:///var/lib/walship-dr/' },
    { WALSHIP_STORE2: 'file:///var/lib/walship-dr', WALSHIP_STORE2_MODE: 'async' },
    { WALSHIP_STORE2: 's3://dr-bucket//pg/', WALSHIP_STORE2_S3_ENDPOINT: 'http://127.0.0.1:9000', WALSHIP_STORE2_MODE: 'sync' },
  ];
  it.each(seconds)('store fingerprint with a second store %o', (second) => {
    const env = { WALSHIP_STORE: 's3://bucket/pg', WALSHIP_S3_ENDPOINT: 'http://127.0.0.1:9001', ...second };
    const shell = sh(`config_arg=\n${fn('store_fingerprint')}\n${fn('store_text')}\n${fn('norm_store')}\nstore_fingerprint && echo "$fp" || echo none`, env);
    const node = storeFingerprint(loadConfig({ env }));
    expect(shell).toBe(node);
    // The second store changes the digest: a marker confirmed without it (or in another mode) never answers.
    expect(node).not.toBe(storeFingerprint(loadConfig({ env: { WALSHIP_STORE: env.WALSHIP_STORE, WALSHIP_S3_ENDPOINT: env.WALSHIP_S3_ENDPOINT } })));
  });

  it('leaves a second store with an unusual mode spelling to Node', () => {
    const env = { WALSHIP_STORE: 'file:///a', WALSHIP_STORE2: 'file:///b', WALSHIP_STORE2_MODE: 'ASYNC' };
    expect(sh(`config_arg=\n${fn('store_fingerprint')}\n${fn('store_text')}\n${fn('norm_store')}\nstore_fingerprint && echo "$fp" || echo none`, env)).toBe('none');
  });

  it('gives no fingerprint when a config file may decide, or the URL is unusual', () => {
    const run = (env: Record<string, string>, configArg = '') =>
      sh(`config_arg='${configArg}'\n${fn('store_fingerprint')}\n${fn('store_text')}\n${fn('norm_store')}\nstore_fingerprint && echo "$fp" || echo none`, env);
    expect(run({ WALSHIP_STORE: 'file:///a' }, '/etc/x.conf')).toBe('none');
    expect(run({ WALSHIP_STORE: 'file:///a', WALSHIP_CONFIG: '/etc/x.conf' })).toBe('none');
    expect(run({ WALSHIP_STORE: 'file:///a%20b' })).toBe('none');
    expect(run({ WALSHIP_STORE: 'file:///a/../b' })).toBe('none');
    expect(run({ WALSHIP_STORE: '' })).toBe('none');
  });

  it('names the cluster spool directory as clusterSpoolPath does', async () => {
    for (const [i, id] of [7301234567890123456n, 0n].entries()) {
      const data = join(base, `data ${i}`);
      mkdirSync(join(data, 'global'), { recursive: true });
      const control = Buffer.alloc(16);
      control.writeBigUInt64LE(id);
      writeFileSync(join(data, 'global', 'pg_control'), control);
      const shell = sh(`${fn('cluster_dir')}\n${fn('path_digest')}\ncluster_dir && echo "$cdir"`, { spool: '/spool' }, data);
      expect(shell.replace(/^\/spool/, '')).toBe((await clusterSpoolPath('/spool', data)).replace(/^\/spool/, ''));
    }
  });
});

describe("bin/walship's clock_at (the hand-over's clock without date(1))", () => {
  it('formats epoch milliseconds exactly as toISOString does, across leap days, month and year ends', () => {
    const times = [
      0, 1, 999, 86_399_999, Date.UTC(2000, 1, 29, 23, 59, 59, 9), Date.UTC(2000, 2, 1), Date.UTC(2024, 11, 31, 23, 59, 59, 999),
      Date.UTC(2026, 11, 2, 17, 5, 3, 40), Date.UTC(2038, 0, 19, 3, 14, 8), Date.UTC(2100, 1, 28, 12), Date.UTC(2100, 2, 1), Date.now(),
    ];
    const script = `${fn('clock_at')}\nfor t in ${times.join(' ')}; do clock_at $t; echo "$now_ms $now_iso"; done`;
    const lines = sh(script, {}).split('\n');
    expect(lines).toEqual(times.map((t) => `${t} ${new Date(t).toISOString()}`));
  });
});

describe("bin/walship's clock_at with leading zeros", () => {
  it('reads them as decimal, not octal', () => {
    expect(sh(`${fn('clock_at')}\nclock_at 0089; echo "$now_ms $now_iso"`, {})).toBe(`89 ${new Date(89).toISOString()}`);
  });
});
