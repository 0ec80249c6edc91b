import { describe, expect, it } from 'vitest';
import { BLOCK, END_OF_ARCHIVE, entryHeader, padding, readTar, TarFormatError, type TarEntryHeader } from '../../src/backup/tar.js';

interface Member {
  readonly header: TarEntryHeader;
  readonly data: Buffer;
}

function fill(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

function file(path: string, size: number, seed: number): Member {
  return { header: { path, type: 'file', size, mode: 0o600, mtime: 1_700_000_000 }, data: fill(size, seed) };
}

/**
 * Members chosen so that data ends on a block boundary (no padding), in
 * the middle of a block, right after a header (empty file, directory) and
 * after a pax header (a path too long for ustar).
 */
const members: readonly Member[] = [
  { header: { path: 'base', type: 'dir', size: 0, mode: 0o700, mtime: 1_700_000_000 }, data: Buffer.alloc(0) },
  file('base/1/empty', 0, 1),
  file('base/1/one-block', BLOCK, 2),
  file('base/1/short', 700, 3),
  file('base/1/two-blocks', 2 * BLOCK, 4),
  file(`base/${'d'.repeat(120)}/${'f'.repeat(110)}`, 513, 5),
  { header: { path: 'global', type: 'dir', size: 0, mode: 0o700, mtime: 1_700_000_000 }, data: Buffer.alloc(0) },
  file('global/pg_control', 8192, 6),
];

/** The archive, and the offsets where a header, a member's data and its padding end. */
function archive(): { bytes: Buffer; interesting: number[] } {
  const pieces: Buffer[] = [];
  const interesting: number[] = [];
  let at = 0;
  const push = (b: Buffer) => {
    pieces.push(b);
    at += b.length;
    interesting.push(at);
  };
  for (const m of members) {
    push(entryHeader(m.header));
    push(m.data);
    push(padding(m.data.length));
  }
  push(END_OF_ARCHIVE.subarray(0, BLOCK));
  push(END_OF_ARCHIVE.subarray(BLOCK));
  return { bytes: Buffer.concat(pieces), interesting: [...new Set(interesting)].filter((o) => o > 0 && o < at) };
}

/** The bytes as chunks cut at `cuts` (sorted offsets). */
async function* chunks(bytes: Buffer, cuts: readonly number[]): AsyncGenerator<Buffer> {
  let from = 0;
  for (const c of [...cuts, bytes.length]) {
    if (c > from) yield bytes.subarray(from, c);
    from = Math.max(from, c);
  }
}

interface Read {
  readonly path: string;
  readonly type: string;
  readonly size: number;
  /** The content as hex: vitest compares strings fast, Buffers element by element. */
  readonly data: string | undefined;
}

/** Reads the stream; `skip` leaves every content unread, so the reader skips it. */
async function readAll(source: AsyncIterable<Buffer>, skip: boolean): Promise<Read[]> {
  const out: Read[] = [];
  for await (const e of readTar(source)) {
    let data: string | undefined;
    if (!skip) {
      const got: Buffer[] = [];
      for await (const piece of e.content) got.push(Buffer.from(piece));
      data = Buffer.concat(got).toString('hex');
    }
    out.push({ path: e.path, type: e.type, size: e.size, data });
  }
  return out;
}

function expected(skip: boolean): Read[] {
  return members.map((m) => ({ path: m.header.path, type: m.header.type, size: m.data.length, data: skip ? undefined : m.data.toString('hex') }));
}

describe('tar reader fed in chunks', () => {
  const { bytes, interesting } = archive();

  it('the archive has the boundaries the cases below cut at', () => {
    // Data ending on a block boundary leaves no padding (data end and padding end coincide): the case that broke.
    expect(members.some((m) => m.data.length > 0 && m.data.length % BLOCK === 0)).toBe(true);
    expect(members.some((m) => m.data.length % BLOCK !== 0)).toBe(true);
    expect(interesting.length).toBeGreaterThan(members.length + 2);
    expect(bytes.length % BLOCK).toBe(0);
  });

  for (const skip of [false, true]) {
    const how = skip ? 'content skipped' : 'content read';

    it(`one cut at every interesting offset (header end, data end, padding end), ${how}`, async () => {
      for (const cut of interesting) {
        const got = await readAll(chunks(bytes, [cut]), skip).catch((err: unknown) => {
          throw new Error(`cut at offset ${cut}: ${String(err)}`);
        });
        expect(got, `cut at offset ${cut}`).toEqual(expected(skip));
      }
    });

    it(`cuts at all interesting offsets at once, ${how}`, async () => {
      expect(await readAll(chunks(bytes, interesting), skip)).toEqual(expected(skip));
    });

    it(`one cut at every offset of the archive, ${how}`, async () => {
      for (let cut = 1; cut < bytes.length; cut++) {
        const got = await readAll(chunks(bytes, [cut]), skip).catch((err: unknown) => {
          throw new Error(`cut at offset ${cut}: ${String(err)}`);
        });
        expect(got, `cut at offset ${cut}`).toEqual(expected(skip));
      }
    });

    it(`one byte per chunk, ${how}`, async () => {
      const cuts = Array.from({ length: bytes.length - 1 }, (_, i) => i + 1);
      expect(await readAll(chunks(bytes, cuts), skip)).toEqual(expected(skip));
    });
  }

  it('a stream cut short at any interesting offset is refused as truncated, never read as complete', async () => {
    for (const end of interesting) {
      await expect(readAll(chunks(bytes.subarray(0, end), [Math.floor(end / 2)]), false), `ends at ${end}`).rejects.toBeInstanceOf(TarFormatError);
    }
  });
});
