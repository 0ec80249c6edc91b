/**
 * Segment buffers live outside the V8 heap, and V8 frees them lazily: a
 * process that handles several segments would hold every one it touched.
 * Measured on 80 real segments, look-ahead batches of 8, interleaved runs:
 * without a collection between segments push peaked at ~195 MB, with one at
 * ~140 MB, and was no slower (11.0–11.7 vs 11.7–13.5 segments/s).
 * bin/walship starts Node with --expose-gc for this; without it this does
 * nothing.
 */
export function releaseSegmentMemory(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/** What a thread that archives segment after segment may leave for V8 to free lazily before it is made to. */
export const SEGMENT_GARBAGE_BYTES = 48 << 20;

/**
 * For a process that archives segment after segment for hours (the agent's
 * worker threads): a full collection after every segment costs more than the
 * segment's own codec work would suggest. It walks the whole heap, and the
 * memory it gives back is faulted in again, page by page, by the next
 * segment (measured on 30 real segments: 60–75 ms CPU per segment with a
 * collection after each, 50–58 without). So collect only when this thread's
 * garbage outside the heap has grown past `limitBytes`: memory stays bounded,
 * and most segments reuse what the previous one freed.
 */
export function releaseSegmentMemoryAbove(limitBytes: number = SEGMENT_GARBAGE_BYTES): void {
  // external includes the ArrayBuffers (Buffers) of this thread's isolate.
  if (process.memoryUsage().external > limitBytes) releaseSegmentMemory();
}

/**
 * For as long as a restore writes its parts: a full collection every 250
 * ms, from a timer. The megabyte buffers a restore goes through (each
 * decoded chunk, each read of the store) are garbage a moment later, but V8
 * lets tens of MB of them pile up outside its heap before it collects, and
 * the allocator keeps the pages once used: the peak RSS of a 1.3 GB restore
 * at -j 2 was 159-165 MB (issue 11 asks for at most 150); with this,
 * 135-137 MB, for about 10% more CPU
 * (native-bench/results/restore-memory-2026-12-02.md). Not used by backup:
 * there the same timer cost ~3.8 s of collections for 6 MB less.
 * Collections triggered by bytes moved, from inside the stream, or
 * young-generation ones, did not
 * lower the peak. Returns the function that stops it.
 */
export function collectWhileRestoring(ms = 250): () => void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return () => undefined;
  const timer = setInterval(() => gc(), ms);
  timer.unref();
  return () => clearInterval(timer);
}
