// Philox4x32-10 in plain JavaScript, to recompute the engine's random streams independently
// in tests (not a test file itself).

/** 32x32 -> 64-bit product as [lo, hi], exact in doubles. */
export function mulhilo(a: number, b: number): [number, number] {
  const al = a & 0xffff,
    ah = a >>> 16,
    bl = b & 0xffff,
    bh = b >>> 16;
  const ll = al * bl;
  const mid = ah * bl + al * bh + (ll >>> 16); // < 2^34: exact
  const hi = (ah * bh + Math.floor(mid / 65536)) >>> 0;
  return [Math.imul(a, b) >>> 0, hi];
}

/** Counter c (4 words), key (2 words) -> 4 words. */
export function philox(c: readonly number[], key: readonly number[]): number[] {
  let [c0, c1, c2, c3] = c.map((x) => x >>> 0) as [number, number, number, number];
  let k0 = key[0]! >>> 0,
    k1 = key[1]! >>> 0;
  for (let r = 0; r < 10; r++) {
    const [lo0, hi0] = mulhilo(0xd2511f53, c0);
    const [lo1, hi1] = mulhilo(0xcd9e8d57, c2);
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
    k0 = (k0 + 0x9e3779b9) >>> 0;
    k1 = (k1 + 0xbb67ae85) >>> 0;
  }
  return [c0, c1, c2, c3];
}
