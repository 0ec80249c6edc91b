import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  blake3,
  decodeObject,
  decodeObjectStream,
  encodeObjectV1,
  ObjectDecodeError,
  ObjectEncoder,
  readHeader,
  type DecodedSummary,
} from '../../src/codec/index.js';
import { createKeyFile, KeyfileProvider } from '../../src/crypto/index.js';
import { syntheticSegment } from '../support/synthetic-wal.js';

const name = '000000010000000000000009';
const CHUNK = 64 << 10;
let dir: string;
let keys: KeyfileProvider;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'walship-v2-'));
  await createKeyFile(join(dir, 'k1'));
  keys = await KeyfileProvider.load([join(dir, 'k1')]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Real-looking WAL (compressible, with varied pages) of `size` bytes. */
function content(size: number): Buffer {
  const seg = syntheticSegment({ name, segmentSize: 1 << 20, fill: 77 });
  const out = Buffer.alloc(size);
  for (let o = 0; o < size; o += seg.length) seg.copy(out, o, 0, Math.min(seg.length, size - o));
  // Make every chunk distinct, so that swapping two changes the content.
  for (let o = 0; o + 8 <= size; o += 4096) out.writeUInt32LE(o, o + 4);
  return out;
}

interface Encoded {
  readonly bytes: Buffer;
  /** Offsets where one record ends and the next begins (header end first, trailer start last). */
  readonly boundaries: number[];
}

async function encode(data: Buffer, encrypted: boolean, compression: 'lz4-frame' | 'none' = 'lz4-frame', readPiece = 100_000): Promise<Encoded> {
  const enc = await ObjectEncoder.create({ name, compression, keys: encrypted ? keys : undefined, systemIdentifier: '7', createdBy: 't', chunkSize: CHUNK });
  async function* source(): AsyncGenerator<Buffer> {
    for (let o = 0; o < data.length; o += readPiece) yield data.subarray(o, Math.min(o + readPiece, data.length));
  }
  const parts: Buffer[] = [];
  const boundaries: number[] = [];
  let at = 0;
  for await (const p of enc.encode(source())) {
    parts.push(p);
    at += p.length;
    boundaries.push(at);
  }
  boundaries.pop(); // the end of the object is not a cut
  const bytes = Buffer.concat(parts);
  expect(enc.summary().storedBytes).toBe(bytes.length);
  expect(enc.summary().rawSize).toBe(data.length);
  expect(enc.summary().blake3).toBe(blake3(data).toString('hex'));
  return { bytes, boundaries };
}

/** Decodes through the streaming decoder, fed in pieces of `piece` bytes. */
async function streamDecode(bytes: Buffer, piece = 7_777): Promise<{ data: Buffer; summary: DecodedSummary }> {
  async function* src(): AsyncGenerator<Buffer> {
    for (let o = 0; o < bytes.length; o += piece) yield bytes.subarray(o, Math.min(o + piece, bytes.length));
  }
  let summary: DecodedSummary | undefined;
  const out: Buffer[] = [];
  for await (const c of decodeObjectStream(src(), name, keys, '7', (s) => (summary = s))) out.push(c);
  if (!summary) throw new Error('decoder returned without a summary');
  return { data: Buffer.concat(out), summary };
}

async function refused(bytes: Buffer, pattern?: RegExp): Promise<void> {
  const p = streamDecode(bytes);
  await expect(p).rejects.toBeInstanceOf(ObjectDecodeError);
  if (pattern) await expect(p).rejects.toThrow(pattern);
}

describe('object format v2', () => {
  for (const encrypted of [false, true]) {
    for (const compression of ['lz4-frame', 'none'] as const) {
      it(`round-trips (${compression}, ${encrypted ? 'encrypted' : 'plain'}), any size, any piece size`, async () => {
        for (const size of [0, 1, CHUNK, 3 * CHUNK, 5 * CHUNK + 123]) {
          const data = content(size);
          const o = await encode(data, encrypted, compression, size > 0 ? 1 + (size % 50_000) : 1);
          expect(readHeader(o.bytes).header.format).toBe(2);
          const a = await streamDecode(o.bytes);
          expect(a.data.equals(data)).toBe(true);
          expect(a.summary.header.rawSize).toBe(size);
          expect(a.summary.header.blake3).toBe(blake3(data).toString('hex'));
          expect(a.summary.storedBytes).toBe(o.bytes.length);
          const b = await decodeObject(o.bytes, name, keys, '7');
          expect(b.data.equals(data)).toBe(true);
        }
      });
    }
  }

  it('refuses a truncation at every record boundary and inside records', async () => {
    for (const encrypted of [false, true]) {
      const o = await encode(content(4 * CHUNK + 999), encrypted);
      // header end, four full chunks, one short chunk: six cuts before the trailer
      expect(o.boundaries).toHaveLength(6);
      for (const cut of o.boundaries) await refused(o.bytes.subarray(0, cut), /truncated/);
      for (const cut of [13, o.boundaries[0]! + 3, o.boundaries[2]! + 9, o.bytes.length - 1]) await refused(o.bytes.subarray(0, cut));
      // Truncation errors say so: push reads them as an interrupted upload.
      const err = await streamDecode(o.bytes.subarray(0, o.boundaries[3]!)).catch((e: unknown) => e);
      expect((err as ObjectDecodeError).truncated).toBe(true);
      // And nothing may follow the trailer.
      await refused(Buffer.concat([o.bytes, Buffer.from([0])]), /follow the trailer/);
    }
  });

  it('encrypted: a flipped byte in any record, the header, or the trailer fails authentication', async () => {
    const o = await encode(content(3 * CHUNK + 5), true);
    const starts = [0, ...o.boundaries];
    const spots = [20, ...starts.slice(1).map((s) => s + 20), o.bytes.length - 3];
    for (const at of spots) {
      const t = Buffer.from(o.bytes);
      t[at]! ^= 0x01;
      await refused(t);
    }
    // Two data records swapped: both lengths are valid, each is authentic, but not at that index.
    const [h, c0, c1] = [o.boundaries[0]!, o.boundaries[1]!, o.boundaries[2]!];
    const swapped = Buffer.concat([o.bytes.subarray(0, h), o.bytes.subarray(c0, c1), o.bytes.subarray(h, c0), o.bytes.subarray(c1)]);
    await refused(swapped, /authentication/);
    // A trailer cut from another object of the same name and key cannot be grafted on.
    const other = await encode(content(3 * CHUNK + 5), true);
    const graft = Buffer.concat([o.bytes.subarray(0, o.boundaries.at(-1)!), other.bytes.subarray(other.boundaries.at(-1)!)]);
    await refused(graft, /authentication/);
  });

  it('plain: a changed chunk that still decodes, a swapped pair or an edited trailer is refused', async () => {
    const data = content(3 * CHUNK + 5);
    const o = await encode(data, false);
    // Chunk 1 replaced by a well-formed frame of other content (what a bit flip that
    // still decodes would give): only the trailer's BLAKE3 can notice.
    const changed = Buffer.from(data);
    changed[CHUNK + 5000]! ^= 0xff;
    const c = await encode(changed, false);
    const [h, c0, c1] = [o.boundaries[0]!, o.boundaries[1]!, o.boundaries[2]!];
    const forged = Buffer.concat([o.bytes.subarray(0, c0), c.bytes.subarray(c.boundaries[1]!, c.boundaries[2]!), o.bytes.subarray(c1)]);
    expect(forged.equals(o.bytes)).toBe(false);
    await refused(forged, /BLAKE3 mismatch/);
    const swapped = Buffer.concat([o.bytes.subarray(0, h), o.bytes.subarray(c0, c1), o.bytes.subarray(h, c0), o.bytes.subarray(c1)]);
    await refused(swapped, /BLAKE3 mismatch/);
    const trailer = o.bytes.subarray(o.boundaries.at(-1)!).toString('latin1');
    const edited = Buffer.from(trailer.replace(/"rawSize":\d+/, `"rawSize":${data.length - 5}`), 'latin1');
    await refused(Buffer.concat([o.bytes.subarray(0, o.boundaries.at(-1)!), edited]));
    // A byte flipped inside an LZ4 frame: the frame's own checksum refuses it.
    const flipped = Buffer.from(o.bytes);
    flipped[c0 + 200]! ^= 0x10;
    await refused(flipped);
  });

  it('encrypted objects carry no plain BLAKE3 of their content, only a keyed MAC', async () => {
    const data = content(2 * CHUNK);
    const o = await encode(data, true);
    const digest = blake3(data);
    expect(o.bytes.includes(digest)).toBe(false);
    expect(o.bytes.includes(Buffer.from(digest.toString('hex')))).toBe(false);
    const plain = await encode(data, false);
    expect(plain.bytes.includes(Buffer.from(digest.toString('hex')))).toBe(true);
  });

  it('still reads v1 objects, plain and encrypted', async () => {
    const data = content(3 * CHUNK + 17);
    for (const k of [undefined, keys]) {
      const v1 = await encodeObjectV1({ name, data, compression: 'lz4-frame', keys: k, createdBy: 'old' });
      expect(readHeader(v1.bytes).header.format).toBe(1);
      const r = await streamDecode(v1.bytes, 4096);
      expect(r.data.equals(data)).toBe(true);
      await refused(v1.bytes.subarray(0, v1.bytes.length - 1), /truncated/);
    }
  });

  it('an unencrypted lz4 body is an ordinary LZ4 stream: `lz4 -d` decodes it by hand', async () => {
    const data = content(3 * CHUNK + 321);
    const o = await encode(data, false);
    const body = o.bytes.subarray(o.boundaries[0]!);
    const out = execFileSync('lz4', ['-d', '-c'], { input: body, maxBuffer: 64 << 20 });
    expect(out.equals(data)).toBe(true);
  });
});
