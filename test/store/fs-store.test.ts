import { mkdtempSync, rmSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { FsStore } from '../../src/store/fs.js';
import { storeConformance } from './conformance.js';

const base = mkdtempSync(join(tmpdir(), 'walship-fsstore-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));
let n = 0;

storeConformance('file', {
  make: async () => new FsStore(mkdtempSync(join(base, `s${n++}-`))),
  makeBroken: async () => new FsStore(join(base, 'not-mounted')),
  atomicCreate: true,
  orderedListing: true,
});

it('leaves no temporary files behind', async () => {
  const root = mkdtempSync(join(base, 'tmpcheck-'));
  const s = new FsStore(root);
  await s.putIfAbsent('wal/00000001/x', Buffer.from('a'), {});
  await s.putIfAbsent('wal/00000001/x', Buffer.from('b'), {});
  expect(await readdir(join(root, 'wal/00000001'))).toEqual(['x']);
});
