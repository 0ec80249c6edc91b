import { statSync } from 'node:fs';
import { DEFAULT_CONFIG_FILE } from '../config/index.js';

/**
 * The agent reads its configuration once. A config file that changes
 * afterwards (another store, other keys) makes it exit, so that the next
 * push call starts one with the new settings; the environment cannot change
 * under a running process.
 */
export function configFileStamp(explicit: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const path = explicit ?? (env.WALSHIP_CONFIG || DEFAULT_CONFIG_FILE);
  try {
    const st = statSync(path);
    return `${path}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
  } catch {
    return `${path}:absent`;
  }
}
