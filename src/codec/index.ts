export { encodeObject, encodeObjectV1, decodeObject, decodeObjectStream, readHeader, declaredObjectSize, ObjectDecodeError } from './object.js';
export { ObjectEncoder, inspectTrailer, type EncodeSummary, type DecodedSummary } from './stream.js';
export type { EncodeInput, EncodedObject } from './object.js';
export type { ObjectHeader, StoredHeader, HeaderV2 } from './format.js';
export { MAX_HEADER_BYTES, PROLOGUE_BYTES } from './format.js';
export type { CompressionName } from './compress.js';
export { blake3 } from './native.js';
