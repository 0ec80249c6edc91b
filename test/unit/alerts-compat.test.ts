import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { collect } from '../../src/metrics/collect.js';
import { commonLabels, metricFamilies } from '../../src/metrics/families.js';
import { renderText } from '../../src/metrics/prom-text.js';
import { BACKUP_SERIES, promtool, requireMonitoringTools, runTool } from '../support/monitoring.js';
import { parsePromText } from '../support/prom-text.js';

/**
 * The runbooks' alert rules on walship's series (docker/prometheus/
 * walship-compat-rules.yml, runbook-alerts.yml and their promtool tests),
 * and the daily backup's packaging (docker/systemd/walship-backup.*,
 * the compose service). promtool runs for real; so does systemd-analyze
 * where the machine has it.
 */
const root = join(import.meta.dirname, '..', '..');
const prom = join(root, 'docker', 'prometheus');
const read = (p: string) => readFileSync(join(root, p), 'utf8');

/** The alert expressions the teams' runbooks run, character for character. */
const RUNBOOK_ALERTS: ReadonlyArray<{ alert: string; expr: string; for?: string }> = [
  { alert: 'BackupMissing', expr: 'time() - postgres_backup_last_success_timestamp > 86400', for: '30m' },
  { alert: 'BackupVerificationFailed', expr: 'postgres_backup_verification_failed == 1', for: '5m' },
  { alert: 'WALArchivalLag', expr: 'postgres_wal_archival_lag_seconds > 900', for: '15m' },
  { alert: 'BackupFailed', expr: 'backup_last_success_timestamp < (time() - 86400)' },
  { alert: 'BackupFileTooSmall', expr: 'backup_file_size_bytes < 1000000' },
  { alert: 'WALArchiveLag', expr: 'pg_wal_archive_lag_seconds > 600' },
];

/** The rules of a rules file, split at each `- alert:` / `- record:` (the files are written one rule per block). */
function ruleBlocks(text: string): Array<{ kind: 'alert' | 'record'; name: string; body: string }> {
  const out: Array<{ kind: 'alert' | 'record'; name: string; body: string }> = [];
  const starts = [...text.matchAll(/^ {6}- (alert|record): (\S+)$/gm)];
  starts.forEach((m, i) => {
    const end = i + 1 < starts.length ? starts[i + 1]!.index : text.length;
    out.push({ kind: m[1] as 'alert' | 'record', name: m[2]!, body: text.slice(m.index, end) });
  });
  return out;
}

