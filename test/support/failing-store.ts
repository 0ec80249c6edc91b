import type { Readable } from 'node:stream';
import { StoreUnavailableError } from '../../src/errors.js';
import type { ByteSource, ListedObject, ObjectInfo, Store } from '../../src/store/index.js';

/**
 * A store that forwards to a real one until `down` is set, then answers
 * every request as an unreachable store does (StoreUnavailableError, never
 * "absent"): a region outage, in process.
 */
export class FailingStore implements Store {
  down = false;
  constructor(
    private readonly inner: Store,
    readonly description: string = inner.description,
  ) {}

  private check(op: string, key: string): void {
    if (this.down) throw new StoreUnavailableError(`${op} ${this.description}/${key} failed (test: the store is down)`, { key });
  }
  async head(key: string): Promise<ObjectInfo | undefined> {
    this.check('HEAD', key);
    return this.inner.head(key);
  }
  async get(key: string): Promise<Buffer | undefined> {
    this.check('GET', key);
    return this.inner.get(key);
  }
  async getPrefix(key: string, length: number): Promise<Buffer | undefined> {
    this.check('GET', key);
    return this.inner.getPrefix(key, length);
  }
  async getSuffix(key: string, length: number): Promise<Buffer | undefined> {
    this.check('GET', key);
    return this.inner.getSuffix(key, length);
  }
  async putIfAbsent(key: string, body: Buffer, metadata: Readonly<Record<string, string>>): Promise<'created' | 'exists'> {
    this.check('PUT', key);
    return this.inner.putIfAbsent(key, body, metadata);
  }
  async putStreamIfAbsent(key: string, source: ByteSource, sizeHint: number | undefined, metadata: Readonly<Record<string, string>>): Promise<'created' | 'exists'> {
    this.check('PUT', key);
    return this.inner.putStreamIfAbsent(key, source, sizeHint, metadata);
  }
  async getStream(key: string): Promise<Readable | undefined> {
    this.check('GET', key);
    return this.inner.getStream(key);
  }
  async makeDurable(key: string): Promise<void> {
    this.check('SYNC', key);
    return this.inner.makeDurable(key);
  }
  async *list(prefix: string): AsyncIterable<ListedObject> {
    this.check('LIST', prefix);
    yield* this.inner.list(prefix);
  }
  async delete(key: string): Promise<void> {
    this.check('DELETE', key);
    return this.inner.delete(key);
  }
  async deleteMany(keys: readonly string[]): Promise<void> {
    this.check('DELETE', keys[0] ?? '');
    return this.inner.deleteMany(keys);
  }
}
