import { describe, expect, it } from 'vitest';
import { walOrder } from '../../src/agent/ready-queue.js';

describe('the agent takes .ready files in PostgreSQL order', () => {
  it('history files first, then the oldest names; a waiting call\'s file goes to the front', () => {
    const ready = ['000000020000000000000005', '00000002.history', '000000010000000000000004.partial', '000000020000000000000004', '000000010000000000000003.00000028.backup'];
    expect(walOrder(ready, undefined)).toEqual([
      '00000002.history',
      '000000010000000000000003.00000028.backup',
      '000000010000000000000004.partial',
      '000000020000000000000004',
      '000000020000000000000005',
    ]);
    expect(walOrder(ready, '000000020000000000000005')[0]).toBe('000000020000000000000005');
    expect(walOrder(ready, '000000020000000000000005')).toHaveLength(ready.length);
    // A request for a file that is not (or no longer) ready changes nothing.
    expect(walOrder(ready, '000000020000000000000009')[0]).toBe('00000002.history');
  });
});
