import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { S3Store } from '../../src/store/s3.js';

/**
 * S3Store's multipart path (Create/UploadPart/Complete, Abort on failure,
 * the sweep of uploads a killed push left) against a small in-process S3
 * double. Neither s3rver (no multipart at all) nor fauxqs (no
 * ListMultipartUploads, ignores If-None-Match) can show these; the double
 * does only what S3 documents for these calls, checks every Content-MD5, and
 * records what it was asked, so the tests can assert on the requests.
 */

interface Upload {
  readonly key: string;
  readonly initiated: Date;
  readonly parts: Map<number, Buffer>;
}

class S3Double {
  readonly objects = new Map<string, Buffer>();
  readonly uploads = new Map<string, Upload>();
  readonly requests: string[] = [];
  /** Called between Create and Complete: a test puts a competing object there. */
  beforeComplete: (() => void) | undefined;
  private server!: Server;
  endpoint = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => this.handle(req, Buffer.concat(chunks), res));
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.endpoint = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    await new Promise((r) => this.server.close(r));
  }

  private handle(req: IncomingMessage, body: Buffer, res: ServerResponse): void {
    const url = new URL(req.url!, 'http://x');
    const [, , ...rest] = url.pathname.split('/');
    const key = decodeURIComponent(rest.join('/'));
    const q = url.searchParams;
    const op = `${req.method} ${q.has('uploads') ? '?uploads' : q.has('partNumber') ? '?part' : q.has('uploadId') ? '?uploadId' : ''}`.trim();
    this.requests.push(`${op} ${key}`);
    const xml = (status: number, text: string) => {
      res.writeHead(status, { 'content-type': 'application/xml' });
      res.end(`<?xml version="1.0" encoding="UTF-8"?>${text}`);
    };
    const error = (status: number, code: string) => xml(status, `<Error><Code>${code}</Code><Message>${code}</Message></Error>`);
    const md5 = req.headers['content-md5'];
    if ((req.method === 'PUT' || op === 'POST ?uploadId') && body.length > 0 && md5 !== undefined && md5 !== createHash('md5').update(body).digest('base64')) {
      return error(400, 'BadDigest');
    }
    if (req.method === 'GET' && key === '' && q.has('uploads')) {
      const prefix = q.get('prefix') ?? '';
      const items = [...this.uploads]
        .filter(([, u]) => u.key.startsWith(prefix))
        .map(([id, u]) => `<Upload><Key>${u.key}</Key><UploadId>${id}</UploadId><Initiated>${u.initiated.toISOString()}</Initiated></Upload>`);
      return xml(200, `<ListMultipartUploadsResult><Bucket>b</Bucket><IsTruncated>false</IsTruncated>${items.join('')}</ListMultipartUploadsResult>`);
    }
    if (op === 'POST ?uploads') {
      const id = randomBytes(8).toString('hex');
      this.uploads.set(id, { key, initiated: new Date(), parts: new Map() });
      return xml(200, `<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>${key}</Key><UploadId>${id}</UploadId></InitiateMultipartUploadResult>`);
    }
    if (op === 'PUT ?part') {
      const u = this.uploads.get(q.get('uploadId')!);
      if (!u) return error(404, 'NoSuchUpload');
      if (md5 === undefined) return error(400, 'MissingContentMD5');
      u.parts.set(Number(q.get('partNumber')), body);
      res.writeHead(200, { etag: `"${createHash('md5').update(body).digest('hex')}"` });
      res.end();
      return;
    }
    if (op === 'POST ?uploadId') {
      this.beforeComplete?.();
      const id = q.get('uploadId')!;
      const u = this.uploads.get(id);
      if (!u) return error(404, 'NoSuchUpload');
      if (req.headers['if-none-match'] === '*' && this.objects.has(key)) return error(412, 'PreconditionFailed');
      const numbers = [...body.toString().matchAll(/<PartNumber>(\d+)<\/PartNumber>/g)].map((m) => Number(m[1]));
      this.objects.set(key, Buffer.concat(numbers.map((n) => u.parts.get(n)!)));
      this.uploads.delete(id);
      return xml(200, `<CompleteMultipartUploadResult><Bucket>b</Bucket><Key>${key}</Key><ETag>"x-${numbers.length}"</ETag></CompleteMultipartUploadResult>`);
    }
    if (op === 'DELETE ?uploadId') {
      this.uploads.delete(q.get('uploadId')!);
      res.writeHead(204);
      res.end();
      return;
    }
    if (req.method === 'PUT') {
      if (req.headers['if-none-match'] === '*' && this.objects.has(key)) return error(412, 'PreconditionFailed');
      this.objects.set(key, body);
      res.writeHead(200, { etag: '"e"' });
      res.end();
      return;
    }
    const obj = this.objects.get(key);
    if (req.method === 'HEAD') {
      res.writeHead(obj ? 200 : 404, obj ? { 'content-length': obj.length } : {});
      res.end();
      return;
    }
    if (req.method === 'GET') {
      if (!obj) return error(404, 'NoSuchKey');
      res.writeHead(200, { 'content-length': obj.length });
      res.end(obj);
      return;
    }
    return error(501, 'NotImplemented');
  }
}

