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
