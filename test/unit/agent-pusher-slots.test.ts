import { describe, expect, it } from 'vitest';
import { workerThreadSlots } from '../../src/agent/pusher-mixed.js';

describe('how the agent spreads its slots over threads', () => {
  it('keeps every file on its own thread on two cores or fewer', () => {
    expect(workerThreadSlots(2, 2)).toBe(0);
    expect(workerThreadSlots(1, 1)).toBe(0);
    expect(workerThreadSlots(8, 2)).toBe(0);
  });

  it('uses one worker thread per core beyond two, and always keeps a slot on its own thread', () => {
    expect(workerThreadSlots(4, 4)).toBe(2);
    expect(workerThreadSlots(16, 16)).toBe(14);
    expect(workerThreadSlots(3, 16)).toBe(2);
    expect(workerThreadSlots(1, 16)).toBe(0);
  });
});
