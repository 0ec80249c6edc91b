import type { ListedObject, ObjectInfo, Store } from '../../src/store/index.js';

/**
 * A store that only lists (and forgets what is deleted, in order): enough
 * for takeInventory (the manifest and the listing) and for the retention
 * and prune plans built from it. Every object is 1000 bytes; a key given
 * with a date was stored then, the others at `defaultTime`.
 */
export class ListingStore implements Store {
  readonly description = 'memory://';
  readonly deleted: string[] = [];
  private readonly objects = new Map<string, { size: number; lastModified: Date }>();
  private readonly manifest: Buffer;

  constructor(segmentSize: number, keys: readonly (string | [string, Date])[], defaultTime = new Date('2026-11-01T00:00:00Z')) {
    this.manifest = Buffer.from(
      JSON.stringify({ walship: 1, systemIdentifier: '7300000000000000001', pgMajor: 15, walPageMagic: '0xd110', segmentSize, walBlockSize: 8192, createdAt: 'x', createdBy: 'x' }),
    );
    for (const k of keys) {
      const [key, when] = typeof k === 'string' ? [k, defaultTime] : k;
      this.objects.set(key, { size: 1000, lastModified: when });
    }
  }
  async head(): Promise<ObjectInfo | undefined> {
    return undefined;
  }
  async get(key: string): Promise<Buffer | undefined> {
    return key === 'walship.json' ? this.manifest : undefined;
  }
  async getPrefix(): Promise<Buffer | undefined> {
    return undefined;
  }
  async putIfAbsent(): Promise<'created'> {
    return 'created';
  }
  async putStreamIfAbsent(): Promise<'created'> {
    return 'created';
  }
  async getStream(): Promise<undefined> {
    return undefined;
  }
  async getSuffix(): Promise<undefined> {
    return undefined;
  }
  async makeDurable(): Promise<void> {}
  async *list(prefix: string): AsyncIterable<ListedObject> {
    for (const [key, o] of [...this.objects].sort()) if (key.startsWith(prefix)) yield { key, ...o };
  }
  async delete(key: string): Promise<void> {
    this.deleted.push(key);
    this.objects.delete(key);
  }
  async deleteMany(keys: readonly string[]): Promise<void> {
    for (const k of keys) await this.delete(k);
  }
}
