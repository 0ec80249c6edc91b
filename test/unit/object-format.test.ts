import { mkdtempSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// These tests build v1 objects (what walship wrote before format 2) and prove
// they are still read; format 2 has its own tests (object-format-v2.test.ts).
import { decodeObject, encodeObjectV1 as encodeObject, ObjectDecodeError, readHeader } from '../../src/codec/index.js';
import { TAG_BYTES } from '../../src/codec/chunked-gcm.js';
import { createKeyFile, KeyfileProvider } from '../../src/crypto/index.js';
import { KeyError } from '../../src/errors.js';
import { syntheticSegment } from '../support/synthetic-wal.js';

const name = '000000010000000000000007';
let dir: string;
let keys: KeyfileProvider;
let otherKeys: KeyfileProvider;
let bothKeys: KeyfileProvider;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'walship-codec-'));
  await createKeyFile(join(dir, 'k1'));
  await createKeyFile(join(dir, 'k2'));
  keys = await KeyfileProvider.load([join(dir, 'k1')]);
  otherKeys = await KeyfileProvider.load([join(dir, 'k2')]);
  bothKeys = await KeyfileProvider.load([join(dir, 'k2'), join(dir, 'k1')]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A segment that compresses to several 1 MiB cipher chunks. */
function bigSegment(): Buffer {
  return syntheticSegment({ name, segmentSize: 4 << 20, fill: 99 });
}

async function encrypted(data = bigSegment()) {
  return encodeObject({ name, data, compression: 'lz4-frame', keys, createdBy: 'test' });
}

describe('object format v1 round trip', () => {
  it.each([
    ['lz4-frame', undefined],
    ['none', undefined],
    ['lz4-frame', 'keyfile'],
    ['none', 'keyfile'],
  ] as const)('compression %s, encryption %s', async (compression, enc) => {
    const data = bigSegment();
    const k = enc ? keys : undefined;
    const o = await encodeObject({ name, data, compression, keys: k, systemIdentifier: '42', createdBy: 'test' });
    expect(o.header).toMatchObject({ name, rawSize: data.length, compression, systemIdentifier: '42' });
    expect(o.header.encryption).toBe(enc ? 'aes-256-gcm-chunked' : 'none');
    const back = await decodeObject(o.bytes, name, k);
    expect(back.data.equals(data)).toBe(true);
  });

  it('round-trips an empty file and a chunk-aligned body', async () => {
    for (const size of [0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 2 << 20]) {
      const data = Buffer.alloc(size, 7);
      const o = await encodeObject({ name: '00000002.history', data, compression: 'none', keys, createdBy: 't' });
      expect((await decodeObject(o.bytes, '00000002.history', keys)).data.equals(data)).toBe(true);
    }
  });

  it('writes standard LZ4 frames and the BLAKE3 of the raw bytes', async () => {
    const o = await encodeObject({ name, data: bigSegment(), compression: 'lz4-frame', keys: undefined, createdBy: 't' });
    const { headerBytes } = readHeader(o.bytes);
    expect(o.bytes.readUInt32LE(headerBytes.length)).toBe(0x184d2204); // LZ4 frame magic
    expect(o.header.blake3).toMatch(/^[0-9a-f]{64}$/);
  });

  it('never stores plaintext when encrypted', async () => {
    const data = Buffer.alloc(2 << 20, 0);
    data.write('VERY-RECOGNISABLE-PAGE-CONTENT', 4096);
    const o = await encodeObject({ name, data, compression: 'none', keys, createdBy: 't' });
    expect(o.bytes.includes(Buffer.from('VERY-RECOGNISABLE'))).toBe(false);
  });

  it('uses a fresh key per object: the same input never encrypts to the same bytes', async () => {
    const data = bigSegment();
    const a = await encrypted(data);
    const b = await encrypted(data);
    expect(a.header.key).not.toEqual(b.header.key);
    const bodyA = a.bytes.subarray(readHeader(a.bytes).headerBytes.length);
    const bodyB = b.bytes.subarray(readHeader(b.bytes).headerBytes.length);
    expect(bodyA.subarray(0, 64).equals(bodyB.subarray(0, 64))).toBe(false);
  });

  it('decrypts with any configured key, by key id (rotation)', async () => {
    const o = await encrypted();
    expect((await decodeObject(o.bytes, name, bothKeys)).data.length).toBe(4 << 20);
    await expect(decodeObject(o.bytes, name, otherKeys)).rejects.toThrow(KeyError);
    await expect(decodeObject(o.bytes, name, undefined)).rejects.toThrow(/no key is configured/);
  });
});

describe('every tampering is detected', () => {
  async function expectRejected(bytes: Buffer, k = keys as KeyfileProvider | undefined, expectedName = name) {
    await expect(decodeObject(bytes, expectedName, k)).rejects.toThrow(ObjectDecodeError);
  }

  it('a flipped bit anywhere in an encrypted object', async () => {
    const o = await encrypted();
    const hb = readHeader(o.bytes).headerBytes.length;
    // Header JSON, first chunk, a middle chunk, the last tag.
    for (const at of [12, hb - 2, hb + 5, hb + (1 << 20) + 100, o.bytes.length - 1]) {
      const t = Buffer.from(o.bytes);
      t[at]! ^= 0x01;
      await expect(decodeObject(t, name, keys), `offset ${at}`).rejects.toThrow();
    }
  });

  it('truncation at and between chunk boundaries', async () => {
    const o = await encrypted();
    const hb = readHeader(o.bytes).headerBytes.length;
    const chunk = (1 << 20) + TAG_BYTES;
    for (const len of [hb, hb + 10, hb + chunk, hb + chunk + 1, o.bytes.length - 1]) {
      await expectRejected(o.bytes.subarray(0, len));
    }
  });

  it('truncation hidden by a matching header (bodySize edited) still fails authentication', async () => {
    const data = bigSegment();
    const o = await encodeObject({ name, data, compression: 'none', keys, createdBy: 't' });
    const { header, headerBytes } = readHeader(o.bytes);
    expect(header.bodySize).toBeGreaterThan(2 * ((1 << 20) + TAG_BYTES));
    const cut = 2 * ((1 << 20) + TAG_BYTES);
    const forged = JSON.stringify({ ...header, bodySize: cut });
    const prologue = Buffer.from(headerBytes.subarray(0, 12));
    prologue.writeUInt32BE(Buffer.byteLength(forged), 8);
    const t = Buffer.concat([prologue, Buffer.from(forged), o.bytes.subarray(headerBytes.length, headerBytes.length + cut)]);
    await expectRejected(t);
  });

  it('reordered and duplicated chunks', async () => {
    const o = await encodeObject({ name, data: bigSegment(), compression: 'none', keys, createdBy: 't' });
    const hb = readHeader(o.bytes).headerBytes.length;
    const c = (1 << 20) + TAG_BYTES;
    const h = o.bytes.subarray(0, hb);
    const c0 = o.bytes.subarray(hb, hb + c);
    const c1 = o.bytes.subarray(hb + c, hb + 2 * c);
    const rest = o.bytes.subarray(hb + 2 * c);
    await expectRejected(Buffer.concat([h, c1, c0, rest]));
    await expectRejected(Buffer.concat([h, c0, c0, rest]));
  });

  it('an object copied under another name', async () => {
    const o = await encrypted();
    await expectRejected(o.bytes, keys, '000000010000000000000008');
  });

  it('corruption of an unencrypted object (LZ4 checksum, BLAKE3, length)', async () => {
    const o = await encodeObject({ name, data: bigSegment(), compression: 'lz4-frame', keys: undefined, createdBy: 't' });
    const hb = readHeader(o.bytes).headerBytes.length;
    for (const at of [hb + 20, hb + 5000, o.bytes.length - 6]) {
      const t = Buffer.from(o.bytes);
      t[at]! ^= 0x40;
      await expectRejected(t, undefined);
    }
    await expectRejected(o.bytes.subarray(0, o.bytes.length - 100), undefined);
    await expectRejected(Buffer.concat([o.bytes, Buffer.from('x')]), undefined);
    const plain = await encodeObject({ name, data: bigSegment(), compression: 'none', keys: undefined, createdBy: 't' });
    const t = Buffer.from(plain.bytes);
    t[t.length - 10]! ^= 1;
    await expect(decodeObject(t, name, undefined)).rejects.toThrow(/BLAKE3 mismatch/);
  });

  it('garbage, a foreign format and a future version', async () => {
    await expectRejected(Buffer.from('not an object at all'));
    await expectRejected(Buffer.alloc(0));
    const o = await encrypted();
    const future = Buffer.from(o.bytes);
    future[7] = 3;
    await expect(decodeObject(future, name, keys)).rejects.toThrow(/version 3 is not supported/);
    const huge = Buffer.from(o.bytes);
    huge.writeUInt32BE(0x7fffffff, 8);
    await expect(decodeObject(huge, name, keys)).rejects.toThrow(/exceeds/);
  });
});

describe('key files', () => {
  it('are created 0600 and never overwritten', async () => {
    const p = join(dir, 'k3');
    const id = await createKeyFile(p);
    expect(id).toMatch(/^[0-9a-f]{16}$/);
    expect(statSync(p).mode & 0o777).toBe(0o600);
    await expect(createKeyFile(p)).rejects.toThrow(/already exists/);
  });

  it('refuses a key file others can read, and a damaged one', async () => {
    const p = join(dir, 'k4');
    await createKeyFile(p);
    chmodSync(p, 0o644);
    await expect(KeyfileProvider.load([p])).rejects.toThrow(/readable by others/);
    const bad = join(dir, 'k5');
    writeFileSync(bad, 'walship-key-v1 0000000000000000 AAAA\n', { mode: 0o600 });
    await expect(KeyfileProvider.load([bad])).rejects.toThrow(/not a valid walship key file/);
    await expect(KeyfileProvider.load([join(dir, 'missing')])).rejects.toThrow(/cannot read key file/);
  });
});
