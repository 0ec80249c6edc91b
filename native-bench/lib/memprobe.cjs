// BENCH_MEMPROBE=1: preloaded into every walship Node process of the (d)
// rows (NODE_OPTIONS=--require=<this file>, set only by the bench), it
// samples process.memoryUsage() every 25 ms and keeps the sample with the
// largest RSS, written to $BENCH_MEMPROBE_DIR/<pid>.json every second and at
// exit: how much of the peak was V8's heap, Buffers/ArrayBuffers (the
// codec's input and output chunks) and the rest (Node's own code and data,
// native allocators such as the mimalloc inside lz4-napi and
// @napi-rs/blake-hash). A diagnostic: the timer itself costs a little CPU.
'use strict';
const dir = process.env.BENCH_MEMPROBE_DIR;
if (dir) {
  const { writeFileSync, renameSync } = require('node:fs');
  const { isMainThread } = require('node:worker_threads');
  if (isMainThread) {
    const argv = process.argv.slice(2).filter((a) => !a.startsWith('-'));
    let top = { rss: 0 };
    let written = 0;
    const sample = () => {
      const m = process.memoryUsage();
      if (m.rss > top.rss) top = { ...m, at: Date.now() };
    };
    const write = () => {
      if (top.at === written) return;
      written = top.at;
      const f = `${dir}/${process.pid}.json`;
      try {
        writeFileSync(`${f}.tmp`, JSON.stringify({ pid: process.pid, cmd: argv.join(' '), ...top }));
        renameSync(`${f}.tmp`, f);
      } catch {
        /* a diagnostic never fails the call */
      }
    };
    let ticks = 0;
    setInterval(() => {
      sample();
      if (++ticks % 40 === 0) write();
    }, 25).unref();
    process.on('exit', () => {
      sample();
      write();
    });
  }
}
