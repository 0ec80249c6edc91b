import { afterAll } from 'vitest';
import { startS3Server, type S3Server } from '../support/s3-server.js';
import { s3Archive } from '../support/walship.js';
import { describeArchiveCare } from './archive-care.js';

let server: S3Server | undefined;
afterAll(async () => {
  await server?.stop();
});

describeArchiveCare({
  kind: 's3',
  makeArchive: async () => {
    server = await startS3Server({ buckets: ['care'] });
    return s3Archive(server, 'care', 'cluster-a');
  },
});
