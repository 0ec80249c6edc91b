/**
 * A small AWS KMS for tests: the AWS JSON 1.1 protocol over HTTP on
 * 127.0.0.1, enough of it for the real @aws-sdk/client-kms (and so walship)
 * to talk to: GenerateDataKey, Encrypt, Decrypt and DescribeKey.
 *
 * It behaves like KMS where walship depends on it:
 * - keys are addressed by key id, key ARN, alias name or alias ARN;
 * - a ciphertext blob names its key, so Decrypt works without KeyId (as KMS
 *   does for symmetric keys); a KeyId that names another key is refused
 *   (IncorrectKeyException);
 * - the encryption context is authenticated: Decrypt with any other context
 *   fails (InvalidCiphertextException), as does an altered blob;
 * - callers are identified by the access key id of their SigV4 Authorization
 *   header, each access key belongs to an account, and a key of another
 *   account is AccessDeniedException (no cross-account grants here). The
 *   signature itself is not verified.
 *
 * And it lets a test see and break things: per-operation call counters,
 * operations denied on demand, injected failures (e.g. throttling, 500s),
 * "unreachable" (connections reset), disabled keys.
 *
 * Runs in the test process; walship processes reach it at `endpoint`.
 */
import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { S3_TEST_CREDENTIALS } from './s3-server.js';

export const KMS_TEST_REGION = 'us-east-1';
export const KMS_TEST_ACCOUNT = '111122223333';
/** An access key of another account: it may not use the test account's keys. */
export const KMS_OTHER_ACCOUNT_CREDENTIALS = { accessKeyId: 'OTHERACCOUNTKEY', secretAccessKey: 'other-secret' } as const;
export const KMS_OTHER_ACCOUNT = '444455556666';

export type KmsOperation = 'GenerateDataKey' | 'Encrypt' | 'Decrypt' | 'DescribeKey';
const OPERATIONS: readonly KmsOperation[] = ['GenerateDataKey', 'Encrypt', 'Decrypt', 'DescribeKey'];

export type KeyState = 'Enabled' | 'Disabled' | 'PendingDeletion';

export interface TestKmsKey {
  readonly id: string;
  readonly arn: string;
  readonly account: string;
  /** `alias/NAME`, when created with one. */
  readonly alias: string | undefined;
  readonly aliasArn: string | undefined;
}

export interface KmsServer {
  readonly endpoint: string;
  readonly region: string;
  /** Calls received per operation (failed ones included), since start or the last resetCounters(). */
  readonly calls: Readonly<Record<KmsOperation, number>>;
  totalCalls(): number;
  resetCounters(): void;
  createKey(opts?: { alias?: string; account?: string }): TestKmsKey;
  /** Points an alias at another key (like UpdateAlias). */
  updateAlias(alias: string, keyRef: string): void;
  setKeyState(keyRef: string, state: KeyState): void;
  /** AccessDeniedException for these operations ('*': all) until cleared with an empty list. */
  deny(ops: readonly (KmsOperation | '*')[]): void;
  /** The next `count` calls of `op` fail with `type` (HTTP `status`). */
  failNext(op: KmsOperation | '*', count: number, type?: string, status?: number): void;
  /** Drops injected failures that have not fired yet. */
  clearFaults(): void;
  /** While true, every connection is reset before an answer: KMS unreachable. */
  setUnreachable(on: boolean): void;
  stop(): Promise<void>;
}

interface KeyRecord extends TestKmsKey {
  readonly material: Buffer;
  state: KeyState;
}

class KmsFault extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

const BLOB_VERSION = 1;

function canonical(ctx: Record<string, string> | undefined): Buffer {
  const c = ctx ?? {};
  return Buffer.from(JSON.stringify(Object.keys(c).sort().map((k) => [k, c[k]])));
}

