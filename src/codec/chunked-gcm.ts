import { createCipheriv, createDecipheriv } from 'node:crypto';

/**
 * AES-256-GCM over fixed-size chunks, in the manner of the STREAM
 * construction: chunk i is sealed with nonce = (i as 88-bit big-endian) ||
 * final-flag byte, and every chunk authenticates the object header as
 * associated data. So a reader can verify chunk by chunk while streaming, and
 * reordered, dropped, duplicated or truncated chunks, or an altered header,
 * all fail authentication. The key is unique per object (see crypto/), which
 * is what makes counter nonces safe.
 */

export const TAG_BYTES = 16;
export const DEFAULT_CHUNK_BYTES = 1 << 20;

export function nonce(index: number, final: boolean): Buffer {
  const n = Buffer.alloc(12);
  n.writeUIntBE(index, 5, 6);
  n[11] = final ? 1 : 0;
  return n;
}

export function sealedSize(plainBytes: number, chunkBytes: number): number {
  const chunks = Math.max(1, Math.ceil(plainBytes / chunkBytes));
  return plainBytes + chunks * TAG_BYTES;
}

export function seal(key: Buffer, aad: Buffer, plain: Buffer, chunkBytes: number): Buffer {
  const out = Buffer.allocUnsafe(sealedSize(plain.length, chunkBytes));
  let o = 0;
  let index = 0;
  for (let p = 0; ; index++) {
    const end = Math.min(p + chunkBytes, plain.length);
    const final = end === plain.length;
    const c = createCipheriv('aes-256-gcm', key, nonce(index, final));
    c.setAAD(aad);
    o += c.update(plain.subarray(p, end)).copy(out, o);
    o += c.final().copy(out, o);
    o += c.getAuthTag().copy(out, o);
    p = end;
    if (final) break;
  }
  return out.subarray(0, o);
}

export class AuthenticationError extends Error {}

export function open(key: Buffer, aad: Buffer, sealed: Buffer, chunkBytes: number): Buffer {
  const out = Buffer.allocUnsafe(Math.max(0, sealed.length));
  let o = 0;
  let index = 0;
  for (let s = 0; ; index++) {
    const remaining = sealed.length - s;
    if (remaining < TAG_BYTES) throw new AuthenticationError(`chunk ${index} is truncated`);
    const len = Math.min(chunkBytes, remaining - TAG_BYTES);
    // The chunk that reaches the end of the input must be the one sealed as final.
    const final = s + len + TAG_BYTES === sealed.length;
    const d = createDecipheriv('aes-256-gcm', key, nonce(index, final));
    d.setAAD(aad);
    d.setAuthTag(sealed.subarray(s + len, s + len + TAG_BYTES));
    try {
      o += d.update(sealed.subarray(s, s + len)).copy(out, o);
      o += d.final().copy(out, o);
    } catch {
      throw new AuthenticationError(`chunk ${index} failed authentication`);
    }
    s += len + TAG_BYTES;
    if (final) break;
  }
  return out.subarray(0, o);
}

/** One chunk of the v2 stream: ciphertext then tag, under nonce (index, final). */
export function sealChunk(key: Buffer, aad: Buffer, index: number, final: boolean, plain: Buffer): Buffer {
  return Buffer.concat(sealChunkParts(key, aad, index, final, plain));
}

/**
 * sealChunk's bytes as pieces (ciphertext, tag), for a caller that copies
 * them into a record anyway: one copy of the chunk fewer.
 */
export function sealChunkParts(key: Buffer, aad: Buffer, index: number, final: boolean, plain: Buffer): Buffer[] {
  const c = createCipheriv('aes-256-gcm', key, nonce(index, final));
  c.setAAD(aad);
  const head = c.update(plain);
  const tail = c.final(); // empty for GCM, which is a stream mode
  return tail.length === 0 ? [head, c.getAuthTag()] : [head, tail, c.getAuthTag()];
}

export function openChunk(key: Buffer, aad: Buffer, index: number, final: boolean, sealed: Buffer): Buffer {
  if (sealed.length < TAG_BYTES) throw new AuthenticationError(`chunk ${index} is shorter than its tag`);
  const len = sealed.length - TAG_BYTES;
  const d = createDecipheriv('aes-256-gcm', key, nonce(index, final));
  d.setAAD(aad);
  d.setAuthTag(sealed.subarray(len));
  try {
    const head = d.update(sealed.subarray(0, len));
    const tail = d.final(); // empty for GCM: no copy then
    return tail.length === 0 ? head : Buffer.concat([head, tail]);
  } catch {
    throw new AuthenticationError(`chunk ${index} failed authentication${final ? ' as the last chunk' : ''}`);
  }
}
