/**
 * A child process for the KMS concurrency tests: one "walship process" that
 * encrypts `count` objects with a KmsProvider over a shared spool directory,
 * then prints the data key ids it used (JSON on stdout). Bundled with
 * esbuild by the test, because Node 20 cannot run TypeScript itself.
 */
import { KmsProvider } from '../../src/crypto/kms.js';

const [spoolDir, endpoint, keyId, count, maxObjects] = process.argv.slice(2);
const provider = new KmsProvider({
  keyId,
  region: 'us-east-1',
  endpoint,
  timeoutMs: 20_000,
  spoolDir: spoolDir!,
  cache: true,
  rotation: { maxAgeMs: 3600_000, maxObjects: Number(maxObjects ?? 0) },
});
const ids: string[] = [];
for (let i = 0; i < Number(count); i++) {
  const k = await provider.newObjectKey({ file: `00000001000000000000000${i % 10}`, systemIdentifier: '7300000000000000001' });
  ids.push(k.descriptor.id);
}
process.stdout.write(JSON.stringify(ids));
