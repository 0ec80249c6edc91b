import { describe, expect, it } from 'vitest';
import { legacyArchiveId, manifestFor, readManifest } from '../../src/pipeline/manifest.js';
import type { Store } from '../../src/store/index.js';
import { parseLongHeader } from '../../src/wal/index.js';
import { syntheticSegment } from '../support/synthetic-wal.js';

/** Only what readManifest uses. */
function storeWith(bytes: Buffer | undefined): Store {
  return { description: 'mem://', get: async () => bytes } as unknown as Store;
}

describe('archive manifest and its id', () => {
  const header = parseLongHeader(syntheticSegment({ name: '000000010000000000000001' }));

  it('a new archive gets a random id, written in a manifest older walship versions still accept (format 1)', async () => {
    const a = manifestFor(header, 'test');
    const b = manifestFor(header, 'test');
    expect(a.archiveId).toMatch(/^0[0-9a-f]{31}$/);
    expect(a.archiveId).not.toBe(b.archiveId);
    expect(a.walship).toBe(1);
    const read = await readManifest(storeWith(Buffer.from(JSON.stringify(a))));
    expect(read?.archiveId).toBe(a.archiveId);
  });

  it('an archive made before ids existed gets a stable id derived from its exact bytes, never equal to a random one', async () => {
    const { archiveId: _none, ...old } = manifestFor(header, 'walship/0.1.0');
    const bytes = Buffer.from(`${JSON.stringify(old, null, 2)}\n`);
    const first = await readManifest(storeWith(bytes));
    const again = await readManifest(storeWith(Buffer.from(bytes)));
    expect(first?.archiveId).toBe(legacyArchiveId(bytes));
    expect(first?.archiveId).toMatch(/^1[0-9a-f]{31}$/);
    expect(again?.archiveId).toBe(first?.archiveId);
    // Any other manifest (another cluster, or the same one re-created later) has another id.
    const other = Buffer.from(`${JSON.stringify({ ...old, createdAt: 'later' }, null, 2)}\n`);
    expect((await readManifest(storeWith(other)))?.archiveId).not.toBe(first?.archiveId);
  });

  it('refuses a manifest whose id is malformed or pretends to be a derived one', async () => {
    const m = manifestFor(header, 'test');
    for (const archiveId of ['xyz', `1${'0'.repeat(31)}`, 42]) {
      await expect(readManifest(storeWith(Buffer.from(JSON.stringify({ ...m, archiveId }))))).rejects.toThrow(/damaged/);
    }
  });
});
