import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { StoreUnavailableError } from '../../src/errors.js';
import { S3Store } from '../../src/store/s3.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { S3_TEST_CREDENTIALS, startS3Server, type S3Server } from '../support/s3-server.js';

/**
 * The S3 driver's retry policy against real faults on the wire: s3rver
 * behind the fault proxy. Small timeouts keep the suite quick; what is
 * asserted is behaviour (retried, gave up, what the error says), never
 * a duration.
 */
describe('S3 store under injected faults', () => {
  let server: S3Server;
  let proxy: FaultProxy;
  let n = 0;

  beforeAll(async () => {
    process.env.AWS_ACCESS_KEY_ID = S3_TEST_CREDENTIALS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = S3_TEST_CREDENTIALS.secretAccessKey;
    server = await startS3Server({ buckets: ['faults'] });
    proxy = await startFaultProxy(server.port);
  });
  afterAll(async () => {
    await proxy?.close();
    await server?.stop();
  });
  afterEach(() => proxy.clear());

  const store = (timeoutMs = 1000, deadlineMs = 8000): S3Store =>
    new S3Store({ bucket: 'faults', prefix: `p${n++}`, s3: { endpoint: proxy.endpoint, region: 'us-east-1', forcePathStyle: true }, timeoutMs, deadlineMs });

  const body = (size: number, seed: number): Buffer => {
    const b = Buffer.alloc(size);
    for (let i = 0; i < size; i += 7) b[i] = (i * seed) & 0xff;
    return b;
  };

  it('retries 5xx and throttling answers on every kind of call', async () => {
    const s = store();
    const data = body(200_000, 3);
    proxy.inject({ fault: { kind: 'status', status: 503 }, times: 2, match: (r) => r.method === 'PUT' });
    expect(await s.putIfAbsent('a', data, { blake3: 'x' })).toBe('created');
    proxy.inject({ fault: { kind: 'status', status: 500 }, match: (r) => r.method === 'HEAD' });
    expect((await s.head('a'))?.size).toBe(data.length);
    proxy.inject({ fault: { kind: 'status', status: 429 }, times: 2, match: (r) => r.method === 'GET' });
    expect((await s.get('a'))!.equals(data)).toBe(true);
    proxy.inject({ fault: { kind: 'status', status: 503 }, match: (r) => r.method === 'GET' });
    const listed = [];
    for await (const o of s.list('')) listed.push(o.key);
    expect(listed).toEqual(['a']);
    proxy.inject({ fault: { kind: 'status', status: 503 }, match: (r) => r.method === 'POST' });
    await s.deleteMany(['a']);
    expect(await s.head('a')).toBeUndefined();
    expect(proxy.stats.injected.status).toBeGreaterThanOrEqual(7);
  });

  it('retries connection resets, before and in the middle of an upload, and stores the whole object', async () => {
    const s = store();
    const data = body(3 << 20, 5);
    proxy.inject({ fault: { kind: 'reset' }, match: (r) => r.method === 'PUT' });
    proxy.inject({ fault: { kind: 'reset-mid-body', afterBytes: 1 << 20 }, match: (r) => r.method === 'PUT' });
    const before = proxy.stats.injected['reset-mid-body'];
    expect(await s.putIfAbsent('big', data, {})).toBe('created');
    expect(proxy.stats.injected['reset-mid-body']).toBe(before + 1);
    proxy.inject({ fault: { kind: 'reset' }, times: 2, match: (r) => r.method === 'GET' });
    expect((await s.get('big'))!.equals(data)).toBe(true);
  });

  it('aborts a download that stops halfway and fetches it again', async () => {
    const s = store();
    const data = body(2 << 20, 7);
    await s.putIfAbsent('half', data, {});
    proxy.inject({ fault: { kind: 'stall-response', afterBytes: 64 * 1024 }, match: (r) => r.method === 'GET' });
    expect((await s.get('half'))!.equals(data)).toBe(true);
    expect(proxy.stats.injected['stall-response']).toBe(1);
  });

  it('rides out a short full outage', async () => {
    const s = store(1000, 15_000);
    await s.putIfAbsent('o', Buffer.from('outage'), {});
    await proxy.outage(true);
    const reading = s.get('o');
    setTimeout(() => void proxy.outage(false), 1500);
    expect((await reading)!.toString()).toBe('outage');
  });

  it('gives up on a stalled server within its deadline, saying why, and does not retry the next call for as long again', async () => {
    const s = store(500, 2000);
    proxy.always({ kind: 'stall' });
    const seen = proxy.stats.injected.stall;
    const err = await s.putIfAbsent('stalled', Buffer.from('x'), {}).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(StoreUnavailableError);
    const e = err as StoreUnavailableError;
    expect(e.message).toMatch(/^PUT s3:\/\/faults\/p\d+\/stalled failed: AttemptTimeoutError: no complete answer within [\d.]+ s \((WALSHIP_TIMEOUT|what was left of WALSHIP_DEADLINE)\) \(gave up after \d attempts in [\d.]+ s: retrying would run past WALSHIP_DEADLINE \(2\.0 s of failures\)\)$/);
    expect(e.hint).toMatch(/did not answer in time/);
    const attempts = proxy.stats.injected.stall - seen;
    expect(attempts).toBeGreaterThanOrEqual(2);
    expect(attempts).toBeLessThanOrEqual(4);
    // Within the same failure streak, once the deadline is spent: one attempt per call.
    await new Promise((r) => setTimeout(r, 2000));
    await expect(s.head('stalled')).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(proxy.stats.injected.stall - seen).toBe(attempts + 1);
  });

  it('does not retry an answer that retrying cannot change', async () => {
    const s = store();
    const seen = proxy.stats.requests;
    proxy.always({ kind: 'status', status: 403, code: 'AccessDenied' });
    await expect(s.get('x')).rejects.toThrow(/GET .* failed: AccessDenied \(HTTP 403\)/);
    expect(proxy.stats.requests - seen).toBe(1);
  });
});
