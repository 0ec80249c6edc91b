import type { Archived, Pusher } from './pusher.js';

/** A pusher that reports each file it archived (the async second store's loop wants to know). */
export function notifyingPusher(inner: Pusher, onArchived: (a: Archived) => void): Pusher {
  return {
    slots: inner.slots,
    async archive(path: string): Promise<Archived> {
      const a = await inner.archive(path);
      onArchived(a);
      return a;
    },
    close: () => inner.close(),
  };
}
