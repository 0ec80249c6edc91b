/**
 * A small HTTP-aware TCP proxy on 127.0.0.1 that sits between walship and
 * the S3 server (s3rver) and breaks things on request: S3 error responses
 * (5xx, throttling), connection resets before or in the middle of an upload,
 * stalls (a server that takes the request and never answers, or goes silent
 * halfway through its answer) and a full outage (connections refused).
 * Faults can be switched at runtime while walship processes, or a real
 * PostgreSQL archiving through walship, are using it.
 *
 * Each client connection carries exactly one request: the proxy reads the
 * request head, decides, and for a request it lets through forwards it with
 * "Connection: close", so the server closes after its answer and the client
 * does not reuse the connection. That keeps the proxy a byte pipe with no
 * response parsing, and makes every request an independent fault decision.
 */
import { createServer, Socket, type Server } from 'node:net';
import { prng } from './prng.js';

export type Fault =
  /** Answer with an S3 error document; the request never reaches the server. */
  | { readonly kind: 'status'; readonly status: number; readonly code?: string }
  /** TCP reset as soon as the request head has arrived. */
  | { readonly kind: 'reset' }
  /** Forward the request head and the first `afterBytes` of its body, then reset both sides (an upload cut off). */
  | { readonly kind: 'reset-mid-body'; readonly afterBytes: number }
  /** Take the request and never answer (a hung server or a black-holed connection). */
  | { readonly kind: 'stall' }
  /** Forward, relay the first `afterBytes` of the answer, then go silent (a download that stops). */
  | { readonly kind: 'stall-response'; readonly afterBytes: number }
  /** Forward both ways at this rate (a slow link: uploads and downloads take long enough to be interrupted). */
  | { readonly kind: 'slow'; readonly bytesPerSecond: number }
  /**
   * Forward, and if the server answers `from`, answer `to` with an S3 error
   * document instead (e.g. 404 → 403 AccessDenied: what S3 says about a
   * missing key to a principal without s3:ListBucket).
   */
  | { readonly kind: 'rewrite-status'; readonly from: number; readonly to: number; readonly code?: string };

export interface RequestInfo {
  readonly method: string;
  /** Path and query, as sent (path-style: /bucket/key). */
  readonly path: string;
  /** Request headers, names in lower case. */
  readonly headers: ReadonlyMap<string, string>;
}

export interface FaultRule {
  readonly fault: Fault;
  /** How many matching requests get this fault (default 1). */
  readonly times?: number;
  readonly match?: (req: RequestInfo) => boolean;
}

export interface RandomFaults {
  /** Probability that a request gets a fault. */
  readonly rate: number;
  readonly faults: readonly Fault[];
  readonly seed: number;
  readonly match?: (req: RequestInfo) => boolean;
}

export interface FaultProxyStats {
  requests: number;
  passed: number;
  /** Faults injected, by kind. */
  injected: Record<Fault['kind'], number>;
}

export interface FaultProxy {
  /** http://127.0.0.1:<port>: use it as WALSHIP_S3_ENDPOINT. */
  readonly endpoint: string;
  readonly port: number;
  readonly stats: FaultProxyStats;
  /** Queue a rule; rules are consumed in order, before any random fault. */
  inject(rule: FaultRule): void;
  /** Every request gets this fault until cleared (e.g. a stalled server). */
  always(fault: Fault, match?: (req: RequestInfo) => boolean): void;
  /** Random faults at a seeded rate. */
  random(opts: RandomFaults): void;
  /** Back to a transparent proxy (rules, permanent and random faults removed; held connections dropped). */
  clear(): void;
  /** A full outage: the port refuses connections (and open ones are dropped) until outage(false). */
  outage(down: boolean): Promise<void>;
  close(): Promise<void>;
}

const HEAD_END = Buffer.from('\r\n\r\n');
const MAX_HEAD = 64 * 1024;

