import { afterAll, beforeAll, describe, it } from 'vitest';
import { startS3Server, type S3Server } from '../support/s3-server.js';
import { keyfileEncryption, s3Archive } from '../support/walship.js';
import { runPitrScenario } from './pitr-scenario.js';

describe('PITR with a real PostgreSQL 15 through walship, S3 store (s3rver)', () => {
  let s3: S3Server;
  beforeAll(async () => {
    s3 = await startS3Server({ buckets: ['wal-archive'] });
  });
  afterAll(async () => {
    await s3?.stop();
  });

  it('restores to a named restore point with keyfile encryption', async () => {
    const archive = await s3Archive(s3, 'wal-archive', 'prod/db1', await keyfileEncryption());
    await runPitrScenario({ archive, encrypted: true });
  });

  it('restores unencrypted with LZ4', async () => {
    const archive = await s3Archive(s3, 'wal-archive', 'plain');
    await runPitrScenario({ archive, encrypted: false });
  });
});
