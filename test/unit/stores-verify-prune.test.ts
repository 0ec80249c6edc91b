import { describe, expect, it } from 'vitest';
import { compareStores, renderComparison } from '../../src/archive/compare-stores.js';
import { takeInventory } from '../../src/archive/inventory.js';
import { ArchiveChangedError, StoreUnavailableError } from '../../src/errors.js';
import { executeRetentionInStores, planRetention, type RetentionPlan } from '../../src/retention/index.js';
import type { Store } from '../../src/store/index.js';
import { FailingStore } from '../support/failing-store.js';
import { ListingStore } from '../support/listing-store.js';

/**
 * verify's comparison of the two stores (what one has and the other lacks,
 * lag versus problem by mode) and prune over both stores (one plan from the
 * first store, carried out in the second store first).
 */
const SS = 16 * 1024 * 1024;
const hex8 = (n: number) => n.toString(16).toUpperCase().padStart(8, '0');
const seg = (n: number) => `0000000100000000${hex8(n)}`;
const walKey = (n: number) => `wal/00000001/${seg(n)}`;
const segs = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => walKey(from + i));

/** A listing store under a name of its own (both ListingStores hold the same archive id). */
function store(name: string, keys: readonly string[], segmentSize = SS): ListingStore & { description: string } {
  const s = new ListingStore(segmentSize, keys);
  Object.defineProperty(s, 'description', { value: `memory://${name}` });
  return s as ListingStore & { description: string };
}