export async function startFaultProxy(upstreamPort: number): Promise<FaultProxy> {
  const rules: { rule: FaultRule; left: number }[] = [];
  let permanent: { fault: Fault; match?: ((req: RequestInfo) => boolean) | undefined } | undefined;
  let randomFaults: (RandomFaults & { next: () => number }) | undefined;
  const sockets = new Set<Socket>();
  const stats: FaultProxyStats = {
    requests: 0,
    passed: 0,
    injected: { status: 0, reset: 0, 'reset-mid-body': 0, stall: 0, 'stall-response': 0, slow: 0, 'rewrite-status': 0 },
  };

  const decide = (req: RequestInfo): Fault | undefined => {
    for (const r of rules) {
      if (r.left > 0 && (!r.rule.match || r.rule.match(req))) {
        r.left--;
        return r.rule.fault;
      }
    }
    if (permanent && (!permanent.match || permanent.match(req))) return permanent.fault;
    if (randomFaults && (!randomFaults.match || randomFaults.match(req)) && randomFaults.next() < randomFaults.rate) {
      return randomFaults.faults[Math.floor(randomFaults.next() * randomFaults.faults.length)];
    }
    return undefined;
  };

  const track = (s: Socket): Socket => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    return s;
  };

  const onConnection = (client: Socket): void => {
    track(client);
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf(HEAD_END);
      if (end < 0) {
        if (head.length > MAX_HEAD) client.destroy();
        return;
      }
      client.off('data', onData);
      client.pause();
      handle(client, head.subarray(0, end + 4), head.subarray(end + 4));
    };
    client.on('data', onData);
  };

  const handle = (client: Socket, rawHead: Buffer, rest: Buffer): void => {
    const lines = rawHead.toString('latin1').split('\r\n');
    const [method = '', path = ''] = (lines[0] ?? '').split(' ');
    const headers = new Map<string, string>();
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i > 0) headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
    }
    stats.requests++;
    const fault = decide({ method, path, headers });
    if (fault) stats.injected[fault.kind]++;
    else stats.passed++;
    const bodyLength = Number(headers.get('content-length') ?? 0);
    const expectsContinue = (headers.get('expect') ?? '').toLowerCase() === '100-continue';

    switch (fault?.kind) {
      case undefined:
      case 'reset-mid-body':
      case 'stall-response':
      case 'slow':
      case 'rewrite-status':
        forward(client, rewriteHead(lines), rest, fault, method);
        return;
      case 'reset':
        client.resetAndDestroy();
        return;
      case 'stall':
        // Keep reading (so the client's upload "succeeds") and never answer.
        client.resume();
        return;
      case 'status': {
        const answer = (): void => {
          client.end(errorResponse(method, fault.status, fault.code));
        };
        // With Expect: 100-continue the client waits for us before sending
        // the body; a final status instead of 100 is a valid answer.
        if (expectsContinue || bodyLength <= rest.length) {
          answer();
          return;
        }
        let got = rest.length;
        client.on('data', (c: Buffer) => {
          got += c.length;
          if (got >= bodyLength) answer();
        });
        client.resume();
        return;
      }
    }
  };

  const forward = (client: Socket, head: Buffer, rest: Buffer, fault: Fault | undefined, method: string): void => {
    const upstream = track(new Socket());
    upstream.connect(upstreamPort, '127.0.0.1', () => {
      upstream.write(head);
      let sent = 0;
      const send = (chunk: Buffer): void => {
        if (fault?.kind === 'reset-mid-body') {
          const room = fault.afterBytes - sent;
          if (room <= 0) return;
          if (chunk.length >= room) {
            upstream.write(chunk.subarray(0, room), () => {
              // Let the partial upload reach the server, then cut both sides.
              setTimeout(() => {
                upstream.resetAndDestroy();
                client.resetAndDestroy();
              }, 20);
            });
            sent += room;
            return;
          }
        }
        sent += chunk.length;
        upstream.write(chunk);
      };
      if (rest.length > 0) send(rest);
      if (fault?.kind === 'slow') throttle(client, send, fault.bytesPerSecond, () => upstream.end());
      else {
        client.on('data', send);
        client.on('end', () => upstream.end());
      }
      client.resume();
    });
    if (fault?.kind === 'slow') {
      throttle(upstream, (chunk) => client.write(chunk), fault.bytesPerSecond, () => client.end());
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
      return;
    }
    let relayed = 0;
    // rewrite-status: hold the answer until its status line is complete.
    let statusLine: Buffer | undefined = fault?.kind === 'rewrite-status' ? Buffer.alloc(0) : undefined;
    upstream.on('data', (chunk: Buffer) => {
      if (fault?.kind === 'rewrite-status' && statusLine !== undefined) {
        statusLine = Buffer.concat([statusLine, chunk]);
        const eol = statusLine.indexOf('\r\n');
        if (eol < 0) return;
        const status = Number(statusLine.subarray(0, eol).toString('latin1').split(' ')[1]);
        if (status === fault.from) {
          client.end(errorResponse(method, fault.to, fault.code));
          upstream.destroy();
          statusLine = undefined;
          return;
        }
        chunk = statusLine;
        statusLine = undefined;
      }
      if (fault?.kind === 'stall-response') {
        const room = fault.afterBytes - relayed;
        if (room > 0) client.write(chunk.subarray(0, room));
        relayed += chunk.length;
        return;
      }
      client.write(chunk);
    });
    upstream.on('end', () => {
      if (fault?.kind !== 'stall-response') client.end();
    });
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
  };

  let server: Server = createServer(onConnection);
  const listen = (port: number): Promise<number> =>
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port }, () => {
        server.off('error', reject);
        const a = server.address();
        resolve(typeof a === 'object' && a ? a.port : port);
      });
    });
  const port = await listen(0);
  let down = false;

  const dropAll = (): void => {
    for (const s of sockets) s.destroy();
  };

  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    stats,
    inject(rule) {
      rules.push({ rule, left: rule.times ?? 1 });
    },
    always(fault, match) {
      permanent = { fault, match };
    },
    random(opts) {
      randomFaults = { ...opts, next: prng(opts.seed) };
    },
    clear() {
      rules.length = 0;
      permanent = undefined;
      randomFaults = undefined;
      dropAll();
    },
    async outage(on) {
      if (on === down) return;
      down = on;
      if (on) {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          dropAll();
        });
      } else {
        server = createServer(onConnection);
        await listen(port);
      }
    },
    async close() {
      dropAll();
      if (!down) await new Promise<void>((resolve) => server.close(() => resolve()));
      down = true;
    },
  };
}

