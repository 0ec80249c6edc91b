import { describe, expect, it } from 'vitest';
import { StoreUnavailableError } from '../../src/errors.js';
import type { Store } from '../../src/store/index.js';

export interface ConformanceTarget {
  /** A fresh, empty store. */
  make(): Promise<Store>;
  /** A store whose backend cannot be reached or does not exist. */
  makeBroken(): Promise<Store>;
  /** Whether the server enforces create-only-if-absent itself (s3rver ignores If-None-Match). */
  atomicCreate: boolean;
  /** Whether listings come back in key order, as S3 promises (s3rver does not order them). */
  orderedListing: boolean;
  /**
   * Whether a streamed body larger than the driver's single-write threshold
   * can be stored (S3: multipart upload, which s3rver lacks). The stores
   * `make` returns must then have a threshold below 12 MiB.
   */
  largeStreams: boolean;
}

async function* pieces(body: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let o = 0; o < body.length; o += size) yield body.subarray(o, Math.min(o + size, body.length));
}

async function readAll(r: AsyncIterable<Buffer> | undefined): Promise<Buffer | undefined> {
  if (r === undefined) return undefined;
  const out: Buffer[] = [];
  for await (const c of r) out.push(c);
  return Buffer.concat(out);
}

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i + 4 <= n; i += 4) b.writeUInt32LE((Math.imul(i + 1, 2654435761) ^ seed) >>> 0, i);
  return b;
}

async function collect(it: AsyncIterable<{ key: string }>): Promise<string[]> {
  const out: string[] = [];
  for await (const o of it) out.push(o.key);
  return out;
}

