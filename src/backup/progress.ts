import { bytes } from '../units.js';

/**
 * Progress of a backup or a restore. On a terminal: one self-overwriting
 * line with bytes, rate and ETA, at most five times a second. Otherwise
 * (cron, systemd, a pipe): nothing per byte, and the caller logs one line
 * per part.
 */
export interface Progress {
  add(n: number): void;
  done(): void;
}

export function progressLine(verb: string, total: number, out: NodeJS.WriteStream = process.stderr): Progress | undefined {
  if (!out.isTTY) return undefined;
  const started = Date.now();
  let done = 0;
  let last = 0;
  let shown = false;
  return {
    add(n: number): void {
      done += n;
      const now = Date.now();
      if (now - last < 200) return;
      last = now;
      shown = true;
      const secs = Math.max(0.001, (now - started) / 1000);
      const rate = done / secs;
      const pct = total > 0 ? Math.min(100, Math.floor((100 * done) / total)) : 100;
      const eta = rate > 0 && total > done ? `, ETA ${formatSeconds((total - done) / rate)}` : '';
      out.write(`\r${verb}: ${bytes(done)} of ${bytes(total)} (${pct} %), ${bytes(Math.round(rate))}/s${eta}   `);
    },
    done(): void {
      if (shown) out.write('\r\x1b[K');
    },
  };
}

export function formatSeconds(s: number): string {
  if (s < 60) return `${Math.ceil(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.ceil(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