/**
 * Delivers `from`'s data to `to` no faster than the rate, pausing the source
 * meanwhile; `onEnd` runs after the last delayed chunk has been delivered.
 */
function throttle(from: Socket, to: (chunk: Buffer) => void, bytesPerSecond: number, onEnd: () => void): void {
  let chain = Promise.resolve();
  from.on('data', (chunk: Buffer) => {
    from.pause();
    chain = chain
      .then(() => new Promise<void>((resolve) => setTimeout(resolve, (1000 * chunk.length) / bytesPerSecond)))
      .then(() => {
        to(chunk);
        from.resume();
      });
  });
  from.on('end', () => {
    chain = chain.then(onEnd);
  });
}

/** Forces one request per connection (see the module comment). */
function rewriteHead(lines: string[]): Buffer {
  const kept = lines.filter((l, i) => i === 0 || (l !== '' && !/^(connection|keep-alive)\s*:/i.test(l)));
  return Buffer.from(`${kept.join('\r\n')}\r\nConnection: close\r\n\r\n`, 'latin1');
}

function errorResponse(method: string, status: number, code: string | undefined): string {
  const body =
    method === 'HEAD'
      ? ''
      : `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code ?? codeFor(status)}</Code><Message>injected by the fault proxy</Message><RequestId>fault-proxy</RequestId></Error>`;
  return `HTTP/1.1 ${status} ${reasonFor(status)}\r\nContent-Type: application/xml\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

function codeFor(status: number): string {
  if (status === 503) return 'SlowDown';
  if (status === 500) return 'InternalError';
  if (status === 429) return 'TooManyRequests';
  if (status === 403) return 'AccessDenied';
  if (status === 501) return 'NotImplemented';
  return 'InjectedFault';
}

function reasonFor(status: number): string {
  return ({ 500: 'Internal Server Error', 501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Slow Down', 429: 'Too Many Requests', 403: 'Forbidden', 400: 'Bad Request' } as Record<number, string>)[status] ?? 'Error';
}
