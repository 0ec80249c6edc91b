// Codec micro-benchmarks on real segments of the corpus, in this process,
// one core: the building blocks of a push (BLAKE3, LZ4 frame, AES-256-GCM)
// and of a fetch, each next to the obvious alternative.
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { setImmediate as turn } from 'node:timers/promises';

/** MB/s (10^6 bytes of input per second) of fn over all buffers; best of `passes`. */
async function rate(buffers, fn, passes) {
  const bytes = buffers.reduce((s, b) => s + b.length, 0);
  let best = Infinity;
  for (let p = 0; p < passes; p++) {
    const t0 = performance.now();
    for (const b of buffers) fn(b);
    best = Math.min(best, performance.now() - t0);
    // lz4-napi's sync calls free their buffers only after the loop turns.
    await turn();
  }
  return bytes / 1e6 / (best / 1000);
}

export async function codecBench(root, corpus, { segments = 8, passes = 5 } = {}) {
  const require = createRequire(join(root, 'package.json'));
  const lz4 = require('lz4-napi');
  const { blake3 } = require('@napi-rs/blake-hash');
  const names = corpus.segments.filter((_, i) => i % Math.max(1, Math.floor(corpus.segments.length / segments)) === 0).slice(0, segments);
  const raw = names.map((n) => readFileSync(join(corpus.dir, 'wal', n)));
  const frames = raw.map((b) => lz4.compressFrameSync(b, { contentChecksum: true }));
  const ratio = raw.reduce((s, b) => s + b.length, 0) / frames.reduce((s, b) => s + b.length, 0);
  const key = randomBytes(32);
  const iv = randomBytes(12);
  const sealed = raw.map((b) => {
    const c = createCipheriv('aes-256-gcm', key, iv);
    return { data: Buffer.concat([c.update(b), c.final()]), tag: c.getAuthTag() };
  });
  const byRaw = new Map(raw.map((b, i) => [b, sealed[i]]));
  const frameOf = new Map(raw.map((b, i) => [b, frames[i]]));
  const cbcKey = randomBytes(32);
  const cbcIv = randomBytes(16);
  const rows = [
    ['LZ4 frame compress (lz4-napi compressFrameSync, content checksum)', (b) => lz4.compressFrameSync(b, { contentChecksum: true })],
    ['LZ4 frame decompress (lz4-napi decompressFrameSync), per raw MB', (b) => lz4.decompressFrameSync(frameOf.get(b))],
    ['BLAKE3 (@napi-rs/blake-hash)', (b) => blake3(b)],
    ['SHA-256 (node:crypto)', (b) => createHash('sha256').update(b).digest()],
    ['SHA-1 (node:crypto; what pgBackRest checksums with)', (b) => createHash('sha1').update(b).digest()],
    [
      'AES-256-GCM encrypt (node:crypto)',
      (b) => {
        const c = createCipheriv('aes-256-gcm', key, iv);
        c.update(b);
        c.final();
        c.getAuthTag();
      },
    ],
    [
      'AES-256-GCM decrypt + verify (node:crypto)',
      (b) => {
        const s = byRaw.get(b);
        const d = createDecipheriv('aes-256-gcm', key, iv);
        d.setAuthTag(s.tag);
        d.update(s.data);
        d.final();
      },
    ],
    [
      'AES-256-CBC encrypt (node:crypto; pgBackRest\'s cipher)',
      (b) => {
        const c = createCipheriv('aes-256-cbc', cbcKey, cbcIv);
        c.update(b);
        c.final();
      },
    ],
  ];
  const results = [];
  for (const [name, fn] of rows) results.push({ name, mbPerS: await rate(raw, fn, passes) });
  return { segments: raw.length, lz4Ratio: ratio, results };
}
