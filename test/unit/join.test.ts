import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { joinArchive } from '../../src/archive/join.js';
import { ArchiveChangedError, ArchiveMissingError, InvalidInputError } from '../../src/errors.js';
import { createManifest, readManifest } from '../../src/pipeline/manifest.js';
import { FsStore } from '../../src/store/fs.js';
import { MANIFEST } from '../support/two-stores.js';

/** walship init --join: the second store takes the first store's archive id, once, and only if it is a store of its own. */
const dir = mkdtempSync(join(tmpdir(), 'walship-join-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function stores(label: string): { first: FsStore; second: FsStore; secondDir: string } {
  const a = join(dir, `${label}-a`);
  const b = join(dir, `${label}-b`);
  mkdirSync(a);
  mkdirSync(b);
  return { first: new FsStore(a), second: new FsStore(b), secondDir: b };
}

describe('joinArchive', () => {
  it('copies the archive id, then confirms; leaves no probe behind', async () => {
    const { first, second, secondDir } = stores('ok');
    await createManifest(first, MANIFEST);
    expect((await joinArchive(first, second)).outcome).toBe('joined');
    expect((await readManifest(second))?.archiveId).toBe(MANIFEST.archiveId);
    expect((await joinArchive(first, second)).outcome).toBe('existing');
    expect(readdirSync(secondDir).filter((n) => n !== '.walship-probe')).toEqual(['walship.json']); // .walship-probe: init's own store check
  });

  it('refuses a second name for the first store (a symlink to its directory)', async () => {
    const { first } = stores('same');
    await createManifest(first, MANIFEST);
    const alias = join(dir, 'same-alias');
    symlinkSync(join(dir, 'same-a'), alias);
    const err = await joinArchive(first, new FsStore(alias)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as Error).message).toMatch(/is the same store as/);
    expect(readdirSync(join(dir, 'same-a')).sort()).toEqual(['walship.json']);
  });

  it('refuses a second store holding another archive, and a first store holding none', async () => {
    const { first, second } = stores('other');
    await createManifest(first, MANIFEST);
    await createManifest(second, { ...MANIFEST, archiveId: '0edcba9876543210fedcba9876543210', systemIdentifier: '7300000000000000999' });
    await expect(joinArchive(first, second)).rejects.toBeInstanceOf(ArchiveChangedError);
    const empty = stores('empty');
    await expect(joinArchive(empty.first, empty.second)).rejects.toBeInstanceOf(ArchiveMissingError);
  });
});
