import { hkdfSync, randomBytes } from 'node:crypto';

/**
 * Per-object keys: HKDF-SHA256(ikm = a 256-bit master or data key, salt = 32
 * random bytes, info = "walship object key v1"). A fresh salt per object
 * makes every object key unique with overwhelming probability, whichever
 * process or host encrypts and however often one crashes, which is what lets
 * the chunked cipher use counter nonces.
 */

const HKDF_INFO = Buffer.from('walship object key v1');
export const SALT_BYTES = 32;

export function newSalt(): Buffer {
  return randomBytes(SALT_BYTES);
}

export function deriveObjectKey(master: Buffer, salt: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', master, salt, HKDF_INFO, 32));
}
