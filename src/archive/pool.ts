/**
 * Runs `work` over `items` with at most `limit` in flight; results in input
 * order. After the first failure no new item starts, and the call rejects
 * with that failure only once the items already in flight have settled:
 * whoever cleans up after a failure (a restore's or a drill's directory, a
 * backup's leftovers) must not race work that is still writing.
 */
export async function mapLimit<T, R>(items: readonly T[], limit: number, work: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failure: { readonly err: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < items.length) {
      const i = next++;
      try {
        out[i] = await work(items[i]!, i);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failure !== undefined) throw failure.err;
  return out;
}
