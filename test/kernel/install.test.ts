// The kernelspec installer: files, locations, module resolution from any directory, removal.
import { execFileSync, spawnSync } from "node:child_process";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installKernel, kernelsDir, logoPng, uninstallKernel } from "../../kernel/install.js";
import { packageRoot } from "../../src/paths.js";

const root = packageRoot();
const launcher = join(root, "dist", "kernel", "launch.js");
let tmp: string;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "primal-kernel-install-"));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

function jupyterAvailable(): boolean {
  return spawnSync("jupyter", ["--version"], { stdio: "ignore" }).status === 0;
}

describe("kernelsDir", () => {
  it("resolves --prefix and rejects conflicting options", () => {
    expect(kernelsDir({ prefix: "/opt/env" })).toBe("/opt/env/share/jupyter/kernels");
    expect(() => kernelsDir({ prefix: "/x", user: true })).toThrow(/one of/);
    expect(() => kernelsDir({ sysPrefix: true, user: true })).toThrow(/one of/);
  });

  it("asks Python for --sys-prefix", () => {
    const env = process.env.PRIMAL_PYTHON;
    process.env.PRIMAL_PYTHON = "primal-no-such-python";
    try {
      expect(() => kernelsDir({ sysPrefix: true })).toThrow(/PRIMAL_PYTHON/);
    } finally {
      if (env === undefined) delete process.env.PRIMAL_PYTHON;
      else process.env.PRIMAL_PYTHON = env;
    }
  });
});

