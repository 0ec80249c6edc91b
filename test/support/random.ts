import { prng } from './prng.js';

/** A small seeded PRNG, so a failing crash test can be replayed with its seed (WALSHIP_TEST_SEED). */
export const seededRandom = prng;

export function testSeed(): number {
  const s = Number(process.env.WALSHIP_TEST_SEED);
  return Number.isInteger(s) ? s : Math.floor(Math.random() * 2 ** 31);
}
