import { describe, expect, it } from 'vitest';
import { MAX_FILES_PER_PART, planParts } from '../../src/backup/parts.js';
import type { WalkEntry } from '../../src/backup/walk.js';

const file = (i: number, size: number): WalkEntry => ({ path: `base/1/${i}`, abs: `/d/base/1/${i}`, type: 'file', mode: 0o600, size, mtime: 0 });
const dir = (p: string): WalkEntry => ({ path: p, abs: `/d/${p}`, type: 'dir', mode: 0o700, size: 0, mtime: 0 });

describe('cutting the data directory into parts', () => {
  it('every directory goes into the first part; files in order, a part closed once the next file would pass the size', () => {
    const plan = planParts([dir('base'), file(1, 300), dir('base/1'), file(2, 300), file(3, 100)], 1024); // each file counts 512 bytes of tar header too
    expect(plan.map((p) => p.entries.map((e) => e.path))).toEqual([['base', 'base/1', 'base/1/1'], ['base/1/2', 'base/1/3']]);
    // A file larger than a part is never split: it makes a part of its own.
    expect(planParts([file(1, 10), file(2, 5000), file(3, 10)], 1024).map((p) => p.entries.length)).toEqual([1, 1, 1]);
  });

  it('caps the entries of a part, however small its files (a cluster of hundreds of thousands of 8 KiB files)', () => {
    const many = Array.from({ length: 2.5 * MAX_FILES_PER_PART }, (_, i) => file(i, 8192));
    const plan = planParts(many, 1024 ** 4);
    expect(plan.map((p) => p.entries.length)).toEqual([MAX_FILES_PER_PART, MAX_FILES_PER_PART, MAX_FILES_PER_PART / 2]);
    expect(plan.flatMap((p) => p.entries)).toHaveLength(many.length);
    expect(plan.map((p) => p.n)).toEqual([1, 2, 3]);
  });
});
