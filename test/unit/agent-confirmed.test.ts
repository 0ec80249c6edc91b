import { describe, expect, it } from 'vitest';
import { ConfirmedFiles } from '../../src/agent/confirmed.js';

/**
 * The agent's memory of what it confirmed (src/agent/confirmed.ts) only
 * ever stops it from starting a file; these pin when it must stop trusting
 * itself and look at the marker on disk again.
 */
describe('ConfirmedFiles', () => {
  const A = '000000010000000000000005';
  const B = '000000010000000000000006';
  const none = { name: undefined, atMs: undefined };

  it('covers a file it recorded, until PostgreSQL is done with it', () => {
    const c = new ConfirmedFiles(60_000);
    c.add(A, 1_000);
    expect(c.covers(A, none, 2_000)).toBe(true);
    expect(c.covers(B, none, 2_000)).toBe(false);
    c.retain(new Set([B]));
    expect(c.covers(A, none, 2_000)).toBe(false);
    expect(c.size).toBe(0);
  });

  it('a call that asked for the file after the record was written makes it look again', () => {
    const c = new ConfirmedFiles(60_000);
    c.add(A, 10_000);
    // Asked before the record: that call finds the marker (the common case, no second archiving).
    expect(c.covers(A, { name: A, atMs: 9_000 }, 11_000)).toBe(true);
    // Another file asked for: no bearing on A.
    expect(c.covers(A, { name: B, atMs: 10_500 }, 11_000)).toBe(true);
    // Asked after the record (or within the clock's slack of it): that call found no usable marker.
    expect(c.covers(A, { name: A, atMs: 9_990 }, 11_000)).toBe(false);
    // and the entry is gone: the marker on disk decides from now on.
    expect(c.covers(A, none, 11_000)).toBe(false);
  });

  it('stops covering before the launcher would stop honouring the marker for its age', () => {
    const c = new ConfirmedFiles(60_000);
    c.add(A, 0);
    expect(c.covers(A, none, 60_000)).toBe(true);
    expect(c.covers(A, none, 60_001)).toBe(false);
  });

  it('by default stays inside the marker age the launcher honours', async () => {
    const { MARKER_MAX_AGE_MS } = await import('../../src/spool/push-markers.js');
    const c = new ConfirmedFiles();
    c.add(A, 0);
    expect(c.covers(A, none, MARKER_MAX_AGE_MS - 1)).toBe(false);
  });
});
