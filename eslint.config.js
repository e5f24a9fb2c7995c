// Lint for the TypeScript sources, the kernel and the tests (typescript-eslint's recommended
// rules; formatting is prettier's job, see .prettierrc.json).
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/", "build/", "node_modules/", ".cache/", "runs/", "notebooks/", "test/artifacts/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: "readonly",
        console: "readonly",
        Buffer: "readonly",
        setTimeout: "readonly",
        clearTimeout: "readonly",
        setInterval: "readonly",
        clearInterval: "readonly",
        performance: "readonly",
        URL: "readonly",
        AbortController: "readonly",
        AbortSignal: "readonly",
      },
    },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
    },
  },
  {
    // The classic Notebook extension: a RequireJS module running in the browser.
    files: ["kernel/nbextension/*.js"],
    languageOptions: {
      sourceType: "script",
      globals: { define: "readonly", window: "readonly", document: "readonly" },
    },
  },
);
