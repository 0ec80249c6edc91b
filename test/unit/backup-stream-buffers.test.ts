import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileChecksum } from '../../src/backup/file-checksum.js';
import { tarOfEntries } from '../../src/backup/parts.js';
import { readTar } from '../../src/backup/tar.js';
import type { ManifestFile } from '../../src/backup/pg-manifest.js';
import type { WalkEntry } from '../../src/backup/walk.js';
import { decodeObjectStream, ObjectEncoder, type DecodedSummary } from '../../src/codec/index.js';
import { createKeyFile, KeyfileProvider } from '../../src/crypto/index.js';

/**
 * Backup reads each part's files into one reused buffer, and the encoder
 * assembles chunks in one reused staging buffer (issue 11, peak RSS and
 * CPU): a piece handed on is valid only until the next is asked for. These
 * tests prove nothing is lost or mixed up by the reuse: what decodes is
 * exactly what was read, byte for byte, whatever the piece boundaries.
 */

let dir: string;
let keys: KeyfileProvider;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'walship-bufreuse-'));
  await createKeyFile(join(dir, 'key'));
  keys = await KeyfileProvider.load([join(dir, 'key')]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Compressible, page-like, and different everywhere (a swapped or repeated piece changes it). */
function content(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  for (let o = 0; o + 8 <= size; o += 512) {
    b.writeUInt32LE(o, o);
    b.writeUInt32LE(seed, o + 4);
  }
  return b;
}

async function decodeAll(pieces: Buffer[], name: string): Promise<{ content: Buffer; summary: DecodedSummary }> {
  let summary: DecodedSummary | undefined;
  const out: Buffer[] = [];
  for await (const c of decodeObjectStream(pieces, name, keys, undefined, (s) => (summary = s))) out.push(Buffer.from(c));
  return { content: Buffer.concat(out), summary: summary! };
}

describe('ObjectEncoder with a source that reuses its buffer', () => {
  for (const [label, compression, withKey] of [
    ['lz4, encrypted', 'lz4-frame', true],
    ['lz4, plain', 'lz4-frame', false],
    ['no compression, plain', 'none', false],
  ] as const) {
    it(`${label}: decodes to exactly the input, pieces of every size across chunk boundaries`, async () => {
      const chunkSize = 64 << 10;
      const input = Buffer.concat([content(300_000, 1), randomBytes(70_000), content(123_457, 2)]);
      const sizes = [1, 511, 512, 65_535, 65_536, 65_537, 100_000, 7, 130_000];
      const shared = Buffer.alloc(140_000);
      async function* source(): AsyncGenerator<Buffer> {
        let at = 0;
        for (let i = 0; at < input.length; i++) {
          const n = Math.min(sizes[i % sizes.length]!, input.length - at);
          input.copy(shared, 0, at, at + n);
          yield shared.subarray(0, n);
          // What a reusing reader does next: the bytes just handed on are overwritten.
          shared.fill(0xee, 0, n);
          at += n;
        }
      }
      const name = `reuse ${label}`;
      const enc = await ObjectEncoder.create({ name, compression, keys: withKey ? keys : undefined, createdBy: 'test', chunkSize });
      const stored: Buffer[] = [];
      for await (const p of enc.encode(source())) stored.push(Buffer.from(p));
      const { content: back, summary } = await decodeAll(stored, name);
      expect(back.equals(input)).toBe(true);
      expect(enc.summary().rawSize).toBe(input.length);
      expect(enc.summary().blake3).toBe(summary.header.blake3);
    });
  }
});

describe('tarOfEntries through the encoder', () => {
  it('a part of files larger and smaller than one read decodes to the files, with the manifest checksums of the files', async () => {
    const files: { path: string; data: Buffer }[] = [
      { path: 'base/1/16384', data: content((1 << 20) * 2 + 4321, 3) },
      { path: 'base/1/16385', data: content(8192, 4) },
      { path: 'base/1/16386', data: Buffer.alloc(0) },
      { path: 'base/1/16387', data: randomBytes((1 << 20) + 1) },
      { path: 'global/1262', data: content(777, 5) },
    ];
    const entries: WalkEntry[] = files.map((f, i) => {
      const abs = join(dir, `f${i}`);
      writeFileSync(abs, f.data);
      return { path: f.path, abs, type: 'file', mode: 0o600, size: f.data.length, mtime: 1_700_000_000 };
    });
    const manifest: ManifestFile[] = [];
    const name = 'backup tar reuse part 1';
    const enc = await ObjectEncoder.create({ name, compression: 'lz4-frame', keys, createdBy: 'test' });
    const stored: Buffer[] = [];
    for await (const p of enc.encode(tarOfEntries(entries, (f) => manifest.push(f)))) stored.push(Buffer.from(p));

    const { content: tar } = await decodeAll(stored, name);
    const seen = new Map<string, Buffer>();
    // take.ts ends each part with END_OF_ARCHIVE after the entries.
    for await (const e of readTar((async function* () {
      yield tar;
      yield Buffer.alloc(1024);
    })())) {
      const parts: Buffer[] = [];
      for await (const c of e.content) parts.push(Buffer.from(c));
      seen.set(e.path, Buffer.concat(parts));
    }
    for (const f of files) {
      expect(seen.get(f.path)?.equals(f.data), f.path).toBe(true);
      const sum = fileChecksum('CRC32C')!;
      sum.update(f.data);
      expect(manifest.find((m) => m.path === f.path)).toMatchObject({ algorithm: 'CRC32C', checksum: sum.hex() });
    }
  });
});
