// `primal repair RUN`: the text report of a repair (the work is in src/tracking/repair.ts).
import { repairRun, type RepairReport } from "../tracking/repair.js";

export { repairRun };

export function formatRepair(r: RepairReport): string {
  if (!r.repaired) return `${r.run}: nothing is damaged; nothing was changed`;
  const lines = [`repaired ${r.run}`];
  for (const s of r.streams) {
    const rows = s.file.endsWith(".arrows") ? "rows" : "records";
    const last = s.lastStep !== undefined ? `, up to step ${s.lastStep ?? "-"}` : "";
    lines.push(`  ${s.file}: kept ${s.keptRows} ${rows} (${s.keptBytes} of ${s.originalBytes} bytes${last})`);
    lines.push(`    damage: ${s.damage}`);
  }
  if (r.checkpointsSetAside.length > 0)
    lines.push(`  ${r.checkpointsSetAside.length} newer checkpoint(s) set aside; resume trains the lost steps again`);
  lines.push(`  resume continues from ${r.resumeFrom ?? "(no checkpoint)"}`);
  if (r.gap) lines.push(`  rows of steps ${r.gap.fromStep}..${r.gap.toStep} are lost (no checkpoint before them)`);
  lines.push(`  originals (never deleted): ${r.setAside}`);
  return lines.join("\n");
}
