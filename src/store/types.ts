import type { Readable } from 'node:stream';

/**
 * The one interface every storage driver implements. Keys are '/'-separated
 * relative paths chosen by the archive layout; drivers never interpret them.
 *
 * Contract (the conformance suite in test/store/ checks it for each driver):
 * - get/head/getPrefix resolve `undefined` when the object does not exist, and
 *   throw StoreUnavailableError for anything else (never "absent" on error).
 * - putIfAbsent never replaces an existing object; it resolves 'exists' then.
 *   'created' means the store has confirmed the write durable.
 * - list yields keys under a prefix in lexicographic order, with each
 *   object's size and last-modified time (when it was stored).
 * - deleteMany deletes every key given, in that order as far as the store
 *   allows; absent keys are not an error. It resolves only when the store
 *   has confirmed every deletion and throws StoreUnavailableError otherwise
 *   (some of the keys may then be gone).
 * - putStreamIfAbsent is putIfAbsent for a body that arrives in pieces: it
 *   reads `source` once, holds at most a bounded part of it in memory, and
 *   has the same answers ('exists' leaves the stored object alone; 'created'
 *   only once durable; a source that throws fails the write and leaves no
 *   object). A failed write may leave invisible debris (a temporary file, an
 *   unfinished multipart upload) that the driver cleans up later.
 * - getStream is get as a stream: undefined for "absent", a throw for a
 *   store that cannot answer, and a stream that errors (never ends early
 *   and quietly) when the transfer breaks half-way.
 * - makeDurable makes an object that is already there as durable as a
 *   'created' answer would: a name a killed writer left may not have
 *   reached stable storage, and "already archived" must not trust it.
 */

export interface ObjectInfo {
  readonly size: number;
  /** User metadata stored with the object; undefined if the driver keeps none. */
  readonly metadata: Readonly<Record<string, string>> | undefined;
}

export interface ListedObject {
  readonly key: string;
  readonly size: number;
  /** When the object was stored (S3 LastModified, file mtime): prune --keep-days reads it. */
  readonly lastModified: Date;
}

/** A body that arrives in pieces: read once, front to back. */
export type ByteSource = AsyncIterable<Buffer>;

export interface Store {
  /** Where the store is, for logs and messages (no credentials). */
  readonly description: string;
  head(key: string): Promise<ObjectInfo | undefined>;
  get(key: string): Promise<Buffer | undefined>;
  /** The first `length` bytes (fewer if the object is shorter). */
  getPrefix(key: string, length: number): Promise<Buffer | undefined>;
  /** The last `length` bytes (all of it if the object is shorter): where a format 2 object keeps its trailer. */
  getSuffix(key: string, length: number): Promise<Buffer | undefined>;
  putIfAbsent(key: string, body: Buffer, metadata: Readonly<Record<string, string>>): Promise<'created' | 'exists'>;
  /**
   * Streams `source` into `key`. `sizeHint` is the body's length when the
   * caller knows it (undefined otherwise): S3 uses it to choose a single PUT
   * or a multipart upload up front.
   */
  putStreamIfAbsent(key: string, source: ByteSource, sizeHint: number | undefined, metadata: Readonly<Record<string, string>>): Promise<'created' | 'exists'>;
  /** The object as a stream of chunks, or undefined when it does not exist. */
  getStream(key: string): Promise<Readable | undefined>;
  /** Makes an existing object durable (file store: fsync it and its directories); throws StoreUnavailableError if it cannot. */
  makeDurable(key: string): Promise<void>;
  list(prefix: string): AsyncIterable<ListedObject>;
  delete(key: string): Promise<void>;
  /** Batched delete (S3 DeleteObjects): the way prune removes thousands of objects. */
  deleteMany(keys: readonly string[]): Promise<void>;
}