describe('runbook alerts on walship series (docker/prometheus/walship-compat-rules.yml)', () => {
  it('promtool accepts the recording rules and the runbook rules, and their unit tests pass', async () => {
    requireMonitoringTools();
    const check = await promtool(['check', 'rules', 'walship-compat-rules.yml', 'runbook-alerts.yml'], prom);
    expect(check.code, check.output).toBe(0);
    expect(check.output).toMatch(/walship-compat-rules\.yml\s+SUCCESS: 6 rules found/);
    expect(check.output).toMatch(/runbook-alerts\.yml\s+SUCCESS: 6 rules found/);
    const tests = await promtool(['test', 'rules', 'walship-compat-rules.test.yml'], prom);
    expect(tests.code, tests.output).toBe(0);
    expect(tests.output).toMatch(/SUCCESS/);
  });

  it('the runbook rules use exactly the runbooks\' expressions and durations, and each is tested firing', () => {
    const rules = ruleBlocks(read('docker/prometheus/runbook-alerts.yml'));
    expect(rules.map((r) => r.name).sort()).toEqual(RUNBOOK_ALERTS.map((a) => a.alert).sort());
    const tests = read('docker/prometheus/walship-compat-rules.test.yml');
    for (const a of RUNBOOK_ALERTS) {
      const rule = rules.find((r) => r.name === a.alert)!;
      expect(rule.body, a.alert).toContain(`\n        expr: ${a.expr}\n`);
      if (a.for) expect(rule.body, a.alert).toContain(`\n        for: ${a.for}\n`);
      else expect(rule.body, a.alert).not.toMatch(/\n {8}for:/);
      // At least one case where it fires (exp_alerts with an entry), not only ones where it stays quiet.
      expect(tests, a.alert).toMatch(new RegExp(`alertname: ${a.alert}\\n\\s+exp_alerts:\\n\\s+- exp_labels`));
    }
  });

  it('the tests feed only series walship writes, and every name a runbook rule reads is recorded from them', () => {
    const tests = read('docker/prometheus/walship-compat-rules.test.yml');
    expect(tests).toMatch(/rule_files:\n {2}- walship-compat-rules\.yml\n {2}- runbook-alerts\.yml\n/);
    const fed = new Set([...tests.matchAll(/- series: '([a-zA-Z_:]+)\{/g)].map((m) => m[1]!));
    expect(fed.size).toBeGreaterThan(0);
    const walshipWrites = (n: string) => BACKUP_SERIES.includes(n) || readFileSync(join(root, 'src', 'metrics', 'families.ts'), 'utf8').includes(`'${n}'`);
    expect([...fed].filter((n) => !walshipWrites(n))).toEqual([]);

    const recorded = ruleBlocks(read('docker/prometheus/walship-compat-rules.yml'));
    expect(recorded.every((r) => r.kind === 'record')).toBe(true);
    const names = new Set(recorded.map((r) => r.name));
    for (const a of RUNBOOK_ALERTS) {
      const metric = /[a-z_]+_(seconds|timestamp|failed|bytes)\b/.exec(a.expr)![0];
      expect(names.has(metric), metric).toBe(true);
    }
    // Every recording reads walship series only; the lag ones are computed from the report's time.
    for (const r of recorded) {
      const expr = /\n {8}expr: (.+)\n/.exec(r.body)![1]!;
      for (const m of expr.matchAll(/\b([a-z_]+_(?:seconds|bytes|failed|total))\b/g)) expect(walshipWrites(m[1]!), `${r.name}: ${m[1]}`).toBe(true);
      if (r.name.includes('lag')) expect(expr).toContain('time() - walship_metrics_generated_timestamp_seconds');
    }
  });
});

describe("walship's own report through the compat rules", () => {
  it('a real report, its writer dead after it: the recorded lag keeps growing from the WAL\'s finish time', async () => {
    requireMonitoringTools();
    const dir = await mkdtemp(join(tmpdir(), 'walship-compat-'));
    try {
      // promtool's clock starts at Unix time 0: a WAL segment finished at
      // 300 s, still .ready, and a report computed at 600 s (10m).
      const wal = join(dir, 'pgdata', 'pg_wal');
      await mkdir(join(wal, 'archive_status'), { recursive: true });
      await mkdir(join(dir, 'spool'));
      const seg = '000000010000000000000001';
      await writeFile(join(wal, seg), Buffer.alloc(8192));
      await utimes(join(wal, seg), 300, 300);
      await writeFile(join(wal, 'archive_status', `${seg}.ready`), '');
      await utimes(join(wal, 'archive_status', `${seg}.ready`), 310, 310);
      const report = await collect({ spoolDir: join(dir, 'spool'), pgData: join(dir, 'pgdata'), db: undefined, rpoSeconds: 900, dbTimeoutMs: 1000, compact: false, now: () => 600_000 });
      expect(report.lagSeconds).toBe(300);
      const text = renderText(metricFamilies(report, { version: 'v', store: 'file:///archive', encryption: 'none', compression: 'lz4' }), commonLabels(report, 'main'));

      // Every sample of the textfile, as node_exporter would serve it from
      // 10m on; the writer never rewrites it (dead), so every value stays.
      const lines = text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
      const input = lines.map((l) => {
        const at = l.lastIndexOf(' ');
        return { series: l.slice(0, at), values: `_x10 ${l.slice(at + 1)}x50` };
      });
      const lag = parsePromText(text).samples.find((x) => x.name === 'walship_wal_archival_lag_seconds')!;
      const labels = Object.fromEntries(Object.entries(lag.labels).filter(([, v]) => v !== ''));
      const selector = (name: string) => `${name}{${Object.entries(labels).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}}`;
      const sample = (name: string, value: number) => ({ labels: selector(name), value });
      // JSON is YAML: promtool reads this test file as it is.
      const testFile = {
        rule_files: [join(prom, 'walship-compat-rules.yml'), join(prom, 'runbook-alerts.yml')],
        group_eval_order: ['walship-compat-wal', 'walship-compat-backup', 'postgresql_backup', 'backup_alerts'],
        evaluation_interval: '1m',
        tests: [
          {
            interval: '1m',
            input_series: input,
            promql_expr_test: [
              // As written: the report's own lag.
              { expr: 'postgres_wal_archival_lag_seconds', eval_time: '10m', exp_samples: [sample('postgres_wal_archival_lag_seconds', 300)] },
              // 20 minutes later, nobody rewrote it: now − 300 s.
              { expr: 'postgres_wal_archival_lag_seconds', eval_time: '30m', exp_samples: [sample('postgres_wal_archival_lag_seconds', 1500)] },
              { expr: 'pg_wal_archive_lag_seconds', eval_time: '30m', exp_samples: [sample('pg_wal_archive_lag_seconds', 1500)] },
              // walship's own gauge is frozen at what it last said.
              { expr: 'walship_wal_archival_lag_seconds', eval_time: '30m', exp_samples: [sample('walship_wal_archival_lag_seconds', 300)] },
            ],
            alert_rule_test: [
              { eval_time: '10m', alertname: 'WALArchiveLag', exp_alerts: [] },
              // > 600 s from 15m on (no `for`).
              { eval_time: '16m', alertname: 'WALArchiveLag', exp_alerts: [{ exp_labels: { ...labels, severity: 'warning' }, exp_annotations: { summary: 'WAL archiving is more than 10 minutes behind' } }] },
              // > 900 s from 20m on, then 15 minutes pending.
              { eval_time: '35m', alertname: 'WALArchivalLag', exp_alerts: [] },
              { eval_time: '36m', alertname: 'WALArchivalLag', exp_alerts: [{ exp_labels: { ...labels, severity: 'warning' }, exp_annotations: { summary: 'WAL archiving is more than 15 minutes behind' } }] },
            ],
          },
        ],
      };
      await writeFile(join(dir, 'report.test.yml'), JSON.stringify(testFile, null, 1));
      const r = await promtool(['test', 'rules', 'report.test.yml'], dir);
      expect(r.code, r.output).toBe(0);
      expect(r.output).toMatch(/SUCCESS/);
      expect(input.length).toBeGreaterThan(10);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('daily backup packaging (docker/systemd/walship-backup.*, docker/compose.yaml)', () => {
  const service = read('docker/systemd/walship-backup.service');
  const timer = read('docker/systemd/walship-backup.timer');

  it('the service runs `walship backup` once, as postgres, with the configuration the other units use', () => {
    expect(service).toMatch(/^Type=oneshot$/m);
    expect(service).toMatch(/^User=postgres$/m);
    expect(service).toMatch(/^ExecStart=\/usr\/local\/bin\/walship backup$/m);
    // The same config file as the metrics units, the same environment file as the agent unit.
    const config = /^Environment=WALSHIP_CONFIG=\S+$/m.exec(read('docker/systemd/walship-metrics.service'))![0];
    expect(service).toContain(`\n${config}\n`);
    const envFile = /^EnvironmentFile=-?(\S+)$/m.exec(read('docker/systemd/walship-agent@.service'))![1]!;
    expect(service).toContain(`\nEnvironmentFile=-${envFile}\n`);
    // A hung backup ends before the next day's run.
    const timeout = /^TimeoutStartSec=(\d+)h$/m.exec(service);
    expect(Number(timeout?.[1])).toBeLessThan(24);
  });

  it('the timer starts it daily and makes up a run missed while the machine was off', () => {
    // No Unit= line: a timer starts the service of its own name, which exists.
    expect(timer).not.toMatch(/^Unit=/m);
    expect(existsSync(join(root, 'docker', 'systemd', 'walship-backup.service'))).toBe(true);
    expect(timer).toMatch(/^OnCalendar=\*-\*-\* 02:00:00$/m);
    expect(timer).toMatch(/^Persistent=true$/m);
    // Its jitter stays far inside the 2 hours WalshipBackupTooOld allows beyond a day.
    const jitter = /^RandomizedDelaySec=(\d+)min$/m.exec(timer);
    expect(Number(jitter?.[1])).toBeLessThanOrEqual(30);
    expect(timer).toMatch(/^WantedBy=timers\.target$/m);
  });

  it.skipIf(!existsSync('/usr/bin/systemd-analyze'))('systemd-analyze verify accepts both units without a warning', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'walship-units-'));
    try {
      // verify checks that ExecStart's program exists: point it at this checkout's launcher.
      await writeFile(join(dir, 'walship-backup.service'), service.replace('/usr/local/bin/walship', join(root, 'bin', 'walship')));
      await copyFile(join(root, 'docker', 'systemd', 'walship-backup.timer'), join(dir, 'walship-backup.timer'));
      const { code, output } = await runTool('/usr/bin/systemd-analyze', ['verify', '--man=no', 'walship-backup.timer', 'walship-backup.service'], dir);
      expect(code, output).toBe(0);
      // Unknown keys are only warnings (exit 0): none may appear for these units.
      expect(output.split('\n').filter((l) => l.includes('walship-backup'))).toEqual([]);
      expect(await readFile(join(dir, 'walship-backup.service'), 'utf8')).toMatch(/^ExecStart=\/\S+\/bin\/walship backup$/m);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('compose runs the daily backup from the server image, as postgres, with the data directory read-only', () => {
    const compose = read('docker/compose.yaml');
    const start = compose.indexOf('\n  walship-backup:\n');
    expect(start).toBeGreaterThan(0);
    const next = compose.slice(start + 1).search(/\n {2}[a-z-]+:\n/);
    const block = compose.slice(start, start + 1 + next);
    expect(block).toContain('image: walship-postgres:15');
    expect(block).toContain('user: postgres');
    expect(block).toMatch(/condition: service_healthy/);
    expect(block).toMatch(/\n {10}walship backup \|\|/);
    expect(block).toContain('- pgdata:/var/lib/postgresql/data:ro');
    expect(block).toContain('- walship-spool:/var/lib/walship/spool');
    expect(block).toContain('- pg-socket:/var/run/postgresql');
    expect(block).toContain('<<: *s3-credentials');
    expect(block).toContain('restart: unless-stopped');
    // Compose would substitute a single $ itself: the shell's must be doubled.
    expect(block.replace(/\$\$/g, '')).not.toContain('$');
    // The loop, as the container's shell gets it: a failed backup is reported and the next waits for 02:00 UTC.
    const script = /\n {6}- \|\n((?: {8}.*\n)+)/.exec(block)![1]!.replace(/^ {8}/gm, '').replace(/\$\$/g, '$');
    const now = 1_764_580_000; // 2025-12-01 09:06:40 UTC
    const untilTwo = ((26 * 3600 - (now % 86400)) % 86400) || 86400;
    const once = script.replace('while :; do', 'for once in 1; do');
    const r = spawnSync('/bin/sh', ['-c', `walship() { echo "walship $*"; return 3; }\ndate() { echo ${now}; }\nsleep() { echo "sleep $1"; }\n${once}`], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(`walship backup\nsleep ${untilTwo}\n`);
    expect(r.stderr).toContain('walship backup failed (exit 3)');
    // Prometheus in the example loads the compat rules it mounts.
    expect(compose).toContain('./prometheus/walship-compat-rules.yml:/etc/prometheus/walship-compat-rules.yml:ro');
    expect(read('docker/prometheus/prometheus.yml')).toMatch(/rule_files:\n(?: {2}#.*\n| {2}- \S+\n)*? {2}- walship-compat-rules\.yml\n/);
  });
});

describe('monthly drill packaging (docker/systemd/walship-drill.*)', () => {
  const service = read('docker/systemd/walship-drill.service');
  const timer = read('docker/systemd/walship-drill.timer');

  it('runs walship drill once a month as postgres, inside the 35 days WalshipDrillTooOld allows', () => {
    expect(service).toMatch(/^Type=oneshot$/m);
    expect(service).toMatch(/^User=postgres$/m);
    expect(service).toMatch(/^ExecStart=\/usr\/local\/bin\/walship drill --scratch \S+$/m);
    expect(timer).not.toMatch(/^Unit=/m);
    expect(timer).toMatch(/^OnCalendar=\*-\*-03 04:00:00$/m);
    expect(timer).toMatch(/^Persistent=true$/m);
    expect(timer).toMatch(/^WantedBy=timers\.target$/m);
    // The alert's threshold leaves room for the longest month plus jitter.
    expect(read('docker/prometheus/walship-rules.yml')).toContain('time() - walship_drill_last_success_timestamp_seconds > 35 * 86400');
  });

  it.skipIf(!existsSync('/usr/bin/systemd-analyze'))('systemd-analyze verify accepts both units without a warning', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'walship-units-'));
    try {
      await writeFile(join(dir, 'walship-drill.service'), service.replace('/usr/local/bin/walship', join(root, 'bin', 'walship')));
      await copyFile(join(root, 'docker', 'systemd', 'walship-drill.timer'), join(dir, 'walship-drill.timer'));
      const { code, output } = await runTool('/usr/bin/systemd-analyze', ['verify', '--man=no', 'walship-drill.timer', 'walship-drill.service'], dir);
      expect(code, output).toBe(0);
      expect(output.split('\n').filter((l) => l.includes('walship-drill'))).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
