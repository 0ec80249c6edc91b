import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { StoreUnavailableError } from '../../src/errors.js';
import { checkS3Permissions } from '../../src/store/index.js';
import { S3Store } from '../../src/store/s3.js';
import { startFaultProxy, type FaultProxy, type RequestInfo } from '../support/fault-proxy.js';
import { S3_TEST_CREDENTIALS, startS3Server, type S3Server } from '../support/s3-server.js';

/**
 * S3 servers and policies that differ from AWS with full rights, played by
 * the fault proxy in front of s3rver: a policy without s3:ListBucket (S3
 * answers 403 where it would answer 404), a policy missing one permission,
 * and a server that refuses conditional writes (If-None-Match: *).
 */
describe('S3 store: permissions and servers without conditional writes', () => {
  let server: S3Server;
  let proxy: FaultProxy;
  let n = 0;

  beforeAll(async () => {
    process.env.AWS_ACCESS_KEY_ID = S3_TEST_CREDENTIALS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = S3_TEST_CREDENTIALS.secretAccessKey;
    server = await startS3Server({ buckets: ['edges'] });
    proxy = await startFaultProxy(server.port);
  });
  afterAll(async () => {
    await proxy?.close();
    await server?.stop();
  });
  afterEach(() => proxy.clear());

  // Generous budgets: the machine is shared; nothing here measures time.
  // Each store gets its own region string so that the per-process memory of
  // "this server refuses If-None-Match" is per test.
  const store = (): S3Store =>
    new S3Store({
      bucket: 'edges',
      prefix: `p${n}`,
      s3: { endpoint: proxy.endpoint, region: `us-east-1-t${n++}`, forcePathStyle: true },
      timeoutMs: 30_000,
      deadlineMs: 60_000,
    });
  const isList = (r: RequestInfo): boolean => r.method === 'GET' && /[?&]list-type=2/.test(r.path);
  const isObjectRead = (r: RequestInfo): boolean => (r.method === 'GET' || r.method === 'HEAD') && !/[?&]list-type=/.test(r.path);

  it('without s3:ListBucket a missing key answers 403: never "absent", and the error names the permission', async () => {
    const s = store();
    await s.putIfAbsent('there', Buffer.from('x'), {});
    proxy.always({ kind: 'rewrite-status', from: 404, to: 403, code: 'AccessDenied' });
    for (const read of [() => s.get('wal/00000001/000000010000000000000009'), () => s.head('wal/00000001/000000010000000000000009')]) {
      const err = await read().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect((err as StoreUnavailableError).message).toMatch(/\(HTTP 403\) \(access denied: needs s3:GetObject\)/);
      expect((err as StoreUnavailableError).hint).toMatch(/s3:ListBucket, without which a missing key answers 403 instead of 404/);
    }
    // An object that is there still reads: only the missing-key answer changed.
    expect((await s.get('there'))!.toString()).toBe('x');
  });

  it('checkS3Permissions reports all four granted on a full policy, and leaves no probe behind', async () => {
    const s = store();
    const r = await checkS3Permissions(s);
    expect(r.checks.map((c) => [c.permission, c.result])).toEqual([
      ['s3:PutObject', 'granted'],
      ['s3:GetObject', 'granted'],
      ['s3:ListBucket', 'granted'],
      ['s3:DeleteObject', 'granted'],
    ]);
    expect(r.missing).toEqual([]);
    const left = [];
    for await (const o of s.list('')) left.push(o.key);
    expect(left).toEqual([]);
  });

  it('checkS3Permissions names exactly the permission a policy lacks', async () => {
    // No s3:ListBucket: listing is denied, and a missing key answers 403.
    proxy.always({ kind: 'status', status: 403, code: 'AccessDenied' }, isList);
    proxy.inject({ fault: { kind: 'rewrite-status', from: 404, to: 403, code: 'AccessDenied' }, times: 10, match: isObjectRead });
    expect((await checkS3Permissions(store())).missing).toEqual(['s3:ListBucket']);
    proxy.clear();

    // Listing allowed, but the missing key still answers 403 (a policy that
    // grants ListBucket on another resource than the bucket).
    proxy.always({ kind: 'rewrite-status', from: 404, to: 403, code: 'AccessDenied' }, isObjectRead);
    expect((await checkS3Permissions(store())).missing).toEqual(['s3:ListBucket']);
    proxy.clear();

    proxy.always({ kind: 'status', status: 403, code: 'AccessDenied' }, (r) => r.method === 'POST' || r.method === 'DELETE');
    const noDelete = await checkS3Permissions(store());
    expect(noDelete.missing).toEqual(['s3:DeleteObject']);
    expect(noDelete.checks.find((c) => c.permission === 's3:DeleteObject')!.detail).toMatch(/AccessDenied/);
    proxy.clear();

    proxy.always({ kind: 'status', status: 403, code: 'AccessDenied' }, (r) => r.method === 'PUT');
    const noPut = await checkS3Permissions(store());
    expect(noPut.missing).toEqual(['s3:PutObject']);
    expect(noPut.checks.map((c) => c.result)).toEqual(['denied', 'unchecked', 'granted', 'unchecked']);
    proxy.clear();

    proxy.always({ kind: 'status', status: 403, code: 'AccessDenied' }, (r) => r.method === 'GET' && !/[?&]list-type=/.test(r.path));
    expect((await checkS3Permissions(store())).missing).toEqual(['s3:GetObject']);
  });

  it('checkS3Permissions does not mistake an unreachable store for a policy', async () => {
    await proxy.outage(true);
    try {
      const s = new S3Store({ bucket: 'edges', prefix: 'x', s3: { endpoint: proxy.endpoint, region: 'us-east-1', forcePathStyle: true }, timeoutMs: 1000, deadlineMs: 2000 });
      await expect(checkS3Permissions(s)).rejects.toThrow(/ECONNREFUSED|failed/);
    } finally {
      await proxy.outage(false);
    }
  });

  for (const [status, code] of [
    [501, 'NotImplemented'],
    [400, 'NotImplemented'],
  ] as const) {
    it(`a server that refuses If-None-Match (${status} ${code}): the PUT is made without it, and later PUTs skip it`, async () => {
      const s = store();
      const conditional = (r: RequestInfo): boolean => r.method === 'PUT' && r.headers.has('if-none-match');
      proxy.always({ kind: 'status', status, code }, conditional);
      const before = proxy.stats.injected.status;
      expect(await s.putIfAbsent('a', Buffer.from('first'), {})).toBe('created');
      expect(await s.putIfAbsent('b', Buffer.from('second'), {})).toBe('created');
      // Refused once, then remembered: one refused request in all.
      expect(proxy.stats.injected.status - before).toBe(1);
      expect(s.conditionalPuts).toBe(false);
      // Still never overwriting what it can see.
      expect(await s.putIfAbsent('a', Buffer.from('other'), {})).toBe('exists');
      expect((await s.get('a'))!.toString()).toBe('first');
    });
  }

  it('a 400 that is not about If-None-Match is not retried without the header', async () => {
    const s = store();
    proxy.always({ kind: 'status', status: 400, code: 'InvalidDigest' }, (r) => r.method === 'PUT');
    await expect(s.putIfAbsent('a', Buffer.from('x'), {})).rejects.toThrow(/InvalidDigest/);
    expect(s.conditionalPuts).toBe(true);
  });
});
