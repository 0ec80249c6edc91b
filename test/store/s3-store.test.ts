import { afterAll, beforeAll } from 'vitest';
import { S3Store } from '../../src/store/s3.js';
import { freePort } from '../support/free-port.js';
import { S3_TEST_CREDENTIALS, startS3Server, type S3Server } from '../support/s3-server.js';
import { storeConformance } from './conformance.js';

let server: S3Server;
let n = 0;

beforeAll(async () => {
  process.env.AWS_ACCESS_KEY_ID = S3_TEST_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = S3_TEST_CREDENTIALS.secretAccessKey;
  server = await startS3Server({ buckets: ['conformance'] });
});
afterAll(async () => {
  await server?.stop();
});

/**
 * Budgets for a busy, shared 2-core machine: s3rver writes each object to
 * disk and can take seconds to answer under load, so an attempt gets 30 s
 * and a failing store two minutes. Broken stores keep short budgets: they
 * must fail, and how fast does not matter, but not waiting minutes does.
 */
function s3(endpoint: string, bucket: string, prefix: string, timeoutMs = 30_000, deadlineMs = 120_000): S3Store {
  return new S3Store({ bucket, prefix, s3: { endpoint, region: 'us-east-1', forcePathStyle: true }, timeoutMs, deadlineMs });
}

// s3rver ignores If-None-Match and lists in file system order: neither the
// create-only semantics nor the listing order are the server's here. The
// archive layer checks before writing (see the push integration tests).
storeConformance('s3 (s3rver)', {
  make: async () => s3(server.endpoint, 'conformance', `run-${n++}`),
  makeBroken: async () => s3(`http://127.0.0.1:${await freePort()}`, 'conformance', 'x', 2000, 4000),
  atomicCreate: false,
  orderedListing: false,
  largeStreams: false,
});

storeConformance('s3 (missing bucket)', {
  make: async () => s3(server.endpoint, 'conformance', `run-${n++}`),
  makeBroken: async () => s3(server.endpoint, 'no-such-bucket', 'x', 2000, 4000),
  atomicCreate: false,
  orderedListing: false,
  largeStreams: false,
});
