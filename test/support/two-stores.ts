import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createKeyFile, KeyfileProvider } from '../../src/crypto/index.js';
import { createManifest, type ArchiveManifest } from '../../src/pipeline/manifest.js';
import { FsStore } from '../../src/store/fs.js';
import { FailingStore } from './failing-store.js';
import { syntheticSegment } from './synthetic-wal.js';

/**
 * Two file stores in one archive, each with a key file of its own, for
 * unit tests of what walship does with a second store. Each store can be
 * taken down (FailingStore.down).
 */
export const SEGMENT_SIZE = 1 << 20;

export const MANIFEST: ArchiveManifest = {
  walship: 1,
  archiveId: '0123456789abcdef0123456789abcdef',
  systemIdentifier: '7300000000000000001',
  pgMajor: 15,
  walPageMagic: '0xd110',
  segmentSize: SEGMENT_SIZE,
  walBlockSize: 8192,
  createdAt: 'x',
  createdBy: 'x',
};

export interface TestStore {
  readonly root: string;
  readonly store: FailingStore;
  readonly keys: KeyfileProvider;
}

export interface TwoStores {
  readonly dir: string;
  readonly first: TestStore;
  readonly second: TestStore;
  /** A synthetic segment in a pg_wal of its own; returns its path. */
  segment(name: string, fill?: number): string;
  cleanup(): void;
}

async function oneStore(dir: string, label: string, manifest: ArchiveManifest | null): Promise<TestStore> {
  const root = join(dir, label);
  mkdirSync(root);
  await createKeyFile(join(dir, `${label}.key`));
  const keys = await KeyfileProvider.load([join(dir, `${label}.key`)]);
  const fs = new FsStore(root);
  if (manifest) await createManifest(fs, manifest);
  return { root, store: new FailingStore(fs, `file://${root}`), keys };
}

/** `secondManifest`: the second store's archive (null: it has not joined). */
export async function twoStores(secondManifest: ArchiveManifest | null = MANIFEST): Promise<TwoStores> {
  const dir = mkdtempSync(join(tmpdir(), 'walship-two-stores-'));
  const first = await oneStore(dir, 'first', MANIFEST);
  const second = await oneStore(dir, 'second', secondManifest);
  mkdirSync(join(dir, 'pg_wal'));
  return {
    dir,
    first,
    second,
    segment(name, fill = 3) {
      const p = join(dir, 'pg_wal', name);
      writeFileSync(p, syntheticSegment({ name, segmentSize: SEGMENT_SIZE, fill }));
      return p;
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