export async function startKmsServer(opts: { region?: string; accounts?: Record<string, string> } = {}): Promise<KmsServer> {
  const region = opts.region ?? KMS_TEST_REGION;
  const accounts: Record<string, string> = {
    [S3_TEST_CREDENTIALS.accessKeyId]: KMS_TEST_ACCOUNT,
    [KMS_OTHER_ACCOUNT_CREDENTIALS.accessKeyId]: KMS_OTHER_ACCOUNT,
    ...opts.accounts,
  };
  const keys = new Map<string, KeyRecord>();
  const aliases = new Map<string, string>(); // `${account}:alias/NAME` → key id
  const calls = Object.fromEntries(OPERATIONS.map((o) => [o, 0])) as Record<KmsOperation, number>;
  let denied = new Set<string>();
  const faults: { op: string; count: number; type: string; status: number }[] = [];
  let unreachable = false;

  const arnOf = (account: string, resource: string): string => `arn:aws:kms:${region}:${account}:${resource}`;

  function resolve(ref: unknown, callerAccount: string): KeyRecord {
    if (typeof ref !== 'string' || ref === '') throw new KmsFault('ValidationException', 'KeyId is required');
    let account = callerAccount;
    let rest = ref;
    const arn = /^arn:aws:kms:([a-z0-9-]+):(\d{12}):(.+)$/.exec(ref);
    if (arn) {
      if (arn[1] !== region) throw new KmsFault('NotFoundException', `Invalid arn ${ref}: not in region ${region}`);
      account = arn[2]!;
      rest = arn[3]!;
    } else if (/^arn:/.test(ref)) {
      throw new KmsFault('InvalidArnException', `Invalid arn ${ref}`);
    }
    let id: string | undefined;
    if (rest.startsWith('alias/')) id = aliases.get(`${account}:${rest}`);
    else if (rest.startsWith('key/')) id = rest.slice(4);
    else if (!arn) id = rest;
    const key = id ? keys.get(id) : undefined;
    if (!key || key.account !== account) {
      // KMS answers AccessDenied, not NotFound, for another account's key the caller may not use.
      if (account !== callerAccount) throw new KmsFault('AccessDeniedException', `User in account ${callerAccount} is not authorized to use ${ref}: no resource-based policy allows the kms action`);
      throw new KmsFault('NotFoundException', `Key '${ref}' does not exist`);
    }
    if (key.account !== callerAccount) {
      throw new KmsFault('AccessDeniedException', `User in account ${callerAccount} is not authorized to use ${key.arn}: no resource-based policy allows the kms action`);
    }
    return key;
  }

  function usable(key: KeyRecord): void {
    if (key.state === 'Disabled') throw new KmsFault('DisabledException', `${key.arn} is disabled.`);
    if (key.state === 'PendingDeletion') throw new KmsFault('KMSInvalidStateException', `${key.arn} is pending deletion.`);
  }

  function seal(key: KeyRecord, plaintext: Buffer, ctx: Record<string, string> | undefined): Buffer {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', key.material, iv);
    c.setAAD(canonical(ctx));
    const ct = Buffer.concat([c.update(plaintext), c.final()]);
    const id = Buffer.from(key.id, 'ascii');
    return Buffer.concat([Buffer.from([BLOB_VERSION, id.length]), id, iv, c.getAuthTag(), ct]);
  }

  function open(blob: Buffer, ctx: Record<string, string> | undefined, callerAccount: string, keyIdParam: unknown): { key: KeyRecord; plaintext: Buffer } {
    const invalid = (): KmsFault => new KmsFault('InvalidCiphertextException', 'The ciphertext is invalid or does not match the encryption context');
    if (blob.length < 2 || blob[0] !== BLOB_VERSION) throw invalid();
    const idLen = blob[1]!;
    if (blob.length < 2 + idLen + 28) throw invalid();
    const embedded = blob.subarray(2, 2 + idLen).toString('ascii');
    const key = keys.get(embedded);
    if (!key) throw invalid();
    if (key.account !== callerAccount) throw new KmsFault('AccessDeniedException', `User in account ${callerAccount} is not authorized to use ${key.arn}`);
    if (keyIdParam !== undefined && resolve(keyIdParam, callerAccount).id !== key.id) {
      throw new KmsFault('IncorrectKeyException', 'The key ID in the request does not identify the KMS key that encrypted the ciphertext');
    }
    usable(key);
    const at = 2 + idLen;
    const d = createDecipheriv('aes-256-gcm', key.material, blob.subarray(at, at + 12));
    d.setAAD(canonical(ctx));
    d.setAuthTag(blob.subarray(at + 12, at + 28));
    try {
      return { key, plaintext: Buffer.concat([d.update(blob.subarray(at + 28)), d.final()]) };
    } catch {
      throw invalid();
    }
  }

  type Body = Record<string, unknown>;
  const ctxOf = (b: Body): Record<string, string> | undefined => b.EncryptionContext as Record<string, string> | undefined;

  function handle(op: KmsOperation, body: Body, caller: string): Body {
    switch (op) {
      case 'GenerateDataKey': {
        const key = resolve(body.KeyId, caller);
        usable(key);
        const bytes = body.KeySpec === 'AES_128' ? 16 : body.KeySpec === 'AES_256' ? 32 : Number(body.NumberOfBytes ?? NaN);
        if (!Number.isInteger(bytes) || bytes < 1 || bytes > 1024) throw new KmsFault('ValidationException', 'KeySpec or NumberOfBytes is required');
        const plaintext = randomBytes(bytes);
        return { KeyId: key.arn, Plaintext: plaintext.toString('base64'), CiphertextBlob: seal(key, plaintext, ctxOf(body)).toString('base64') };
      }
      case 'Encrypt': {
        const key = resolve(body.KeyId, caller);
        usable(key);
        const plaintext = Buffer.from(String(body.Plaintext ?? ''), 'base64');
        return { KeyId: key.arn, CiphertextBlob: seal(key, plaintext, ctxOf(body)).toString('base64'), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
      }
      case 'Decrypt': {
        const { key, plaintext } = open(Buffer.from(String(body.CiphertextBlob ?? ''), 'base64'), ctxOf(body), caller, body.KeyId);
        return { KeyId: key.arn, Plaintext: plaintext.toString('base64'), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
      }
      case 'DescribeKey': {
        const key = resolve(body.KeyId, caller);
        return {
          KeyMetadata: {
            AWSAccountId: key.account,
            KeyId: key.id,
            Arn: key.arn,
            Enabled: key.state === 'Enabled',
            KeyState: key.state,
            KeyUsage: 'ENCRYPT_DECRYPT',
            KeySpec: 'SYMMETRIC_DEFAULT',
            KeyManager: 'CUSTOMER',
            CreationDate: 1_700_000_000,
          },
        };
      }
    }
  }

  function reply(res: ServerResponse, status: number, body: Body): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1', 'content-length': Buffer.byteLength(text), 'x-amzn-requestid': randomUUID() });
    res.end(text);
  }

  async function onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (unreachable) {
      req.socket.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const target = String(req.headers['x-amz-target'] ?? '');
    const op = target.replace(/^TrentService\./, '') as KmsOperation;
    try {
      if (req.method !== 'POST' || !OPERATIONS.includes(op)) throw new KmsFault('UnknownOperationException', `unsupported operation ${target}`);
      calls[op]++;
      const akid = /Credential=([^/]+)\//.exec(String(req.headers.authorization ?? ''))?.[1];
      const caller = akid ? accounts[akid] : undefined;
      if (!caller) throw new KmsFault('UnrecognizedClientException', 'The security token included in the request is invalid.');
      const fault = faults.find((f) => f.count > 0 && (f.op === op || f.op === '*'));
      if (fault) {
        fault.count--;
        throw new KmsFault(fault.type, `injected ${fault.type}`, fault.status);
      }
      if (denied.has(op) || denied.has('*')) {
        throw new KmsFault('AccessDeniedException', `User: arn:aws:iam::${caller}:user/walship is not authorized to perform: kms:${op} because of an explicit deny`);
      }
      let body: Body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Body;
      } catch {
        throw new KmsFault('SerializationException', 'request body is not JSON');
      }
      reply(res, 200, handle(op, body, caller));
    } catch (err) {
      if (err instanceof KmsFault) reply(res, err.status, { __type: err.type, message: err.message });
      else reply(res, 500, { __type: 'KMSInternalException', message: String(err) });
    }
  }

  const server = createServer((req, res) => {
    onRequest(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;

  const find = (ref: string): KeyRecord => {
    const id = aliases.get(`${KMS_TEST_ACCOUNT}:${ref}`) ?? [...keys.values()].find((k) => k.id === ref || k.arn === ref || k.alias === ref)?.id;
    const key = id ? keys.get(id) : undefined;
    if (!key) throw new Error(`test KMS has no key ${ref}`);
    return key;
  };

  return {
    endpoint: `http://127.0.0.1:${port}`,
    region,
    calls,
    totalCalls: () => OPERATIONS.reduce((n, o) => n + calls[o], 0),
    resetCounters: () => OPERATIONS.forEach((o) => (calls[o] = 0)),
    createKey(o = {}) {
      const account = o.account ?? KMS_TEST_ACCOUNT;
      const id = randomUUID();
      const alias = o.alias ? `alias/${o.alias.replace(/^alias\//, '')}` : undefined;
      const rec: KeyRecord = {
        id,
        arn: arnOf(account, `key/${id}`),
        account,
        alias,
        aliasArn: alias ? arnOf(account, alias) : undefined,
        material: randomBytes(32),
        state: 'Enabled',
      };
      keys.set(id, rec);
      if (alias) aliases.set(`${account}:${alias}`, id);
      const { material: _m, state: _s, ...pub } = rec;
      return pub;
    },
    updateAlias(alias, keyRef) {
      const key = find(keyRef);
      aliases.set(`${key.account}:alias/${alias.replace(/^alias\//, '')}`, key.id);
    },
    setKeyState(keyRef, state) {
      find(keyRef).state = state;
    },
    deny(ops) {
      denied = new Set(ops);
    },
    failNext(op, count, type = 'KMSInternalException', status = 500) {
      faults.push({ op, count, type, status });
    },
    clearFaults() {
      faults.length = 0;
    },
    setUnreachable(on) {
      unreachable = on;
    },
    stop: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** The settings that make walship encrypt with `keyRef` on `server` (credentials included). */
export function kmsEncryption(server: KmsServer, keyRef: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    WALSHIP_ENCRYPTION: 'kms',
    WALSHIP_KMS_KEY_ID: keyRef,
    WALSHIP_KMS_ENDPOINT: server.endpoint,
    WALSHIP_KMS_REGION: server.region,
    AWS_ACCESS_KEY_ID: S3_TEST_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: S3_TEST_CREDENTIALS.secretAccessKey,
    ...extra,
  };
}
