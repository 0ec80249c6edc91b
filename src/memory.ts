/**
 * Segment buffers live outside the V8 heap, and V8 frees them lazily: without
 * a collection between segments, a process that handles several segments
 * holds every one it touched (measured: a look-ahead batch of 8 peaked near
 * 250 MB, 140 MB with a collection between segments). bin/walship starts Node
 * with --expose-gc for this; without it this does nothing.
 */
export function releaseSegmentMemory(): void {
  (globalThis as { gc?: () => void }).gc?.();
}
