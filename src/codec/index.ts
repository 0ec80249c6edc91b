export { encodeObject, decodeObject, readHeader, declaredObjectSize, ObjectDecodeError } from './object.js';
export type { EncodeInput, EncodedObject } from './object.js';
export type { ObjectHeader } from './format.js';
export { MAX_HEADER_BYTES, PROLOGUE_BYTES } from './format.js';
export type { CompressionName } from './compress.js';
export { blake3 } from './native.js';