let s3: S3Double;
let n = 0;
const PART = 5 << 20;

function store(): S3Store {
  return new S3Store({
    bucket: 'b',
    prefix: `p${n++}`,
    s3: { endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true },
    timeoutMs: 30_000,
    deadlineMs: 60_000,
    multipartThresholdBytes: PART,
    partBytes: PART,
  });
}

async function* pieces(body: Buffer, size: number, failAfter?: number): AsyncGenerator<Buffer> {
  for (let o = 0; o < body.length; o += size) {
    if (failAfter !== undefined && o >= failAfter) throw new Error('the reader broke');
    yield body.subarray(o, Math.min(o + size, body.length));
  }
}

async function readAll(r: AsyncIterable<Buffer> | undefined): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of r!) out.push(c);
  return Buffer.concat(out);
}

beforeAll(async () => {
  process.env.AWS_ACCESS_KEY_ID = 'test';
  process.env.AWS_SECRET_ACCESS_KEY = 'test';
  s3 = new S3Double();
  await s3.start();
});
afterAll(async () => {
  await s3?.stop();
});
beforeEach(() => {
  s3.requests.length = 0;
  s3.beforeComplete = undefined;
});

describe('S3 multipart upload (S3 double)', () => {
  it('a body above the threshold goes up in parts, each with its MD5, one part in memory at a time', async () => {
    const s = store();
    const body = randomBytes(3 * PART + 12_345);
    expect(await s.putStreamIfAbsent('wal/big', pieces(body, 1 << 20), undefined, { 'raw-size': '1' })).toBe('created');
    const key = `p${n - 1}/wal/big`;
    expect(s3.objects.get(key)!.equals(body)).toBe(true);
    expect(s3.requests.filter((r) => r.startsWith('PUT ?part'))).toHaveLength(4);
    expect(s3.requests.filter((r) => r === `PUT ${key}`)).toHaveLength(0);
    expect(s3.uploads.size).toBe(0);
    expect((await readAll(await s.getStream('wal/big'))).equals(body)).toBe(true);
  });

  it('a body below the threshold is one PUT', async () => {
    const s = store();
    const body = randomBytes(PART - 1);
    expect(await s.putStreamIfAbsent('wal/small', pieces(body, 1 << 20), body.length, {})).toBe('created');
    expect(s3.requests.filter((r) => r.startsWith('POST ?uploads'))).toHaveLength(0);
    expect(s3.objects.get(`p${n - 1}/wal/small`)!.equals(body)).toBe(true);
  });

  it('a source that fails half-way aborts the upload: no object, no parts left', async () => {
    const s = store();
    await expect(s.putStreamIfAbsent('wal/cut', pieces(randomBytes(4 * PART), 1 << 20, 2 * PART + 1), undefined, {})).rejects.toThrow(/reader broke/);
    expect(s3.objects.has(`p${n - 1}/wal/cut`)).toBe(false);
    expect(s3.requests.some((r) => r.startsWith('DELETE ?uploadId'))).toBe(true);
    expect(s3.uploads.size).toBe(0);
  });

  it('an object that appears before Complete wins: If-None-Match makes it "exists", and the upload is aborted', async () => {
    const s = store();
    const key = `p${n - 1}/wal/race`;
    const theirs = Buffer.from('the other writer');
    s3.beforeComplete = () => {
      if (!s3.objects.has(key)) s3.objects.set(key, theirs);
    };
    expect(await s.putStreamIfAbsent('wal/race', pieces(randomBytes(2 * PART), 1 << 20), 2 * PART, {})).toBe('exists');
    expect(s3.objects.get(key)!.equals(theirs)).toBe(true);
    expect(s3.uploads.size).toBe(0);
  });

  it('an existing name is answered "exists" before any part is sent', async () => {
    const s = store();
    s3.objects.set(`p${n - 1}/wal/there`, Buffer.from('x'));
    expect(await s.putStreamIfAbsent('wal/there', pieces(randomBytes(2 * PART), 1 << 20), 2 * PART, {})).toBe('exists');
    expect(s3.requests.filter((r) => r.startsWith('POST ?uploads'))).toHaveLength(0);
  });

  it('sweeps uploads a killed push left under its prefix, older than the limit, and nothing else', async () => {
    const s = store();
    const prefix = `p${n - 1}/`;
    const hourAgo = new Date(Date.now() - 2 * 3600_000);
    s3.uploads.set('old', { key: `${prefix}wal/a`, initiated: hourAgo, parts: new Map() });
    s3.uploads.set('fresh', { key: `${prefix}wal/b`, initiated: new Date(), parts: new Map() });
    s3.uploads.set('other-prefix', { key: 'elsewhere/wal/c', initiated: hourAgo, parts: new Map() });
    expect(await s.sweepStaleUploads(3600_000)).toBe(1);
    expect([...s3.uploads.keys()].sort()).toEqual(['fresh', 'other-prefix']);
    s3.uploads.clear();
  });
});
