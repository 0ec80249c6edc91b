/**
 * A small seeded PRNG (mulberry32) for fault tests: the same seed gives the
 * same sequence of faults, kill points and choices, so a failing run can be
 * repeated with WALSHIP_FAULT_SEED.
 */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed for this run: WALSHIP_FAULT_SEED, or a fixed default so that `npm test` is repeatable. */
export function faultSeed(): number {
  const v = process.env.WALSHIP_FAULT_SEED;
  return v !== undefined && v !== '' ? Number.parseInt(v, 10) >>> 0 : 0x5eed;
}

/** Iterations for a fault loop: WALSHIP_FAULT_ITERATIONS (npm run soak raises it) or the default. */
export function faultIterations(dflt: number): number {
  const v = Number.parseInt(process.env.WALSHIP_FAULT_ITERATIONS ?? '', 10);
  return Number.isInteger(v) && v > 0 ? v : dflt;
}
