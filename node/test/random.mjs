// Seeded randomness for the randomised tests: the same seed gives the same run, so a failure can
// be replayed (DLOCK_SEED=<seed>). No Redis, no component: usable by tests of pure logic.

/** A generator over 32-bit `seed` (mulberry32). */
export function seeded(seed) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo, hi) => lo + Math.floor(next() * (hi - lo + 1));
  return {
    next,
    /** An integer in [lo, hi]. */
    int,
    pick: (items) => items[int(0, items.length - 1)],
    chance: (p) => next() < p,
    /** A shuffled copy of `items`. */
    shuffled(items) {
      const out = [...items];
      for (let i = out.length - 1; i > 0; i--) {
        const j = int(0, i);
        [out[i], out[j]] = [out[j], out[i]];
      }
      return out;
    },
  };
}

/** The seeds of `count` cases: from DLOCK_SEED (that one case alone) if set, else fresh. */
export function seeds(count) {
  const given = process.env.DLOCK_SEED;
  if (given !== undefined && given !== '') return [Number(given) >>> 0];
  const first = (Math.random() * 2 ** 32) >>> 0;
  return Array.from({ length: count }, (_, i) => (first + i) >>> 0);
}

/** Runs `fn(rng)` for `seed`; a failure's message starts with the seed that replays it. */
export async function withSeed(seed, fn) {
  try {
    await fn(seeded(seed));
  } catch (e) {
    const replay = `seed ${seed} (replay: DLOCK_SEED=${seed})`;
    console.error(`failed with ${replay}`);
    if (e instanceof Error) {
      e.message = `${replay}: ${e.message}`;
      throw e;
    }
    throw new Error(`${replay}: ${e}`, { cause: e });
  }
}
