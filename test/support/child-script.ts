import { join } from 'node:path';
import { build } from 'esbuild';

/**
 * Bundles a test-support entry (e.g. kms-child.ts) into one ESM file that a
 * plain `node` child process can run, so that tests can start several real
 * processes against walship's modules at once.
 */
export async function bundleChildScript(entryName: string, outfile: string): Promise<string> {
  await build({
    entryPoints: [join(import.meta.dirname, entryName)],
    outfile,
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    logLevel: 'silent',
    banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
    nodePaths: [join(import.meta.dirname, '..', '..', 'node_modules')],
  });
  return outfile;
}
