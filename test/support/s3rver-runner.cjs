'use strict';
/*
 * Child-process host for s3rver, started by s3-server.ts as
 *
 *   node --openssl-legacy-provider s3rver-runner.cjs '<json options>'
 *
 * with an IPC channel. Why a separate process:
 *  - s3rver generates ListObjectsV2 continuation tokens with the DES cipher,
 *    which OpenSSL 3 only offers through the legacy provider; without it any
 *    paginated listing answers 500. The provider must be enabled at process
 *    start, and we do not want it (or Koa, or s3rver's global logger) inside
 *    the vitest worker that runs the code under test.
 *  - Killing a child is a reliable way to drop every socket at teardown.
 *
 * Protocol (IPC messages): child -> parent {type:'ready', port} or
 * {type:'error', message}; parent -> child {type:'stop'}. The child also
 * exits when the IPC channel closes (parent died) or on SIGTERM/SIGINT.
 */
const S3rver = require('s3rver');

const opts = JSON.parse(process.argv[2] || '{}');

const server = new S3rver({
  address: opts.address || '127.0.0.1',
  port: typeof opts.port === 'number' ? opts.port : 0,
  directory: opts.directory,
  silent: true,
  // Path-style only: never interpret a Host header as a bucket name.
  vhostBuckets: false,
  configureBuckets: (opts.buckets || []).map((name) => ({ name })),
});

let stopping = false;
function stop(code) {
  if (stopping) return;
  stopping = true;
  // close() rejects when run() never succeeded; either way we are done.
  server.close().then(
    () => process.exit(code),
    () => process.exit(code),
  );
  // Keep-alive sockets can hold close() open; do not wait for them forever.
  setTimeout(() => process.exit(code), 2000).unref();
}

process.on('message', (msg) => {
  if (msg && msg.type === 'stop') stop(0);
});
process.on('disconnect', () => stop(0));
process.on('SIGTERM', () => stop(0));
process.on('SIGINT', () => stop(0));

server.run().then(
  (address) => {
    process.send({ type: 'ready', port: address.port, address: address.address });
  },
  (err) => {
    process.send({ type: 'error', message: String((err && err.stack) || err) }, () => process.exit(1));
  },
);
