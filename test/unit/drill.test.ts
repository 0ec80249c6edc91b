import { describe, expect, it } from 'vitest';
import { checkRestoredTablespaces, isInside, requireInside, scratchTablespaceMap, TablespaceOutsideScratchError } from '../../src/drill/tablespaces.js';
import { parseControlData, drillSettings } from '../../src/drill/settings.js';

/**
 * The drill restores on the database host, where tablespace_map's paths are
 * production's live tablespace directories: every location must be inside
 * the scratch directory, and anything else is refused before a server starts.
 */
describe('drill tablespace remapping', () => {
  const scratch = '/tmp/walship-drill-abc';

  it('maps every tablespace under <scratch>/tablespaces/<oid>', () => {
    const map = scratchTablespaceMap(scratch, { tablespaces: [{ oid: '16384', location: '/srv/pg/ts1' }, { oid: '16390', location: '/srv/pg/ts2' }] });
    expect(map).toEqual([`16384=${scratch}/tablespaces/16384`, `16390=${scratch}/tablespaces/16390`]);
  });

  it('refuses an OID that is not a number (it could climb out of the directory)', () => {
    expect(() => scratchTablespaceMap(scratch, { tablespaces: [{ oid: '../../srv', location: '/srv' }] })).toThrow(TablespaceOutsideScratchError);
  });

  it('tells inside from outside, with .. and prefixes that only look alike', () => {
    expect(isInside(scratch, `${scratch}/tablespaces/1`)).toBe(true);
    expect(isInside(scratch, scratch)).toBe(true);
    expect(isInside(scratch, `${scratch}/../ts`)).toBe(false);
    expect(isInside(scratch, `${scratch}-other/ts`)).toBe(false);
    expect(isInside(scratch, '/srv/pg/ts1')).toBe(false);
    expect(isInside(scratch, 'relative/ts')).toBe(false);
  });

  it('refuses a restored link or tablespace_map line that points outside, naming it', () => {
    expect(() => requireInside(scratch, '16384', '/srv/pg/ts1')).toThrow(/tablespace 16384 would be restored to \/srv\/pg\/ts1, outside/);
    expect(() => checkRestoredTablespaces(scratch, new Map([['16384', '/srv/pg/ts1']]), undefined)).toThrow(TablespaceOutsideScratchError);
    expect(() => checkRestoredTablespaces(scratch, new Map([['16384', `${scratch}/tablespaces/16384`]]), '16384 /srv/pg/ts1\n')).toThrow(/16384/);
    expect(() => checkRestoredTablespaces(scratch, new Map([['16384', `${scratch}/tablespaces/16384`]]), `16384 ${scratch}/tablespaces/16384\n`)).not.toThrow();
  });
});

describe('drill server settings', () => {
  const control = [
    'max_connections setting:              200',
    'max_worker_processes setting:         16',
    'max_wal_senders setting:              10',
    'max_prepared_xacts setting:           5',
    'max_locks_per_xact setting:           128',
  ].join('\n');

  it('keeps the hot-standby parameters at least what pg_control recorded, with small memory and archiving off', () => {
    const s = new Map(drillSettings({ port: 5599, socketDir: '/tmp/s', hbaFile: '/tmp/s/pg_hba.conf', segmentSize: 16 * 1048576, control: parseControlData(control) }));
    expect(s.get('max_connections')).toBe('200');
    expect(s.get('max_worker_processes')).toBe('16');
    expect(s.get('max_wal_senders')).toBe('10');
    expect(s.get('max_prepared_transactions')).toBe('5');
    expect(s.get('max_locks_per_transaction')).toBe('128');
    expect(s.get('shared_buffers')).toBe('32MB');
    expect(s.get('archive_mode')).toBe('off');
    expect(s.get('listen_addresses')).toBe('localhost');
    expect(s.get('synchronous_standby_names')).toBe('');
  });

  it('refuses pg_controldata output without a needed line', () => {
    expect(() => parseControlData('max_connections setting: 100')).toThrow(/max_worker_processes/);
  });
});

describe('drill report', () => {
  it('says what was proved, and for a failure what to do next', async () => {
    const { renderReport } = await import('../../src/drill/report.js');
    const passed = renderReport({
      outcome: 'passed',
      startedAt: '2026-12-01T00:00:00.000Z',
      target: 'the end of the archived WAL',
      backup: { id: 'B1', stopTime: '2026-12-01T00:00:00Z', timeline: 1, rawBytes: 1, reason: 'the newest backup' },
      wal: { first: '000000010000000000000003', last: '000000010000000000000009', replayEndLsn: '0/9000100' },
      rtoSeconds: 12.34,
      archiveRpoSeconds: 5,
      targetAccuracySeconds: 1,
      lastReplayedCommit: '2026-12-01T00:00:01.000Z',
      newestArchived: { segment: '000000010000000000000009', at: '2026-12-01T00:00:02.000Z' },
      checks: [{ name: 'pg_amcheck', status: 'passed', detail: 'ok' }],
      scratch: '/tmp/s',
      kept: false,
    });
    expect(passed).toMatch(/^drill PASSED/);
    expect(passed).toContain('RTO              12.3 s');
    expect(passed).toContain('WAL used         000000010000000000000003 … 000000010000000000000009 (replay ended at 0/9000100)');
    const failed = renderReport({
      outcome: 'failed',
      startedAt: '2026-12-01T00:00:00.000Z',
      target: 'the end of the archived WAL',
      checks: [],
      kept: false,
      error: { code: 'WAL_MISSING', message: 'WAL segment 000000010000000000000005 is missing', hint: 'archive it again' },
    });
    expect(failed).toMatch(/^drill FAILED/);
    expect(failed).toContain('000000010000000000000005');
    expect(failed).toContain('next             archive it again');
  });
});
