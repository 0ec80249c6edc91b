import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { commandContext, commandLogger } from '../../src/cli/context.js';
import { createKeyFile } from '../../src/crypto/index.js';
import { KeyError } from '../../src/errors.js';

/**
 * A second store whose key file cannot be loaded must not stop what the
 * first store alone can do (async archiving, restores it serves): the
 * context still opens, and only a use of the second store's keys fails,
 * saying which keys and what to check.
 */
const dir = mkdtempSync(join(tmpdir(), 'walship-store2-keys-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the second store\'s keys', () => {
  it('a missing WALSHIP_STORE2_KEY_FILE fails only where the second store\'s keys are used', async () => {
    const firstKey = join(dir, 'one.key');
    await createKeyFile(firstKey);
    const config = join(dir, 'walship.conf');
    writeFileSync(
      config,
      [
        `store = file://${join(dir, 'a')}`,
        'encryption = keyfile',
        `key-file = ${firstKey}`,
        `store2 = file://${join(dir, 'b')}`,
        'store2-mode = async',
        `store2-key-file = ${join(dir, 'missing.key')}`,
        `spool-dir = ${join(dir, 'spool')}`,
        '',
      ].join('\n'),
    );
    const ctx = await commandContext({ config }, commandLogger('test'));
    const context = { file: '000000010000000000000001', systemIdentifier: '7300000000000000001' };
    // The first store's keys work.
    await expect(ctx.keys!.newObjectKey(context)).resolves.toBeDefined();
    // The second store's say why they cannot.
    const err = await ctx.second!.keys!.newObjectKey(context).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeyError);
    expect((err as KeyError).message).toMatch(/the keys of the second store file:\/\/.*\/b cannot be loaded: .*missing\.key/);
    expect((err as KeyError).hint).toMatch(/WALSHIP_STORE2_KEY_FILE/);
    expect(ctx.second!.keys!.encrypts).toBe(true);
  });
});
