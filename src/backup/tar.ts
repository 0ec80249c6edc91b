/**
 * The framing inside a backup part: POSIX tar (ustar, with a pax extended
 * header for a path too long for ustar). Chosen over a framing of our own
 * because a decoded part is then readable by hand: `walship backup cat`
 * is not needed, `tar -x` is (docs/FORMAT.md, "Base backups").
 *
 * Only what a data directory holds is written: regular files and
 * directories. Sizes are at most 1 GiB (PostgreSQL's segment files), far
 * below ustar's 8 GiB limit.
 */

export const BLOCK = 512;

export type TarEntryType = 'file' | 'dir';

export interface TarEntryHeader {
  readonly path: string;
  readonly type: TarEntryType;
  readonly size: number;
  readonly mode: number;
  /** Seconds since the epoch. */
  readonly mtime: number;
}

function octal(buf: Buffer, offset: number, length: number, value: number): void {
  // length - 1 digits, then a NUL.
  buf.write(value.toString(8).padStart(length - 1, '0'), offset, length - 1, 'ascii');
  buf[offset + length - 1] = 0;
}

function checksum(block: Buffer): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : block[i]!;
  return sum;
}

function ustarBlock(name: string, prefix: string, typeflag: string, size: number, mode: number, mtime: number): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(name, 0, 100, 'utf8');
  octal(b, 100, 8, mode & 0o7777);
  octal(b, 108, 8, 0);
  octal(b, 116, 8, 0);
  octal(b, 124, 12, size);
  octal(b, 136, 12, Math.max(0, Math.floor(mtime)));
  b.write(typeflag, 156, 1, 'ascii');
  b.write('ustar\u000000', 257, 8, 'ascii');
  b.write(prefix, 345, 155, 'utf8');
  const sum = checksum(b);
  b.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'ascii');
  return b;
}

/** ustar's split of a path into prefix (≤155 bytes) and name (≤100 bytes), or undefined when none fits. */
function splitPath(path: string): { prefix: string; name: string } | undefined {
  if (Buffer.byteLength(path) <= 100) return { prefix: '', name: path };
  for (let i = path.indexOf('/'); i >= 0; i = path.indexOf('/', i + 1)) {
    const prefix = path.slice(0, i);
    const name = path.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(name) <= 100 && name.length > 0) return { prefix, name };
  }
  return undefined;
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body) + 1;
  while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
  return `${len}${body}`;
}

/** The header block(s) of one entry; a file's content follows, padded with padding(). */
export function entryHeader(h: TarEntryHeader): Buffer {
  const path = h.type === 'dir' && !h.path.endsWith('/') ? `${h.path}/` : h.path;
  const flag = h.type === 'dir' ? '5' : '0';
  const size = h.type === 'dir' ? 0 : h.size;
  const split = splitPath(path);
  if (split) return ustarBlock(split.name, split.prefix, flag, size, h.mode, h.mtime);
  const pax = Buffer.from(paxRecord('path', path), 'utf8');
  return Buffer.concat([
    ustarBlock('PaxHeader', '', 'x', pax.length, 0o644, h.mtime),
    pax,
    padding(pax.length),
    ustarBlock(path.slice(-99), '', flag, size, h.mode, h.mtime),
  ]);
}

export function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest);
}

/** Two zero blocks end an archive. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

export class TarFormatError extends Error {}

function readOctal(b: Buffer, offset: number, length: number): number {
  const s = b.toString('ascii', offset, offset + length).replace(/\0.*$/s, '').trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new TarFormatError(`bad number field "${s}" in a tar header`);
  return Number.parseInt(s, 8);
}

function readString(b: Buffer, offset: number, length: number): string {
  const raw = b.subarray(offset, offset + length);
  const nul = raw.indexOf(0);
  return raw.subarray(0, nul < 0 ? length : nul).toString('utf8');
}

export interface TarEntry extends TarEntryHeader {
  /** The content, in pieces; must be consumed completely before the next entry is asked for. */
  readonly content: AsyncIterable<Buffer>;
}

/** Reads exact byte counts from pieces of any size. */
class Pieces {
  private buf: Buffer[] = [];
  private have = 0;
  private done = false;
  constructor(private readonly it: AsyncIterator<Buffer>) {}