describe('compareStores', () => {
  const history = 'history/00000002.history';
  const descriptor = 'backups/20261101T000000Z-00000001/descriptor';
  const part = 'backups/20261101T000000Z-00000001/part-000001';

  it('stores holding the same files agree, in either mode', async () => {
    const keys = [...segs(1, 5), history, descriptor, part, 'backups/20261101T000000Z-00000001/started'];
    for (const mode of ['sync', 'async'] as const) {
      const c = await compareStores(store('a', keys), store('b', keys), mode);
      expect(c).toMatchObject({ missingInSecond: [], missingInFirst: [], problems: [], failed: undefined });
      // WAL, history and the backup descriptor; parts and markers are not compared.
      expect(c.compared).toBe(7);
      expect(renderComparison(c)).toContain('both stores hold the same 7 files');
    }
  });

  it('sync: every key the second store lacks is named and is a problem', async () => {
    const c = await compareStores(store('a', [...segs(1, 5), history, descriptor]), store('b', [...segs(1, 2), walKey(4)]), 'sync');
    expect(c.missingInSecond).toEqual([descriptor, walKey(3), walKey(5), history].sort());
    expect(c.missingInFirst).toEqual([]);
    expect(c.problems).toHaveLength(1);
    expect(c.problems[0]).toMatch(/^4 files in the first store memory:\/\/a but not in the second memory:\/\/b, although WALSHIP_STORE2_MODE=sync/);
    const text = renderComparison(c);
    for (const k of c.missingInSecond) expect(text).toContain(`  ${k}\n`);
    expect(text).toContain('PROBLEM  missing in the second store');
  });

  it('async: what the second store lacks is lag, reported and named, not a problem', async () => {
    const c = await compareStores(store('a', segs(1, 5)), store('b', segs(1, 3)), 'async');
    expect(c.missingInSecond).toEqual([walKey(4), walKey(5)]);
    expect(c.problems).toEqual([]);
    const text = renderComparison(c);
    expect(text).toMatch(/LAG {6}the second store lacks 2 files the first has \(async mode/);
    expect(text).toContain(walKey(4));
    expect(text).toContain(walKey(5));
  });

  it('what the first store lacks and the second has is a problem in both modes, every key named', async () => {
    for (const mode of ['sync', 'async'] as const) {
      const c = await compareStores(store('a', [walKey(1), walKey(3)]), store('b', segs(1, 3)), mode);
      expect(c.missingInFirst).toEqual([walKey(2)]);
      expect(c.problems).toEqual([expect.stringMatching(/^1 file in the second store memory:\/\/b but not in the first memory:\/\/a/)]);
      expect(renderComparison(c)).toContain(`PROBLEM  missing in the first store, present in the second:\n  ${walKey(2)}\n`);
    }
  });

  it('names at most `limit` keys per side in text, and says how many more', async () => {
    const c = await compareStores(store('a', segs(1, 30)), store('b', []), 'async');
    expect(c.missingInSecond).toHaveLength(30);
    const text = renderComparison(c, 10);
    expect(text).toContain(walKey(10));
    expect(text).not.toContain(walKey(11));
    expect(text).toContain('… and 20 more (--json lists all)');
  });

  it('sync: a key that appears in the second store while comparing (a push under way) is not reported', async () => {
    const second = store('b', segs(1, 2));
    const spy: Store = Object.assign(Object.create(second) as Store, {
      head: async (key: string) => (key === walKey(3) ? { size: 1, metadata: undefined } : undefined),
    });
    const c = await compareStores(store('a', segs(1, 4)), spy, 'sync');
    expect(c.missingInSecond).toEqual([walKey(4)]);
  });

  it('a second store that is down cannot be compared: failed, no problem claimed', async () => {
    const down = new FailingStore(store('b', segs(1, 3)));
    down.down = true;
    const c = await compareStores(store('a', segs(1, 3)), down, 'sync');
    expect(c.failed).toMatch(/memory:\/\/b.*failed \(test: the store is down\)/);
    expect(c.problems).toEqual([]);
    expect(renderComparison(c)).toContain('COULD NOT COMPARE the stores');
  });

  it('a second store holding another archive is not compared key by key: failed, saying so', async () => {
    // Another segment size gives another manifest, so another (derived) archive id.
    const c = await compareStores(store('a', segs(1, 3)), store('b', segs(1, 3), 1 << 20), 'sync');
    expect(c.failed).toMatch(/holds archive .* but the first store holds archive/);
  });
});

describe('prune over both stores', () => {
  const NOW = new Date('2026-12-01T12:00:00Z');

  async function planBefore(first: Store, n: number): Promise<{ plan: RetentionPlan; manifest: Awaited<ReturnType<typeof takeInventory>>['manifest'] }> {
    const inv = await takeInventory(first);
    const outcome = planRetention({ inv, backups: [], unreadable: [], labels: [], request: { kind: 'before', segment: seg(n) }, now: NOW });
    if (!outcome.ok) throw new Error(outcome.refusal);
    return { plan: outcome.plan, manifest: inv.manifest };
  }

  it('deletes the first store\'s plan from both stores, the second store first, oldest first in each', async () => {
    const first = store('a', segs(1, 10));
    const second = store('b', segs(1, 10));
    const { plan, manifest } = await planBefore(first, 6);
    const order: string[] = [];
    const r = await executeRetentionInStores(first, second, manifest, plan, (p) => order.push(p.store));
    expect(first.deleted).toEqual(segs(1, 5));
    expect(second.deleted).toEqual(segs(1, 5));
    expect(r.first.walDeleted).toBe(5);
    expect(r.second?.walDeleted).toBe(5);
    expect(order[0]).toBe('memory://b');
    expect(order.at(-1)).toBe('memory://a');
  });

  it('a lagging second store: keys it never had are no error', async () => {
    const first = store('a', segs(1, 10));
    const second = store('b', segs(3, 8));
    const { plan, manifest } = await planBefore(first, 6);
    await executeRetentionInStores(first, second, manifest, plan);
    const left = [];
    for await (const o of second.list('wal/')) left.push(o.key);
    expect(left).toEqual(segs(6, 8));
  });

  it('the second store down: fails before anything is deleted anywhere; run again once it is back, and both are pruned', async () => {
    const first = store('a', segs(1, 10));
    const inner = store('b', segs(1, 10));
    const second = new FailingStore(inner);
    second.down = true;
    const { plan, manifest } = await planBefore(first, 6);
    await expect(executeRetentionInStores(first, second, manifest, plan)).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(first.deleted).toEqual([]);
    second.down = false;
    const again = await planBefore(first, 6);
    await executeRetentionInStores(first, second, again.manifest, again.plan);
    expect(first.deleted).toEqual(segs(1, 5));
    expect(inner.deleted).toEqual(segs(1, 5));
  });

  it('the first store failing after the second was pruned: a new plan from the first store still names what is left', async () => {
    const innerFirst = store('a', segs(1, 10));
    const first = new FailingStore(innerFirst);
    const second = store('b', segs(1, 10));
    const { plan, manifest } = await planBefore(first, 6);
    // The first store goes down once the second store is done.
    const failing = executeRetentionInStores(first, second, manifest, plan, (p) => {
      if (p.store === 'memory://b' && p.done === p.total) first.down = true;
    });
    await expect(failing).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(second.deleted).toEqual(segs(1, 5));
    expect(innerFirst.deleted).toEqual([]);
    first.down = false;
    const again = await planBefore(first, 6);
    expect(again.plan.wal.remove.map((f) => f.key)).toEqual(segs(1, 5));
    await executeRetentionInStores(first, second, again.manifest, again.plan);
    expect(innerFirst.deleted).toEqual(segs(1, 5));
  });

  it('never deletes from a second store that holds another archive', async () => {
    const first = store('a', segs(1, 10));
    const other = store('b', segs(1, 10), 1 << 20);
    const { plan, manifest } = await planBefore(first, 6);
    await expect(executeRetentionInStores(first, other, manifest, plan)).rejects.toBeInstanceOf(ArchiveChangedError);
    expect(other.deleted).toEqual([]);
    expect(first.deleted).toEqual([]);
  });

  it('one store: the plan as before', async () => {
    const first = store('a', segs(1, 10));
    const { plan, manifest } = await planBefore(first, 4);
    const r = await executeRetentionInStores(first, undefined, manifest, plan);
    expect(r.second).toBeUndefined();
    expect(first.deleted).toEqual(segs(1, 3));
  });
});