describe("installKernel / uninstallKernel", () => {
  it.skipIf(!existsSync(launcher))("writes a complete kernelspec under --prefix", async () => {
    const prefix = join(tmp, "env");
    const msg = await installKernel({ prefix });
    const dir = join(prefix, "share", "jupyter", "kernels", "primal");
    expect(msg).toContain(dir);
    const spec = JSON.parse(readFileSync(join(dir, "kernel.json"), "utf8")) as {
      argv: string[];
      display_name: string;
      language: string;
      interrupt_mode: string;
      env: Record<string, string>;
    };
    expect(spec.display_name).toBe("PRIMAL (TypeScript)");
    expect(spec.language).toBe("typescript");
    expect(spec.interrupt_mode).toBe("signal");
    expect(spec.argv.at(-1)).toBe("{connection_file}");
    expect(spec.argv).toContain(launcher);
    expect(existsSync(spec.argv[0] as string)).toBe(true);
    // The kernelspec's node_modules (primal) first, then the dependencies' node_modules.
    const nodePath = (spec.env.NODE_PATH as string).split(delimiter);
    expect(nodePath[0]).toBe(join(dir, "node_modules"));
    expect(nodePath.slice(1).some((d) => existsSync(join(d, "apache-arrow")))).toBe(true);
    const link = join(dir, "node_modules", "primal");
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(realpathSync(link)).toBe(realpathSync(root));
    const png = readFileSync(join(dir, "logo-64x64.png"));
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    expect(png.readUInt32BE(16)).toBe(64);
    expect(readFileSync(join(dir, "logo-32x32.png")).readUInt32BE(16)).toBe(32);
    expect(readFileSync(join(dir, "logo-svg.svg"), "utf8")).toMatch(/^<svg/);

    // The classic Notebook extension that draws figures, with plotly.js beside it, enabled.
    const ext = join(prefix, "share", "jupyter", "nbextensions", "primal");
    expect(readFileSync(join(ext, "main.js"), "utf8")).toContain("register_mime_type(MIME, append, { safe: false");
    expect(readFileSync(join(ext, "plotly.min.js"), "utf8").slice(0, 200)).toMatch(/plotly\.js v\d/);
    const config = join(prefix, "etc", "jupyter", "nbconfig", "notebook.d", "primal.json");
    expect(JSON.parse(readFileSync(config, "utf8"))).toEqual({ load_extensions: { "primal/main": true } });
    expect(msg).toContain("JUPYTER_CONFIG_PATH");

    // Installing again replaces the spec in place.
    await installKernel({ prefix });
    expect(realpathSync(link)).toBe(realpathSync(root));
  });

  it.skipIf(!existsSync(launcher))(
    'lets `require("primal")` work from any directory through NODE_PATH',
    async () => {
      const prefix = join(tmp, "env-require");
      await installKernel({ prefix });
      const spec = JSON.parse(
        readFileSync(join(prefix, "share", "jupyter", "kernels", "primal", "kernel.json"), "utf8"),
      ) as {
        argv: string[];
        env: Record<string, string>;
      };
      const cwd = mkdtempSync(join(tmpdir(), "primal-anywhere-"));
      try {
        const out = execFileSync(
          spec.argv[0] as string,
          [
            "--disable-warning=ExperimentalWarning",
            "-e",
            'const p = require("primal"); const k = require("primal/kernel"); const a = require("apache-arrow"); console.log(typeof p.Trainer, typeof p.plots.loss, typeof k.show, typeof a.tableFromArrays)',
          ],
          { cwd, env: { ...process.env, ...spec.env }, encoding: "utf8" },
        );
        expect(out.trim()).toBe("function function function function");
      } finally {
        rmSync(cwd, { recursive: true, force: true });
      }
    },
    60_000,
  );

  it.skipIf(!existsSync(launcher) || !jupyterAvailable())(
    "is listed by `jupyter kernelspec list` with JUPYTER_PATH",
    async () => {
      const prefix = join(tmp, "env-list");
      await installKernel({ prefix });
      const out = execFileSync("jupyter", ["kernelspec", "list", "--json"], {
        env: { ...process.env, JUPYTER_PATH: join(prefix, "share", "jupyter"), PYDEVD_DISABLE_FILE_VALIDATION: "1" },
        encoding: "utf8",
      });
      const specs = (
        JSON.parse(out) as { kernelspecs: Record<string, { resource_dir: string; spec: { display_name: string } }> }
      ).kernelspecs;
      expect(specs.primal?.spec.display_name).toBe("PRIMAL (TypeScript)");
      expect(realpathSync(specs.primal?.resource_dir as string)).toBe(
        realpathSync(join(prefix, "share", "jupyter", "kernels", "primal")),
      );
    },
    60_000,
  );

  it.skipIf(!existsSync(launcher))("removes the spec but never the package behind the link", async () => {
    const prefix = join(tmp, "env-remove");
    await installKernel({ prefix });
    const dir = join(prefix, "share", "jupyter", "kernels", "primal");
    expect(await uninstallKernel({ prefix })).toContain(`Removed kernelspec "primal" from ${dir}`);
    expect(existsSync(dir)).toBe(false);
    expect(existsSync(join(prefix, "share", "jupyter", "nbextensions", "primal"))).toBe(false);
    expect(existsSync(join(prefix, "etc", "jupyter", "nbconfig", "notebook.d", "primal.json"))).toBe(false);
    expect(existsSync(join(root, "package.json"))).toBe(true);
    expect(existsSync(launcher)).toBe(true);
    expect(await uninstallKernel({ prefix })).toMatch(/nothing to remove/);
  });

  it("refuses to remove a kernelspec that is not PRIMAL's", async () => {
    const prefix = join(tmp, "env-foreign");
    const dir = join(prefix, "share", "jupyter", "kernels", "primal");
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, "kernel.json"),
      JSON.stringify({ argv: ["python3"], display_name: "Other", language: "python" }),
    );
    await expect(uninstallKernel({ prefix })).rejects.toThrow(/not a PRIMAL kernelspec/);
    expect(existsSync(join(dir, "kernel.json"))).toBe(true);
  });
});

describe("logoPng", () => {
  it("is a valid RGBA PNG of the requested size", () => {
    const png = logoPng(48);
    expect(png.toString("ascii", 12, 16)).toBe("IHDR");
    expect(png.readUInt32BE(16)).toBe(48);
    expect(png.readUInt32BE(20)).toBe(48);
    expect(png[25]).toBe(6);
    expect(png.toString("ascii", png.length - 8, png.length - 4)).toBe("IEND");
  });
});
