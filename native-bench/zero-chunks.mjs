#!/usr/bin/env node
// What decoding costs for segments PostgreSQL switched before they were full
// (zeros after the last record), compared with a full segment: lz4-napi's
// frame decoder per 1 MiB chunk (walship before 80477c5), walship's own
// decode of a plain v2 object (every chunk, BLAKE3 included; zero-filled
// chunks answered without the decoder since 80477c5), and the C `lz4` tool
// on the same bytes as one frame (when installed; its process start
// included, measured on an empty input and subtracted).
//
//   node native-bench/zero-chunks.mjs [A_REAL_16MiB_SEGMENT]
//
// CPU time of this process (process.cpuUsage), best of 5. One core.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const lz4 = require('lz4-napi');
const tmp = mkdtempSync(join(tmpdir(), 'walship-zero-bench-'));
const MiB = 1 << 20;

try {
  // walship's codec, bundled from src as the build does (native addons stay
  // external, found from node_modules/.cache as from dist/).
  const out = join(root, 'node_modules', '.cache', 'walship-zero-bench', 'codec.mjs');
  require('esbuild').buildSync({
    entryPoints: [join(root, 'src/codec/index.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    outfile: out,
    external: ['lz4-napi', '@napi-rs/*'],
    logLevel: 'error',
  });
  const codec = await import(pathToFileURL(out).href);

  const full = process.argv[2] ? readFileSync(process.argv[2]) : walLike();
  const switched = Buffer.alloc(16 * MiB);
  full.copy(switched, 0, 0, MiB);
  const inputs = [
    ['full segment' + (process.argv[2] ? ' (given)' : ' (synthetic)'), full],
    ['switched after 1 MiB (15 MiB of zeros)', switched],
    ['all zeros', Buffer.alloc(16 * MiB)],
  ];
  const rows = [];
  for (const [what, data] of inputs) {
    const frames = [];
    for (let o = 0; o < data.length; o += MiB) frames.push(lz4.compressFrameSync(data.subarray(o, o + MiB), { contentChecksum: true }));
    const object = await encode(codec, data);
    const napi = best(() => {
      for (const f of frames) lz4.decompressFrameSync(f);
    });
    const walship = await bestAsync(async () => {
      for await (const _ of codec.decodeObjectStream(once(object), '000000010000000000000009', undefined, '7', () => undefined)) void _;
    });
    rows.push({ what, ratio: data.length / frames.reduce((s, f) => s + f.length, 0), napi, walship, cli: cliDecode(data) });
  }
  console.log(`| input (16 MiB) | LZ4 ratio | lz4-napi decode, 16 × 1 MiB frames, ms | walship decode of the object, ms | C lz4 -d, ms |`);
  console.log('|---|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.what} | ${r.ratio.toFixed(1)} | ${r.napi.toFixed(1)} | ${r.walship.toFixed(1)} | ${r.cli === undefined ? 'not installed' : r.cli.toFixed(1)} |`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

function walLike() {
  // Compressible, varied pages (about 6× with LZ4, like real WAL).
  const b = Buffer.alloc(16 * MiB);
  let x = 12345;
  for (let o = 0; o < b.length; o += 8192) for (let i = 0; i < 1300; i += 4) b.writeUInt32LE((x = (Math.imul(x, 1103515245) + 12345) >>> 0), o + i);
  return b;
}

async function encode(codec, data) {
  const enc = await codec.ObjectEncoder.create({ name: '000000010000000000000009', compression: 'lz4-frame', systemIdentifier: '7', createdBy: 'bench' });
  const parts = [];
  for await (const p of enc.encode([data])) parts.push(p);
  return Buffer.concat(parts);
}

async function* once(b) {
  yield b;
}

function cpuMs(fn) {
  const t = process.cpuUsage();
  fn();
  const u = process.cpuUsage(t);
  return (u.user + u.system) / 1000;
}

function best(fn) {
  fn();
  let m = Infinity;
  for (let i = 0; i < 5; i++) m = Math.min(m, cpuMs(fn));
  return m;
}

async function bestAsync(fn) {
  await fn();
  let m = Infinity;
  for (let i = 0; i < 5; i++) {
    const t = process.cpuUsage();
    await fn();
    const u = process.cpuUsage(t);
    m = Math.min(m, (u.user + u.system) / 1000);
  }
  return m;
}

/** CPU ms of `lz4 -d` on the data as one frame, less the same on an empty frame; undefined without lz4. */
function cliDecode(data) {
  if (spawnSync('lz4', ['--version']).status !== 0) return undefined;
  const file = join(tmp, 'in.lz4');
  const empty = join(tmp, 'empty.lz4');
  writeFileSync(file, lz4.compressFrameSync(data, { contentChecksum: true }));
  writeFileSync(empty, lz4.compressFrameSync(Buffer.alloc(0), { contentChecksum: true }));
  const run = (f) => {
    let m = Infinity;
    for (let i = 0; i < 5; i++) {
      const r = spawnSync('/usr/bin/time', ['-f', '%U %S', 'lz4', '-q', '-d', '-c', f], { stdio: ['ignore', 'ignore', 'pipe'] });
      const [u, s] = r.stderr.toString().trim().split('\n').pop().split(' ').map(Number);
      m = Math.min(m, (u + s) * 1000);
    }
    return m;
  };
  return Math.max(0, run(file) - run(empty));
}
