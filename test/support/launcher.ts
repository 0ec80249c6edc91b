import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * bin/walship for the launcher's unit tests: its shell functions, to run one
 * check at a time, and a whole copy beside a stand-in for Node, to see what
 * PostgreSQL's call does when a shortcut cannot answer.
 */
const LAUNCHER = join(__dirname, '..', '..', 'bin', 'walship');
const text = readFileSync(LAUNCHER, 'utf8');

/** One function of bin/walship, as written there. */
export function launcherFunction(name: string): string {
  const m = new RegExp(`^${name}\\(\\) \\{[\\s\\S]*?^\\}`, 'm').exec(text);
  if (!m) throw new Error(`bin/walship has no ${name}()`);
  return m[0];
}

/** Every multi-line function of bin/walship, to be sourced before a call to one of them. */
export function launcherFunctions(): string {
  return [...text.matchAll(/^[a-z_]+\(\) \{[\s\S]*?^\}/gm)].map((m) => m[0]).join('\n');
}

/** The stand-in's stdout when the launcher hands the call to Node with these arguments. */
export const nodeRan = (args: string): string => `node ran: ${args}\n`;

/**
 * A copy of bin/walship in root/bin beside root/dist/main.mjs, a stand-in for
 * Node that prints nodeRan(its arguments), and an empty root/fake-bin for
 * programs a test puts first on PATH. Returns root/bin/walship.
 */
export function launcherCopy(root: string): string {
  mkdirSync(join(root, 'bin'), { recursive: true });
  mkdirSync(join(root, 'dist'), { recursive: true });
  mkdirSync(join(root, 'fake-bin'), { recursive: true });
  copyFileSync(LAUNCHER, join(root, 'bin', 'walship'));
  writeFileSync(join(root, 'dist', 'main.mjs'), "console.log('node ran: ' + process.argv.slice(2).join(' '));\n");
  return join(root, 'bin', 'walship');
}
