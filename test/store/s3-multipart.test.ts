import { afterAll, beforeAll, describe } from 'vitest';
import { S3Store } from '../../src/store/s3.js';
import { freePort } from '../support/free-port.js';
import { storeConformance } from './conformance.js';

/**
 * The conformance suite against fauxqs (npm, 1.9.2: an in-process S3
 * emulator with multipart upload, which s3rver lacks), with a 5 MiB
 * threshold so that the large-stream cases go through
 * Create/UploadPart/Complete. fauxqs ignores If-None-Match, like s3rver, so
 * create-only is left to the archive layer here too. Skipped until the
 * package is installed (the integrator adds it to the shared node_modules).
 */
interface Running {
  readonly port: number;
  stop(): Promise<void>;
  createBucket(name: string): unknown;
}
type Fauxqs = { startFauxqs(opts: { port: number; logger?: boolean; host?: string }): Promise<Running> };
// An ES module: imported, not required. Absent until the integrator installs it.
const fauxqs = await (import('fauxqs' as string) as Promise<Fauxqs>).catch(() => undefined);

let server: Running;
let endpoint: string;
let n = 0;

describe.skipIf(fauxqs === undefined)('S3 store against fauxqs (multipart upload)', () => {
  beforeAll(async () => {
    process.env.AWS_ACCESS_KEY_ID = 'test';
    process.env.AWS_SECRET_ACCESS_KEY = 'test';
    server = await fauxqs!.startFauxqs({ port: 0, logger: false, host: '127.0.0.1' });
    endpoint = `http://127.0.0.1:${server.port}`;
    server.createBucket('multipart');
  });
  afterAll(async () => {
    await server?.stop();
  });

  const make = (ep: () => string, bucket: string, timeoutMs = 30_000, deadlineMs = 120_000) =>
    new S3Store({
      bucket,
      prefix: `run-${n++}`,
      s3: { endpoint: ep(), region: 'us-east-1', forcePathStyle: true },
      timeoutMs,
      deadlineMs,
      multipartThresholdBytes: 5 << 20,
      partBytes: 5 << 20,
    });

  storeConformance('s3 (fauxqs, multipart)', {
    make: async () => make(() => endpoint, 'multipart'),
    makeBroken: async () => {
      const port = await freePort();
      return make(() => `http://127.0.0.1:${port}`, 'multipart', 2000, 4000);
    },
    atomicCreate: false,
    orderedListing: true,
    largeStreams: true,
  });
});
