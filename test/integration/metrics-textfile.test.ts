import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { promtoolCheckMetrics, requireMonitoringTools, startWalship, type Background } from '../support/monitoring.js';
import { chownTreeToPostgres } from '../support/postgres-user.js';
import { parsePromText } from '../support/prom-text.js';
import { runWalship, tempDir } from '../support/walship.js';

/**
 * node_exporter reads the textfile whenever it is scraped, while walship
 * rewrites it. Two `metrics --watch` writers on one file (as when a timer's
 * one-shot overlaps a long-running writer) and a reader that reads as fast
 * as it can: every read must be one complete report.
 */
describe('the metrics textfile under concurrent writers and readers', () => {
  const writers: Background[] = [];

  afterAll(async () => {
    for (const w of writers) await w.stop();
  });

  it('is never seen half-written, and every version passes promtool', async () => {
    requireMonitoringTools();
    const base = await tempDir('walship-textfile-');
    const textDir = join(base, 'textfile');
    await mkdir(textDir);
    await mkdir(join(base, 'store'));
    await chownTreeToPostgres(base);
    const textfile = join(textDir, 'walship.prom');
    // Records are kept per data directory: the push runs in `base`, and metrics reports on `base`.
    const env = {
      WALSHIP_STORE: `file://${join(base, 'store')}`,
      WALSHIP_SPOOL_DIR: join(base, 'spool'),
      WALSHIP_CLUSTER_LABEL: 'concurrency',
      WALSHIP_PGDATA: base,
    };
    // Something recorded, so that the writers also fold the journal concurrently.
    const push = await runWalship(['push', 'does-not-exist'], { env, cwd: base });
    expect(push.code).toBe(1);

    for (let i = 0; i < 2; i++) writers.push(startWalship(['metrics', '--textfile', textfile, '--watch', '100ms'], env));

    const versions = new Map<number, string>();
    let reads = 0;
    for (let i = 0; i < 8000 && versions.size < 40; i++) {
      let text: string;
      try {
        text = await readFile(textfile, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' && versions.size === 0) {
          await sleep(20);
          continue;
        }
        throw err;
      }
      reads++;
      const m = parsePromText(text); // a torn file fails to parse
      expect(m.value('walship_info', { cluster: 'concurrency' })).toBe(1);
      expect(m.value('walship_pushes_total', { result: 'failed' })).toBe(1);
      expect(m.maybe('walship_state_pending_records')).toBeDefined(); // the last family is there too
      versions.set(m.value('walship_metrics_generated_timestamp_seconds'), text);
      await sleep(1);
    }
    expect(versions.size).toBeGreaterThanOrEqual(40);
    expect(reads).toBeGreaterThan(versions.size);

    const sample = [...versions.values()].filter((_, i) => i % 10 === 0);
    for (const text of sample) {
      const check = await promtoolCheckMetrics(text);
      expect(check.output).toBe('');
      expect(check.code).toBe(0);
    }
    for (const w of writers.splice(0)) expect((await w.stop()).code).toBe(0);
    // No temporary file is left behind for node_exporter to trip over.
    expect(await readdir(textDir)).toEqual(['walship.prom']);
  });
});
