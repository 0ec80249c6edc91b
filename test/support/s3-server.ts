/**
 * A throw-away S3 endpoint (s3rver) for tests, running in its own Node child
 * process; see s3rver-runner.cjs for why it is out-of-process.
 *
 * Clients must use path-style addressing (forcePathStyle: true), region
 * us-east-1 and S3_TEST_CREDENTIALS. With @aws-sdk/client-s3 >= 3.729 also
 * set requestChecksumCalculation/responseChecksumValidation to
 * 'WHEN_REQUIRED': s3rver predates the default CRC32 integrity headers.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * s3rver's hard-coded account (lib/models/account.js in 3.7.1:
 * DUMMY_ACCOUNT.createKeyPair('S3RVER', 'S3RVER')). Requests signed with any
 * other key fail with InvalidAccessKeyId.
 *
 * Deliberately NOT frozen: the AWS SDK writes a `$source` property into the
 * credentials object it is given (setCredentialFeature) and crashes with
 * "Cannot set properties of undefined (setting 'CREDENTIALS_CODE')" on a
 * frozen one. Prefer passing a copy: `credentials: { ...S3_TEST_CREDENTIALS }`.
 */
export const S3_TEST_CREDENTIALS: { readonly accessKeyId: string; readonly secretAccessKey: string } = {
  accessKeyId: 'S3RVER',
  secretAccessKey: 'S3RVER',
};

export const S3_TEST_REGION = 'us-east-1';

export interface S3ServerOptions {
  /** Buckets created before the server starts listening. Default ['walship-test']. */
  buckets?: string[];
  /** Fixed port; default 0 (kernel-assigned, reported back by the child). */
  port?: number;
  /** Milliseconds to wait for the child to report readiness. Default 20000. */
  startTimeoutMs?: number;
}

export interface S3Server {
  /** e.g. http://127.0.0.1:45678 */
  endpoint: string;
  port: number;
  /** s3rver's storage directory (objects live under <dir>/<bucket>/). */
  dir: string;
  buckets: readonly string[];
  /** Stop the child (SIGKILL after 5 s) and delete dir. Idempotent. */
  stop(): Promise<void>;
}

const RUNNER = fileURLToPath(new URL('./s3rver-runner.cjs', import.meta.url));

type RunnerMessage = { type: 'ready'; port: number } | { type: 'error'; message: string };

function isRunnerMessage(m: unknown): m is RunnerMessage {
  if (typeof m !== 'object' || m === null) return false;
  const t = (m as { type?: unknown }).type;
  return t === 'ready' || t === 'error';
}

/** Running children and their storage dirs, for the exit hook. */
const liveChildren = new Map<ChildProcess, string>();
let exitHookInstalled = false;

export async function startS3Server(opts: S3ServerOptions = {}): Promise<S3Server> {
  const buckets = opts.buckets ?? ['walship-test'];
  const dir = await mkdtemp(join(tmpdir(), 'walship-s3-'));
  const child = fork(RUNNER, [JSON.stringify({ address: '127.0.0.1', port: opts.port ?? 0, directory: dir, buckets })], {
    execArgv: ['--openssl-legacy-provider'],
    // Do not inherit vitest's NODE_OPTIONS (loaders, inspector flags).
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    serialization: 'json',
  });
  liveChildren.set(child, dir);
  installExitHook();

  // Keep the child's output only for error messages.
  let output = '';
  const keep = (b: Buffer): void => {
    output = (output + b.toString('utf8')).slice(-8000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);

  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  exited.then(() => liveChildren.delete(child), () => undefined);

  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`s3rver did not start within ${opts.startTimeoutMs ?? 20_000} ms`)), opts.startTimeoutMs ?? 20_000);
      child.on('message', (m: unknown) => {
        if (!isRunnerMessage(m)) return;
        clearTimeout(timer);
        if (m.type === 'ready') resolve(m.port);
        else reject(new Error(`s3rver failed to start: ${m.message}`));
      });
      child.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`s3rver child exited before ready (code ${code}, signal ${signal})`));
      });
    });
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    await rm(dir, { recursive: true, force: true });
    const msg = err instanceof Error ? err.message : String(err);
    throw new Error(`${msg}\n--- s3rver output ---\n${output}`);
  }

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        if (child.connected) child.send({ type: 'stop' });
        else child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(killer);
      }
      await rm(dir, { recursive: true, force: true });
    })();
    return stopped;
  };

  return { endpoint: `http://127.0.0.1:${port}`, port, dir, buckets, stop };
}

/**
 * Safety net: the runner exits by itself when the IPC channel closes, but a
 * synchronous kill on exit also covers a runner that is wedged.
 */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const [c, dir] of liveChildren) {
      try {
        c.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
      } catch {
        /* best effort */
      }
    }
  });
}