async function inBatches<T>(items: readonly T[], width: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/** The Store contract (src/store/types.ts), run against each driver. */
export function storeConformance(name: string, target: ConformanceTarget): void {
  describe(`Store conformance: ${name}`, () => {
    it('reports absent objects as undefined', async () => {
      const s = await target.make();
      expect(await s.get('wal/00000001/000000010000000000000001')).toBeUndefined();
      expect(await s.head('wal/00000001/000000010000000000000001')).toBeUndefined();
      expect(await s.getPrefix('nothing', 10)).toBeUndefined();
      expect(await collect(s.list('wal/'))).toEqual([]);
    });

    it('stores, reads back and never overwrites', async () => {
      const s = await target.make();
      const body = Buffer.from('first body, with some bytes \u0000\u00ff');
      expect(await s.putIfAbsent('wal/00000001/A', body, { blake3: 'aa' })).toBe('created');
      expect((await s.get('wal/00000001/A'))!.equals(body)).toBe(true);
      const info = await s.head('wal/00000001/A');
      expect(info?.size).toBe(body.length);
      if (info?.metadata !== undefined) expect(info.metadata.blake3).toBe('aa');
      expect((await s.getPrefix('wal/00000001/A', 5))!.toString()).toBe('first');
      expect((await s.getPrefix('wal/00000001/A', 1000))!.equals(body)).toBe(true);
      expect((await s.getSuffix('wal/00000001/A', 5))!.equals(body.subarray(body.length - 5))).toBe(true);
      expect((await s.getSuffix('wal/00000001/A', 1000))!.equals(body)).toBe(true);
      expect(await s.getSuffix('wal/00000001/none', 5)).toBeUndefined();
      if (target.atomicCreate) {
        expect(await s.putIfAbsent('wal/00000001/A', Buffer.from('second'), { blake3: 'bb' })).toBe('exists');
        expect((await s.get('wal/00000001/A'))!.equals(body)).toBe(true);
      }
    });

    it('stores an empty object and a multi-megabyte one', async () => {
      const s = await target.make();
      const big = Buffer.alloc(5 << 20);
      for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
      expect(await s.putIfAbsent('e', Buffer.alloc(0), {})).toBe('created');
      expect(await s.putIfAbsent('big', big, {})).toBe('created');
      expect((await s.get('e'))!.length).toBe(0);
      expect((await s.get('big'))!.equals(big)).toBe(true);
    });

    it('lets exactly one of concurrent creators win', async () => {
      if (!target.atomicCreate) return;
      const s = await target.make();
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => s.putIfAbsent('race', Buffer.from(`writer ${i}`), {})),
      );
      expect(results.filter((r) => r === 'created')).toHaveLength(1);
      const winner = results.indexOf('created');
      expect((await s.get('race'))!.toString()).toBe(`writer ${winner}`);
    });

    it('lists keys under a prefix in order', async () => {
      const s = await target.make();
      const keys = [
        'wal/00000002/000000020000000000000001',
        'wal/00000001/000000010000000000000010',
        'wal/00000001/000000010000000000000002',
        'history/00000002.history',
        'wal/00000001/000000010000000000000002.00000028.backup',
      ];
      for (const k of keys) await s.putIfAbsent(k, Buffer.from(k), {});
      const ordered = async (prefix: string) => {
        const got = await collect(s.list(prefix));
        return target.orderedListing ? got : got.sort();
      };
      expect(await ordered('wal/00000001/')).toEqual([
        'wal/00000001/000000010000000000000002',
        'wal/00000001/000000010000000000000002.00000028.backup',
        'wal/00000001/000000010000000000000010',
      ]);
      expect(await ordered('')).toEqual([...keys].sort());
      expect(await collect(s.list('wal/0000000'))).toHaveLength(4);
    });

    it('deletes, and deleting an absent object is not an error', async () => {
      const s = await target.make();
      await s.putIfAbsent('d', Buffer.from('x'), {});
      await s.delete('d');
      expect(await s.get('d')).toBeUndefined();
      await s.delete('d');
    });

    it('lists each object with its size and when it was stored', async () => {
      const s = await target.make();
      const before = Date.now();
      await s.putIfAbsent('wal/00000001/000000010000000000000001', Buffer.from('twelve bytes'), {});
      const listed = [];
      for await (const o of s.list('wal/')) listed.push(o);
      expect(listed).toHaveLength(1);
      expect(listed[0]!.size).toBe(12);
      expect(listed[0]!.lastModified).toBeInstanceOf(Date);
      // Store clocks have a resolution of a second at best (S3: whole seconds).
      expect(listed[0]!.lastModified.getTime()).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 - 2000);
      expect(listed[0]!.lastModified.getTime()).toBeLessThanOrEqual(Date.now() + 2000);
    });

    it('deletes many keys at once, absent ones included, and nothing else', async () => {
      const s = await target.make();
      const keys = Array.from({ length: 6 }, (_, i) => `wal/00000001/00000001000000000000000${i}`);
      for (const k of keys) await s.putIfAbsent(k, Buffer.from(k), {});
      await s.deleteMany([keys[0]!, keys[2]!, 'wal/00000001/never-stored', keys[4]!]);
      expect((await collect(s.list('wal/'))).sort()).toEqual([keys[1], keys[3], keys[5]]);
      await s.deleteMany([]);
      await s.deleteMany([keys[0]!]);
      expect(await collect(s.list('wal/'))).toHaveLength(3);
    });

    it('deletes more keys than one S3 request takes (1000)', async () => {
      const s = await target.make();
      const keys = Array.from({ length: 1003 }, (_, i) => `wal/00000001/${i.toString(16).toUpperCase().padStart(24, '0')}`);
      const keep = 'wal/00000002/000000020000000000000001';
      // A few writers at a time, not 1004 at once: a thousand simultaneous
      // uploads measure how the machine copes with load, not the driver, and
      // their shared failure streak could spend the retry deadline.
      await inBatches([keep, ...keys], 8, (k) => s.putIfAbsent(k, Buffer.from('x'), {}));
      expect(await collect(s.list('wal/'))).toHaveLength(1004);
      await s.deleteMany(keys);
      expect(await collect(s.list('wal/'))).toEqual([keep]);
    });

    it('streams a body in, piece by piece, and back out', async () => {
      const s = await target.make();
      const body = pattern(300_001, 1);
      expect(await s.putStreamIfAbsent('wal/00000001/S', pieces(body, 65_536), body.length, { blake3: 'cc' })).toBe('created');
      expect((await readAll(await s.getStream('wal/00000001/S')))!.equals(body)).toBe(true);
      expect((await s.head('wal/00000001/S'))?.size).toBe(body.length);
      expect((await s.get('wal/00000001/S'))!.equals(body)).toBe(true);
      expect(await s.getStream('wal/00000001/absent')).toBeUndefined();
      expect(await s.putStreamIfAbsent('empty', pieces(Buffer.alloc(0), 1), undefined, {})).toBe('created');
      expect((await readAll(await s.getStream('empty')))!.length).toBe(0);
      if (target.atomicCreate) {
        expect(await s.putStreamIfAbsent('wal/00000001/S', pieces(Buffer.from('other'), 2), 5, {})).toBe('exists');
        expect((await s.get('wal/00000001/S'))!.equals(body)).toBe(true);
      }
    });

    it('streams a body larger than one write (S3: a multipart upload) and never overwrites it', async () => {
      if (!target.largeStreams) return;
      const s = await target.make();
      const body = pattern((12 << 20) + 12_345, 2);
      // Without a size hint the driver only learns the size as it reads.
      expect(await s.putStreamIfAbsent('wal/00000001/L', pieces(body, 1 << 20), undefined, { blake3: 'dd' })).toBe('created');
      expect((await readAll(await s.getStream('wal/00000001/L')))!.equals(body)).toBe(true);
      const info = await s.head('wal/00000001/L');
      expect(info?.size).toBe(body.length);
      if (info?.metadata !== undefined) expect(info.metadata.blake3).toBe('dd');
      // With a hint, straight to parts; a name that is taken is left alone.
      expect(await s.putStreamIfAbsent('wal/00000001/L', pieces(pattern(13 << 20, 3), 1 << 20), 13 << 20, {})).toBe('exists');
      expect((await readAll(await s.getStream('wal/00000001/L')))!.equals(body)).toBe(true);
      expect(await s.putStreamIfAbsent('wal/00000001/H', pieces(body, 777_777), body.length, {})).toBe('created');
      expect((await s.get('wal/00000001/H'))!.equals(body)).toBe(true);
    });

    it('leaves no object when the source fails half-way', async () => {
      const s = await target.make();
      const size = target.largeStreams ? 12 << 20 : 200_000;
      async function* failing(): AsyncGenerator<Buffer> {
        yield* pieces(pattern(size, 4), 1 << 16);
        throw new Error('reader broke');
      }
      // The producer's own error comes out as it is: it is not the store's failure.
      const err = await s.putStreamIfAbsent('wal/00000001/F', failing(), undefined, {}).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toBe('reader broke');
      expect(err).not.toBeInstanceOf(StoreUnavailableError);
      expect(await s.head('wal/00000001/F')).toBeUndefined();
      expect(await s.getStream('wal/00000001/F')).toBeUndefined();
      // The name is still free for a writer that succeeds.
      expect(await s.putStreamIfAbsent('wal/00000001/F', pieces(Buffer.from('whole'), 2), 5, {})).toBe('created');
    });

    it('never reports "absent" when the store cannot be read', async () => {
      const s = await target.makeBroken();
      await expect(s.get('wal/00000001/000000010000000000000001')).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(s.getPrefix('walship.json', 10)).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(s.getSuffix('walship.json', 10)).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(s.putIfAbsent('x', Buffer.from('x'), {})).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(s.deleteMany(['x'])).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(s.getStream('wal/00000001/000000010000000000000001')).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(s.putStreamIfAbsent('x', pieces(Buffer.from('xyz'), 1), 3, {})).rejects.toBeInstanceOf(StoreUnavailableError);
    });
  });
}
