import { describe, it } from 'vitest';
import { fileArchive, keyfileEncryption } from '../support/walship.js';
import { runPitrScenario } from './pitr-scenario.js';

describe('PITR with a real PostgreSQL 15 through walship, file store', () => {
  it('restores to a named restore point with keyfile encryption, then archives the new timeline', async () => {
    const archive = await fileArchive(await keyfileEncryption());
    await runPitrScenario({ archive, encrypted: true, continueArchiving: true });
  });

  it('restores with 1 MiB segments, unencrypted, uncompressed, look-ahead and prefetch off', async () => {
    const archive = await fileArchive({ WALSHIP_COMPRESSION: 'none', WALSHIP_PUSH_CONCURRENCY: '1', WALSHIP_PREFETCH: '0' });
    await runPitrScenario({ archive, encrypted: false, initdbArgs: ['--wal-segsize=1'] });
  });
});
