// Lists every skipped test by name at the end of a run: a test that did not run says so and why
// (the reason is in its title or its skip note), so a skip is never mistaken for a pass.
import type { Reporter, TestModule } from "vitest/node";
import { relative } from "node:path";

export default class SkippedReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const lines: string[] = [];
    for (const mod of testModules) {
      for (const test of mod.children.allTests()) {
        const result = test.result();
        if (result.state !== "skipped") continue;
        const note = result.note ? ` (${result.note})` : "";
        lines.push(`  ${relative(process.cwd(), mod.moduleId)} > ${test.fullName}${note}`);
      }
    }
    if (lines.length === 0) return;
    process.stdout.write(`\nSkipped tests (${lines.length}):\n${lines.join("\n")}\n`);
  }
}
