import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import type { LagReport } from '../../src/metrics/collect.js';
import { metricFamilies } from '../../src/metrics/families.js';
import { emptyState } from '../../src/spool/state-model.js';
import { BACKUP_SERIES, promtool, requireMonitoringTools } from '../support/monitoring.js';

/**
 * docker/ and docs/monitoring.md cannot be run here (no Docker engine, no
 * systemd). What can be checked is checked: the Prometheus configuration and
 * rules with promtool (including the rules' own unit tests), that every
 * metric the rules and the docs name is one walship writes, that the image's
 * walship.conf is a valid configuration, and that the files the Dockerfile,
 * compose file and systemd timer refer to exist.
 */
const root = join(import.meta.dirname, '..', '..');
const docker = join(root, 'docker');
const read = (p: string) => readFileSync(join(root, p), 'utf8');

/** Every metric walship can write: a report with every optional part present. */
function writtenMetricNames(): Set<string> {
  const report: LagReport = {
    generatedAt: 0,
    rpoSeconds: 900,
    systemIdentifier: '1',
    pgData: '/d',
    backlog: { readable: true, ready: [{ name: '000000010000000000000001', bytes: 1, finishedAt: 0 }], bytes: 1, oldestFinishedAt: 0, walFsAvailBytes: 1, walFsSizeBytes: 1 },
    backlogSource: 'pg_wal',
    lagSeconds: 1,
    rpoBreached: false,
    state: { state: emptyState(), exists: true, pending: 0, discarded: 0, totalsCorrupt: false },
    db: {
      ok: true,
      facts: {
        inRecovery: true,
        archiveMode: 'on',
        segmentSize: 16,
        flushPosition: 32,
        replayPosition: 1,
        receivePosition: 1,
        lastReplayTime: 0,
        archiver: { archivedCount: 0, lastArchivedWal: undefined, lastArchivedTime: undefined, failedCount: 0, lastFailedWal: undefined, lastFailedTime: undefined },
        now: 0,
        systemIdentifier: '1',
        dataDirectory: undefined,
        listing: undefined,
      },
    },
    unarchivedBytes: 1,
    unswitchedBytes: 1,
    pushFailing: false,
    stateDir: undefined,
    drills: { v: 1, runs: { success: 1, failure: 0, error: 0 }, lastSuccess: { at: 0, backupId: 'b', rtoSeconds: 1, targetAccuracySeconds: 1 } },
    rtoObjectiveSeconds: 14400,
    replication: { syncedThroughMs: 0, pendingObjects: 0, lastPassMs: 0, failing: false },
    agent: { running: true, stuck: false, pid: 1, queueDepth: 0, inFlight: 0, lastCompletedAt: 0, lastCompletedFile: '000000010000000000000001', lastError: undefined, prefetchPooled: 0, prefetchInFlight: 0 },
  };
  // Families whose samples appear only with data (by code, last positions) are declared all the same.
  const names = new Set(metricFamilies(report, { version: 'v', store: 's', encryption: 'none', compression: 'lz4' }).map((f) => f.name));
  for (const n of [...names]) if (n.endsWith('_duration_seconds')) for (const s of ['_bucket', '_sum', '_count']) names.add(n + s);
  return names;
}

