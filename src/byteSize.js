// Memory sizes as users write them: a number of bytes, or "10GiB", "512 MiB", "8GB", "1.5e9".
// Binary units (KiB, MiB, GiB, TiB) are powers of 1024, decimal ones (KB, MB, GB, TB) of 1000, so
// "10GiB" means exactly what nvidia-smi's MiB column and the "10 GiB" mean.
const UNITS = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};
/** Bytes for a size; throws with the accepted forms on anything else. */
export function parseByteSize(v, what = "size") {
  if (typeof v === "number") {
    if (!Number.isFinite(v) || v < 0) throw new Error(`${what}: must be a byte count >= 0, got ${v}`);
    return Math.floor(v);
  }
  const m = /^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$/i.exec(v);
  const unit = m ? (m[2] ?? "").toLowerCase() || "b" : "";
  const mult = UNITS[unit];
  if (!m || mult === undefined)
    throw new Error(`${what}: '${v}' is not a size (use bytes, or a number with B, KB, MB, GB, KiB, MiB, GiB, TiB)`);
  return Math.floor(Number(m[1]) * mult);
}
/** "7.24 GiB" style, for messages and tables. */
export function formatBytes(n) {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} B`;
}
