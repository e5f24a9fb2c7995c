// The variants of the stability map and their step size (docs/results.md). STE and fp have one
// step size, knobs.lr, so the multiplier m scales it. Poltergeist's knobs.lr moves only its fp
// parameters (embedding, norms); its ternary weights move by flips (flipRate) and its Ghost Scales
// by scaleLr. "poltergeist" and "bridgeOff" scale all three by m, so every parameter's step grows
// as it does under STE; "lrOnly" scales knobs.lr alone (flips and scales at their defaults).
export const DEFAULT_STEP = { lr: 3e-3, flipRate: 0.01, scaleLr: 0.01 };
export const VARIANTS = ["ste", "poltergeist", "bridgeOff", "lrOnly", "fp"];

const r6 = (x) => Number(x.toPrecision(6));

/** The config fields (dotted keys) of a variant at multiplier m; null where it is not a point of its own. */
export function variantFields(variant, m) {
  switch (variant) {
    case "ste":
    case "fp":
      return { quant: variant, "knobs.lr": r6(DEFAULT_STEP.lr * m) };
    case "poltergeist":
    case "bridgeOff":
      return {
        quant: "poltergeist",
        ...(variant === "bridgeOff" ? { "knobs.bridge": null } : {}),
        "knobs.lr": r6(DEFAULT_STEP.lr * m),
        "knobs.flipRate": r6(DEFAULT_STEP.flipRate * m),
        "knobs.scaleLr": r6(DEFAULT_STEP.scaleLr * m),
      };
    case "lrOnly": // at m = 1 it is the "poltergeist" point itself
      return m === 1 ? null : { quant: "poltergeist", "knobs.lr": r6(DEFAULT_STEP.lr * m) };
    default:
      throw new Error(`unknown variant ${variant}; one of ${VARIANTS.join(", ")}`);
  }
}

/** The same fields as a nested trainer config (quant, knobs). */
export function variantConfig(variant, m) {
  const f = variantFields(variant, m) ?? variantFields("poltergeist", m);
  const cfg = { knobs: {} };
  for (const [k, v] of Object.entries(f)) {
    if (k.startsWith("knobs.")) cfg.knobs[k.slice(6)] = v;
    else cfg[k] = v;
  }
  return cfg;
}