describe('monitoring packaging (docker/, docs/monitoring.md)', () => {
  it('promtool accepts the Prometheus configuration and rules, and the rules pass their unit tests', async () => {
    requireMonitoringTools();
    const config = await promtool(['check', 'config', 'prometheus.yml'], join(docker, 'prometheus'));
    expect(config.output).toMatch(/SUCCESS: 2 rule files found/);
    expect(config.code, config.output).toBe(0);
    const rules = await promtool(['check', 'rules', 'walship-rules.yml'], join(docker, 'prometheus'));
    expect(rules.code, rules.output).toBe(0);
    const tests = await promtool(['test', 'rules', 'walship-rules.test.yml'], join(docker, 'prometheus'));
    expect(tests.output).toMatch(/SUCCESS/);
    expect(tests.code, tests.output).toBe(0);
    // The drill-age alerts (35 days) are evaluated hourly, in a file of their own.
    const drillTests = await promtool(['test', 'rules', 'walship-drill-rules.test.yml'], join(docker, 'prometheus'));
    expect(drillTests.output).toMatch(/SUCCESS/);
    expect(drillTests.code, drillTests.output).toBe(0);
    const secondStoreTests = await promtool(['test', 'rules', 'walship-second-store-rules.test.yml'], join(docker, 'prometheus'));
    expect(secondStoreTests.output).toMatch(/SUCCESS/);
    expect(secondStoreTests.code, secondStoreTests.output).toBe(0);
  });

  it('every walship metric the rules and the docs name is one walship writes, and the docs list them all', () => {
    const written = writtenMetricNames();
    // The backup series are written by `walship backup` (issue 11, names
    // fixed); until it reports through metricFamilies they count as written.
    for (const n of BACKUP_SERIES) written.add(n);
    // walship_monitor is the database role of the examples, not a metric.
    const mentioned = (text: string) => new Set([...text.matchAll(/\bwalship_[a-z_]+[a-z]\b/g)].map((m) => m[0]).filter((n) => n !== 'walship_monitor'));
    const rules = mentioned(
      ['walship-rules.yml', 'walship-rules.test.yml', 'walship-drill-rules.test.yml', 'walship-second-store-rules.test.yml', 'walship-compat-rules.yml', 'walship-compat-rules.test.yml'].map((f) => read(`docker/prometheus/${f}`)).join('\n'),
    );
    const docs = mentioned(read('docs/monitoring.md'));
    expect([...rules].filter((n) => !written.has(n))).toEqual([]);
    expect([...docs].filter((n) => !written.has(n))).toEqual([]);
    const families = [...written].filter((n) => !/_(bucket|sum|count)$/.test(n) || !written.has(n.replace(/_(bucket|sum|count)$/, '')));
    expect(families.filter((n) => !docs.has(n))).toEqual([]);
    expect(rules.has('walship_wal_archival_lag_seconds')).toBe(true);
    expect(read('docker/prometheus/walship-rules.yml')).toContain('expr: walship_wal_archival_lag_seconds > 900\n        for: 15m');
  });

  it("the image's walship.conf is a valid configuration for metrics and status", () => {
    const config = loadConfig({ configFile: join(docker, 'walship.conf'), env: {} });
    expect(config.store).toMatchObject({ kind: 's3', bucket: 'walship', prefix: 'pg15' });
    expect(config.pgData).toBe('/var/lib/postgresql/data');
    expect(config.rpoSeconds).toBe(900);
    expect(config.clusterLabel).toBe('compose-demo');
  });

  it('what the Dockerfile, the compose file and the systemd units refer to exists and agrees', () => {
    const dockerfile = read('docker/Dockerfile');
    for (const m of dockerfile.matchAll(/^COPY (?!--from)(\S+)/gm)) expect(existsSync(join(root, m[1]!)), m[1]).toBe(true);
    expect(dockerfile).toMatch(/^FROM postgres:15-bookworm$/m);
    const ignore = read('docker/Dockerfile.dockerignore');
    for (const m of dockerfile.matchAll(/^COPY (?!--from)(\S+)/gm)) expect(ignore).toContain(`!${m[1]!.replace(/\/$/, '')}`);

    const compose = read('docker/compose.yaml');
    for (const m of compose.matchAll(/- \.\/(\S+?):/g)) expect(existsSync(join(docker, m[1]!)), m[1]).toBe(true);
    for (const service of ['minio:', 'postgres:', 'walship-metrics:', 'node-exporter:', 'prometheus:']) expect(compose).toContain(`\n  ${service}`);
    // The reporter writes where node_exporter reads: the same volume.
    expect(compose).toContain('walship-textfile:/var/lib/walship/textfile');
    expect(compose).toContain('walship-textfile:/textfile:ro');
    expect(compose).toContain('--collector.textfile.directory=/textfile');
    expect(read('docker/prometheus/prometheus.yml')).toContain("targets: ['node-exporter:9100']");
    const initdb = read('docker/initdb/10-walship.sh');
    expect(initdb).toContain("archive_command = 'walship push %p'");
    expect(initdb).toContain("restore_command = 'walship fetch %f %p'");

    const timer = read('docker/systemd/walship-metrics.timer');
    const unit = /^Unit=(\S+)$/m.exec(timer)?.[1];
    expect(unit && existsSync(join(docker, 'systemd', unit))).toBe(true);
    for (const f of ['walship-metrics.service', 'walship-metrics-once.service']) {
      const text = read(`docker/systemd/${f}`);
      expect(text).toMatch(/^User=postgres$/m);
      expect(text).toMatch(/^ExecStart=\S*walship metrics --textfile \S+\.prom/m);
    }
  });
});
