import { spawn, type ChildProcess } from 'node:child_process';

/** flock(1) exit status when the lock is held by someone else (-E). */
const LOCK_CONFLICT = 75;
/** Printed by the holder once flock(1) has the lock. */
const HELD = 'held';

/**
 * An exclusive flock(2) on `lockPath`, held for this process by a child:
 * `flock -xn LOCK sh -c 'echo held; exec cat'`, whose stdin is a pipe from
 * this process. Node cannot call flock(2), and a process that is already
 * running cannot inherit a locked descriptor; this is how a long-lived
 * process (the agent) takes a lock later in its life (the prefetch pool's
 * worker.lock, once recovery needs it).
 *
 * The lock lives exactly as long as this process: when it exits or is
 * killed (kill -9 included) the kernel closes the pipe, `cat` reads EOF and
 * exits, and flock(1) with it, releasing the lock. A stopped process keeps
 * it, like any lock holder: nobody takes over behind its back.
 */
export class LockHolder {
  private constructor(
    readonly lockPath: string,
    private readonly child: ChildProcess,
  ) {}

  /**
   * Takes the lock: a holder once it is held, 'busy' when someone else
   * holds it (at once, or after `waitSeconds` of waiting for it). Throws
   * when flock(1) cannot run.
   */
  static async take(lockPath: string, opts: { waitSeconds?: number } = {}): Promise<LockHolder | 'busy'> {
    const how = opts.waitSeconds === undefined ? ['-xn'] : ['-x', '-w', String(opts.waitSeconds)];
    const child = spawn('flock', [...how, '-E', String(LOCK_CONFLICT), lockPath, 'sh', '-c', `echo ${HELD}; exec cat >/dev/null`], {
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    // EPIPE on our end of stdin when the holder is gone is not an error here.
    child.stdin?.on('error', () => undefined);
    return new Promise((resolve, reject) => {
      let out = '';
      const done = (v: LockHolder | 'busy' | Error) => {
        child.stdout?.removeAllListeners('data');
        child.removeAllListeners('exit');
        if (v instanceof Error) reject(v);
        else resolve(v);
      };
      child.stdout?.on('data', (b: Buffer) => {
        out += b.toString('utf8');
        if (out.includes(`${HELD}\n`)) done(new LockHolder(lockPath, child));
      });
      child.once('error', (err) => done(new Error(`cannot run flock(1) for ${lockPath} (${err.message}); install util-linux`)));
      child.once('exit', (code) => {
        if (code === LOCK_CONFLICT) done('busy');
        else done(new Error(`flock(1) on ${lockPath} exited ${code ?? 'by a signal'} before taking the lock`));
      });
    });
  }

  /** False once the holder is gone (killed from outside): the lock may be someone else's now. */
  get held(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Releases the lock (the holder reads EOF and exits); resolves when it has. */
  async release(): Promise<void> {
    if (!this.held) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin?.end();
    await exited;
  }
}
