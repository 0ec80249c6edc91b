import { decodeObjectStream, type DecodedSummary } from '../codec/index.js';
import type { KeyProvider } from '../crypto/index.js';
import { CorruptObjectError, type ErrorContext } from '../errors.js';

/**
 * The self-check every writer of an object runs before it acknowledges
 * anything: each encoded piece also goes through the decoder (as a reader
 * would run it), and the decoder's BLAKE3 and size of what it got back must
 * equal what the encoder read. A codec or memory fault fails the write,
 * not a restore months later. Bounded memory: a piece or two in flight.
 *
 * Used by push (a WAL file is acknowledged to PostgreSQL, which then drops
 * its copy) and by backup (a part is recorded in the descriptor).
 */
export interface DecodeCheckOptions {
  /** The object's name as the encoder was given it (decryption binds it). */
  readonly name: string;
  readonly keys: KeyProvider | undefined;
  readonly clusterId: string;
  /** Names the object in errors: the WAL file, or the store key of a backup object. */
  readonly context: Pick<ErrorContext, 'file' | 'key'>;
  /** What the operator should do when the check fails (what the writer guarantees then). */
  readonly hint: string;
}

/** What the encoder read, known once the source has ended. */
export interface EncodedInput {
  readonly blake3: string;
  readonly rawSize: number;
}

export class DecodeCheck {
  private readonly queue: Buffer[] = [];
  private ended = false;
  private failed = false;
  private wake: (() => void) | undefined;
  private readonly done: Promise<DecodedSummary>;

  constructor(private readonly o: DecodeCheckOptions) {
    const self = this;
    async function* pieces(): AsyncGenerator<Buffer> {
      for (;;) {
        const next = self.queue.shift();
        if (next) yield next;
        else if (self.ended) return;
        else await new Promise<void>((r) => (self.wake = r));
      }
    }
    this.done = (async () => {
      let summary: DecodedSummary | undefined;
      // The decoded chunks are only hashed (inside the decoder): nothing is kept.
      for await (const _ of decodeObjectStream(pieces(), o.name, o.keys, o.clusterId, (s) => (summary = s))) void _;
      return summary!;
    })();
    // A decoder that has given up consumes nothing more: the writer must not wait for it.
    this.done.catch(() => (this.failed = true));
  }

  private feed(piece: Buffer | undefined): void {
    if (piece) this.queue.push(piece);
    else this.ended = true;
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /**
   * Yields `source`'s pieces (the encoded object); once it has ended, waits
   * for the decoder and throws if what it decoded is not `expected()` (asked
   * only then, when the encoder has finished), before reporting the end to
   * the consumer. A store commits only after its source ended, so a failed
   * check fails the write and a bad object never lands.
   */
  async *tee(source: AsyncIterable<Buffer>, expected: () => EncodedInput): AsyncGenerator<Buffer> {
    try {
      for await (const piece of source) {
        this.feed(piece);
        yield piece;
        // Let the decoder catch up, so the queue stays a piece or two long.
        while (this.queue.length > 2 && !this.failed) await new Promise((r) => setImmediate(r));
        // Fail the write at once rather than upload the rest of a bad object.
        if (this.failed) break;
      }
    } finally {
      this.feed(undefined);
    }
    await this.verify(expected);
  }

  private async verify(expected: () => EncodedInput): Promise<void> {
    const { name, context, hint } = this.o;
    let s: DecodedSummary;
    try {
      s = await this.done;
    } catch (err) {
      throw new CorruptObjectError(`the object encoded for ${name} does not decode (${(err as Error).message}); nothing is acknowledged`, { ...context, cause: err, hint });
    }
    // Only now: the encoder has finished (a failed decode above may have cut it short).
    const want = expected();
    if (s.header.blake3 !== want.blake3 || s.header.rawSize !== want.rawSize) {
      throw new CorruptObjectError(
        `the object encoded for ${name} decodes to other bytes than the input (${s.header.rawSize} bytes, BLAKE3 ${s.header.blake3.slice(0, 16)}…; input ${want.rawSize} bytes, ${want.blake3.slice(0, 16)}…)`,
        { ...context, hint },
      );
    }
  }
}