  private async fill(n: number): Promise<void> {
    while (this.have < n && !this.done) {
      const r = await this.it.next();
      if (r.done) this.done = true;
      else if (r.value.length > 0) {
        this.buf.push(r.value);
        this.have += r.value.length;
      }
    }
  }

  async exact(n: number): Promise<Buffer> {
    await this.fill(n);
    if (this.have < n) throw new TarFormatError('the tar stream ends inside an entry: truncated');
    return this.take(n);
  }

  /** Up to n bytes (at least one unless at the end), without copying more than needed. */
  async some(n: number): Promise<Buffer> {
    await this.fill(1);
    if (this.have === 0) throw new TarFormatError('the tar stream ends inside an entry: truncated');
    return this.take(Math.min(n, this.buf[0]!.length));
  }

  private take(n: number): Buffer {
    // A member whose data (or padding) ends exactly where a piece ended
    // leaves nothing buffered, and the next read asks for 0 bytes (no
    // padding, an empty file, a directory): there is no first piece to
    // slice then.
    if (n === 0) return Buffer.alloc(0);
    const all = this.buf.length === 1 || this.buf[0]!.length >= n ? this.buf[0]! : Buffer.concat(this.buf, this.have);
    if (all !== this.buf[0]) this.buf = [all];
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.buf.shift();
    if (rest.length > 0) this.buf.unshift(rest);
    this.have -= n;
    return out;
  }

  async atEnd(): Promise<boolean> {
    await this.fill(1);
    return this.have === 0;
  }
}

/**
 * The entries of a tar stream in order. Refuses what walship never writes
 * (links, devices, absolute paths, `..`), so a part can never write outside
 * the directory it is extracted into.
 */
export async function* readTar(source: AsyncIterable<Buffer>): AsyncGenerator<TarEntry> {
  const p = new Pieces(source[Symbol.asyncIterator]());
  let paxPath: string | undefined;
  for (;;) {
    if (await p.atEnd()) throw new TarFormatError('the tar stream ends without its end-of-archive blocks: truncated');
    const block = await p.exact(BLOCK);
    if (block.every((x) => x === 0)) {
      const second = await p.exact(BLOCK);
      if (!second.every((x) => x === 0)) throw new TarFormatError('a zero block inside the tar stream');
      if (!(await p.atEnd())) throw new TarFormatError('bytes follow the end of the tar stream');
      return;
    }
    if (readOctal(block, 148, 8) !== checksum(block)) throw new TarFormatError('a tar header fails its checksum');
    const flag = String.fromCharCode(block[156]!);
    const size = readOctal(block, 124, 12);
    if (flag === 'x') {
      const pax = (await p.exact(size)).toString('utf8');
      await p.exact(padding(size).length);
      const m = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(pax);
      paxPath = m?.[1];
      continue;
    }
    const name = readString(block, 0, 100);
    const prefix = readString(block, 345, 155);
    const path = (paxPath ?? (prefix ? `${prefix}/${name}` : name)).replace(/\/$/, '');
    paxPath = undefined;
    if (path === '' || path.startsWith('/') || path.split('/').some((s) => s === '..' || s === '.')) {
      throw new TarFormatError(`unsafe path "${path}" in a backup part`);
    }
    const type: TarEntryType | undefined = flag === '5' ? 'dir' : flag === '0' || flag === '\0' ? 'file' : undefined;
    if (!type) throw new TarFormatError(`entry "${path}" has tar type "${flag}", which walship never writes`);
    const mode = readOctal(block, 100, 8);
    const mtime = readOctal(block, 136, 12);
    let left = type === 'file' ? size : 0;
    async function* content(): AsyncGenerator<Buffer> {
      while (left > 0) {
        const piece = await p.some(Math.min(left, 1 << 20));
        left -= piece.length;
        yield piece;
      }
    }
    const entry: TarEntry = { path, type, size: type === 'file' ? size : 0, mode, mtime, content: content() };
    yield entry;
    // Whatever the consumer did not read is skipped.
    while (left > 0) left -= (await p.some(Math.min(left, 1 << 20))).length;
    await p.exact(padding(entry.size).length);
  }
}
