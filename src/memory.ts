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
