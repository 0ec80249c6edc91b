/**
 * The monitoring side of the metrics tests: a long-running `walship metrics
 * --watch` as the postgres OS user, Debian's prometheus-node-exporter on a
 * free loopback port, and promtool. Every process started here is stopped by
 * the returned handle (and on worker exit as a last resort), by its own pid.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { get } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { freePort } from './free-port.js';
import { basePostgresEnv, RUNUSER, runuserArgv } from './postgres-user.js';
import { walshipBin } from './walship.js';

export const PROMTOOL = '/usr/bin/promtool';

/**
 * The series `walship backup` writes into the metrics (issue 11; the names
 * are fixed, and the alert and recording rules depend on them).
 */
export const BACKUP_SERIES: readonly string[] = [
  'walship_last_backup_timestamp_seconds',
  'walship_backups_total',
  'walship_last_backup_size_bytes',
  'walship_last_backup_duration_seconds',
  'walship_backup_verification_failed',
];
export const NODE_EXPORTER = '/usr/bin/prometheus-node-exporter';

/** Fails with the install hint: .ci/run installs both Debian packages. */
export function requireMonitoringTools(): void {
  for (const bin of [PROMTOOL, NODE_EXPORTER]) {
    if (!existsSync(bin)) throw new Error(`${bin} is missing: apt-get install prometheus prometheus-node-exporter (.ci/run does)`);
  }
}

const started = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of started) if (c.exitCode === null) c.kill('SIGKILL');
});

export interface Background {
  readonly pid: number;
  /** SIGTERM, then wait for the exit; resolves to the exit code (128+n for a signal) and stderr. */
  stop(): Promise<{ code: number; stderr: string }>;
}

/** The process runuser started (runuser itself answers SIGTERM by killing it and exiting 143). */
function runuserChild(pid: number): number | undefined {
  try {
    const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    return kids.length === 1 ? Number(kids[0]) : undefined;
  } catch {
    return undefined;
  }
}

function track(child: ChildProcess, signalTarget: () => number | undefined = () => child.pid): Background {
  started.add(child);
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<{ code: number; stderr: string }>((resolve) =>
    child.once('close', (code, signal) => {
      started.delete(child);
      resolve({ code: code ?? (signal === 'SIGTERM' ? 143 : 137), stderr });
    }),
  );
  return {
    pid: child.pid!,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const pid = signalTarget() ?? child.pid!;
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          // already gone
        }
      }
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
  };
}

/** walship ARGS as the postgres OS user, in the background (runuser forwards SIGTERM to it). */
export function startWalship(args: string[], env: Record<string, string> = {}): Background {
  const child = spawn(RUNUSER, runuserArgv(walshipBin(), args, env), { cwd: '/', env: basePostgresEnv(), stdio: ['ignore', 'ignore', 'pipe'] });
  return track(child, () => runuserChild(child.pid!));
}

export interface NodeExporter extends Background {
  readonly url: string;
  scrape(): Promise<string>;
}

/** node_exporter with only the textfile collector, on 127.0.0.1 and a free port. */
export async function startNodeExporter(textfileDir: string): Promise<NodeExporter> {
  const port = await freePort();
  const child = spawn(
    NODE_EXPORTER,
    [`--web.listen-address=127.0.0.1:${port}`, '--collector.disable-defaults', '--collector.textfile', `--collector.textfile.directory=${textfileDir}`],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const handle = track(child);
  const url = `http://127.0.0.1:${port}/metrics`;
  const scrape = () =>
    new Promise<string>((resolve, reject) => {
      const req = get(url, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}: ${body}`))));
      });
      req.setTimeout(5000, () => req.destroy(new Error('scrape timed out')));
      req.on('error', reject);
    });
  for (let i = 0; ; i++) {
    try {
      await scrape();
      break;
    } catch (err) {
      if (child.exitCode !== null || i >= 100) {
        const r = await handle.stop();
        throw new Error(`node_exporter did not come up on ${url}: ${(err as Error).message}\n${r.stderr}`);
      }
      await sleep(100);
    }
  }
  return { ...handle, url, scrape };
}

/** `promtool check metrics` on the given exposition text; returns its combined output and exit code. */
export async function promtoolCheckMetrics(text: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(PROMTOOL, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (b: Buffer) => (output += b.toString()));
    child.stderr.on('data', (b: Buffer) => (output += b.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code: code ?? 1, output }));
    child.stdin.end(text);
  });
}

export async function promtool(args: string[], cwd?: string): Promise<{ code: number; output: string }> {
  return runTool(PROMTOOL, args, cwd);
}

/** Runs a checking tool (promtool, systemd-analyze); returns its exit code and combined output instead of throwing. */
export async function runTool(bin: string, args: string[], cwd?: string): Promise<{ code: number; output: string }> {
  try {
    const r = await promisify(execFile)(bin, args, { cwd });
    return { code: 0, output: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}
