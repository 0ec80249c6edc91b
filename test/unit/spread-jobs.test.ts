import { describe, expect, it } from 'vitest';
import { spreadJobs, type Offload } from '../../src/child/index.js';

/** An Offload that records what it ran and how many ran at once; jobs finish when released. */
function fakeAway(slots: number, fail?: number) {
  const ran: number[] = [];
  let now = 0;
  let most = 0;
  let closed = 0;
  const away: Offload<number, string> = {
    slots,
    run: async (job, onBytes) => {
      ran.push(job);
      most = Math.max(most, ++now);
      await new Promise((r) => setImmediate(r));
      onBytes?.(10);
      now--;
      if (job === fail) throw new Error(`job ${job} failed away`);
      return `away ${job}`;
    },
    close: async () => void closed++,
  };
  return { away, ran, most: () => most, closed: () => closed };
}

describe('spreadJobs: up to the offload\'s slots away, the rest here', () => {
  it('never puts more than its slots away at once, keeps the order of results, reports each as it finishes, and closes the offload at the end', async () => {
    const f = fakeAway(1);
    const done: string[] = [];
    let bytes = 0;
    const r = await spreadJobs([1, 2, 3, 4, 5, 6], {
      limit: 3,
      here: async (j) => {
        await new Promise((res) => setImmediate(res));
        return `here ${j}`;
      },
      away: f.away,
      onBytes: (n) => (bytes += n),
      onDone: (res, job) => done.push(`${job}:${res}`),
    });
    expect(r.map((x) => x.split(' ')[1])).toEqual(['1', '2', '3', '4', '5', '6']);
    expect(f.ran.length).toBeGreaterThan(0);
    expect(f.most()).toBe(1);
    expect(r.filter((x) => x.startsWith('away')).length).toBe(f.ran.length);
    expect(bytes).toBe(10 * f.ran.length);
    expect(done.sort()).toEqual(r.map((x, i) => `${i + 1}:${x}`).sort());
    expect(f.closed()).toBe(1);
  });

  it('closes the offload at the first failure, before the others finish, and rethrows it', async () => {
    const f = fakeAway(1);
    let closedWhenHereFailed = -1;
    const err = await spreadJobs([1, 2], {
      limit: 2,
      here: async () => {
        closedWhenHereFailed = f.closed();
        throw new Error('here failed');
      },
      away: f.away,
    }).catch((e: unknown) => e);
    expect((err as Error).message).toBe('here failed');
    expect(closedWhenHereFailed).toBe(0);
    // Once at the failure, once more on the way out.
    expect(f.closed()).toBe(2);
  });

  it('without an offload, everything runs here', async () => {
    expect(await spreadJobs([1, 2, 3], { limit: 2, here: async (j) => j * 2 })).toEqual([2, 4, 6]);
  });
});
