import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
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
  largeStreams: true,
});

it('leaves no temporary files behind', async () => {
  const root = mkdtempSync(join(base, 'tmpcheck-'));
  const s = new FsStore(root);
  await s.putIfAbsent('wal/00000001/x', Buffer.from('a'), {});
  await s.putIfAbsent('wal/00000001/x', Buffer.from('b'), {});
  expect(await readdir(join(root, 'wal/00000001'))).toEqual(['x']);
});

it('sweeps temporary files that killed writers left, and only old ones', async () => {
  const root = mkdtempSync(join(base, 'sweep-'));
  const s = new FsStore(root);
  await s.putIfAbsent('wal/00000001/x', Buffer.from('a'), {});
  const dir = join(root, 'wal/00000001');
  writeFileSync(join(dir, '.tmp.123.aaaa'), 'left by a killed push');
  writeFileSync(join(dir, '.tmp.456.bbbb'), 'being written right now');
  const old = new Date(Date.now() - 2 * 3600_000);
  utimesSync(join(dir, '.tmp.123.aaaa'), old, old);
  expect(await s.sweepTemporaries(dir, 3600_000)).toBe(1);
  expect((await readdir(dir)).sort()).toEqual(['.tmp.456.bbbb', 'x']);
});
