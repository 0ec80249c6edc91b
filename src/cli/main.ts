import { existsSync } from 'node:fs';

/**
 * Entry point, and the guard of walship's exit codes. PostgreSQL reads an
 * ordinary non-zero exit of restore_command as "not in the archive" and, in
 * archive recovery, ends recovery at the first one. So whatever goes wrong
 * before `fetch` can give an answer (bad arguments, a build chunk that is
 * missing or does not parse, an exception nobody caught) must exit like a
 * failed delivery, never like "not found".
 *
 * This file imports nothing of walship on purpose: esbuild puts a module that
 * the entry shares with a command into a chunk that main.mjs imports
 * statically, and a broken chunk would then stop Node before any rule here
 * runs. The price is that fetchFailureExit() in exit-codes.ts is repeated
 * below; the exit-code integration test holds both to the same answers.
 */

const ABORT_RECOVERY = 200;
const FAILED = 1;

/**
 * The command the arguments name, skipping the global options that may come
 * first (-c FILE, --config FILE, --config=FILE, -cFILE, --store N). An unknown option is
 * taken as a flag; commander rejects it later, and the command is still known.
 */
function commandOf(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') return args[i + 1];
    if (a === '-c' || a === '--config' || a === '--store') {
      i++;
      continue;
    }
    if (a.startsWith('-')) continue;
    return a;
  }
  return undefined;
}

/**
 * fetch: on a standby PostgreSQL retries a failed restore_command, so 1 is
 * safe there, unless a promotion is pending: PostgreSQL promotes at the first
 * failure once `promote` exists, and would leave archived WAL behind.
 * Everywhere else (archive recovery, pg_rewind) 200 stops rather than ends
 * recovery early. push: 1, PostgreSQL retries.
 */
function failureExit(command: string | undefined): number {
  if (command !== 'fetch') return FAILED;
  return existsSync('standby.signal') && !existsSync('promote') ? FAILED : ABORT_RECOVERY;
}

function die(err: unknown): never {
  const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
  try {
    process.stderr.write(`walship: internal error: ${text}\n`);
  } finally {
    process.exit(failureExit(command));
  }
}

const command = commandOf(process.argv.slice(2));
process.on('uncaughtException', die);
process.on('unhandledRejection', die);

import('./program.js')
  .then(({ main }) => main(process.argv, { command, failureExit: () => failureExit(command) }))
  .then((code) => process.exit(code), die);
