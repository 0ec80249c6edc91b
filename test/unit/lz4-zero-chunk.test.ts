import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { blake3, decodeObjectStream, ObjectDecodeError, ObjectEncoder, readHeader } from '../../src/codec/index.js';
import { lz4Native } from '../../src/codec/native.js';
import { createKeyFile, KeyfileProvider } from '../../src/crypto/index.js';
import { syntheticSegment } from '../support/synthetic-wal.js';

/**
 * Zero-filled chunks (the tail of every segment PostgreSQL switched before
 * it was full) are answered without lz4-napi's slow decode of long runs
 * (src/codec/lz4-chunk.ts): the result must be exactly what decoding gives,
 * and a damaged zero frame must still be decoded, and refused.
 */

const name = '000000010000000000000009';
const MiB = 1 << 20;
let dir: string;
let keys: KeyfileProvider;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'walship-zero-'));
  await createKeyFile(join(dir, 'k1'));
  keys = await KeyfileProvider.load([join(dir, 'k1')]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A 16 MiB segment switched early: WAL in its first MiB, zeros after. */
function switchedSegment(): Buffer {
  const seg = Buffer.alloc(16 * MiB);
  syntheticSegment({ name, segmentSize: MiB, fill: 77 }).copy(seg);
  return seg;
}

async function encode(data: Buffer, encrypted: boolean, chunkSize = MiB): Promise<Buffer> {
  const enc = await ObjectEncoder.create({ name, compression: 'lz4-frame', keys: encrypted ? keys : undefined, systemIdentifier: '7', createdBy: 't', chunkSize });
  const parts: Buffer[] = [];
  for await (const p of enc.encode([data])) parts.push(p);
  return Buffer.concat(parts);
}

async function decode(object: Buffer, encrypted: boolean): Promise<Buffer> {
  async function* one(): AsyncGenerator<Buffer> {
    yield object;
  }
  const out: Buffer[] = [];
  for await (const c of decodeObjectStream(one(), name, encrypted ? keys : undefined, '7', () => undefined)) out.push(c);
  return Buffer.concat(out);
}

describe('zero-filled chunks', () => {
  it.each([false, true])('a switched segment round-trips exactly, the zero chunks without the LZ4 decoder (encrypted: %s)', async (encrypted) => {
    const data = switchedSegment();
    const object = await encode(data, encrypted);
    const spy = vi.spyOn(lz4Native(), 'decompressFrameSync');
    try {
      const back = await decode(object, encrypted);
      expect(back.length).toBe(data.length);
      expect(blake3(back).equals(blake3(data))).toBe(true);
      // The one chunk with WAL in it, and at most once the zero frame itself (checked on first use).
      expect(spy.mock.calls.length).toBeGreaterThanOrEqual(1);
      expect(spy.mock.calls.length).toBeLessThanOrEqual(2);
    } finally {
      spy.mockRestore();
    }
  });

  it('a zero frame the library does not decode back to zeros is never used as a shortcut', async () => {
    // 512 KiB chunks: a size no other test here has made a zero frame for, so
    // the first decode call below is the one that checks the new zero frame.
    const data = Buffer.alloc(4 * MiB);
    const object = await encode(data, false, 512 << 10);
    const native = lz4Native();
    const real = native.decompressFrameSync.bind(native);
    const spy = vi.spyOn(native, 'decompressFrameSync').mockImplementationOnce((f: Buffer) => {
      const wrong = real(f);
      wrong[0] = 1;
      return wrong;
    });
    try {
      const back = await decode(object, false);
      expect(back.equals(data)).toBe(true);
      // The check, then every one of the 8 chunks through the decoder.
      expect(spy.mock.calls.length).toBe(1 + 8);
    } finally {
      spy.mockRestore();
    }
  });

  it('a damaged zero frame is decoded by LZ4 and refused, never answered with zeros', async () => {
    const data = Buffer.alloc(2 * MiB);
    const object = await encode(data, false);
    expect((await decode(object, false)).equals(data)).toBe(true);
    // The first chunk's frame: after the header, its record head (8 bytes) and length (4).
    const at = readHeader(object).headerBytes.length + 8;
    const frameLen = object.readUInt32LE(at);
    const frame = object.subarray(at + 4, at + 4 + frameLen);
    // Byte 12 of the frame is the first block's one literal (magic 4, descriptor 3, block size 4, token 1):
    // the byte every later byte of the block repeats. 0x00 -> 0x01 changes what decodes.
    expect(frame[12]).toBe(0);
    const damaged = Buffer.from(frame);
    damaged[12] = 1;
    let decodedDamaged: Buffer | undefined;
    try {
      decodedDamaged = lz4Native().decompressFrameSync(damaged);
    } catch {
      // the frame's content checksum caught it: what decodes has changed too
    }
    if (decodedDamaged) expect(decodedDamaged.equals(Buffer.alloc(MiB))).toBe(false);
    const bad = Buffer.from(object);
    damaged.copy(bad, at + 4);
    await expect(decode(bad, false)).rejects.toThrow(ObjectDecodeError);
  });
});
