#!/usr/bin/env node
// tessera-test: runs a TypeScript plugin's own tests natively, with no host.
//
//   tessera-test [--no-check]
//
// 1. type-checks the plugin and its tests with its tsconfig.json (unless --no-check);
// 2. bundles each `test/*.test.ts` with esbuild, as `tessera-build` bundles a plugin,
//    but for Node: the host's interfaces (`tessera:plugin/...`) are linked to native
//    stand-ins (`src/native/`: the log writes to stderr; SQL fails, as outside a host);
// 3. runs them with `node --test` and exits with its status.
//
// Tests use `node:test` and the SDK's given/when/then (`@tessera/sdk/testing`).

import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const sdkDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const NATIVE = {
  "tessera:plugin/log@0.2.0": path.join(sdkDir, "src", "native", "log.ts"),
  "tessera:plugin/projection-store@0.2.0": path.join(sdkDir, "src", "native", "no-host.ts"),
  "tessera:plugin/read-store@0.2.0": path.join(sdkDir, "src", "native", "no-host.ts"),
};

const args = process.argv.slice(2);
const check = !args.includes("--no-check");
for (const arg of args) {
  if (arg !== "--no-check") {
    console.error(`tessera-test: unknown argument ${arg}\nusage: tessera-test [--no-check]`);
    process.exit(2);
  }
}

const tests = existsSync("test") ? readdirSync("test").filter((f) => f.endsWith(".test.ts")).sort() : [];
if (tests.length === 0) {
  console.error("tessera-test: no test/*.test.ts here");
  process.exit(1);
}

if (check && existsSync("tsconfig.json")) {
  const tsc = path.join(sdkDir, "node_modules", "typescript", "bin", "tsc");
  const checked = spawnSync(process.execPath, [tsc, "--noEmit", "-p", "tsconfig.json"], { stdio: "inherit" });
  if (checked.status !== 0) {
    console.error("tessera-test: the type check failed (--no-check skips it)");
    process.exit(1);
  }
}

const esbuild = await import("esbuild");
const out = path.resolve("dist", ".tessera-test");
await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
const native = {
  name: "tessera-native-host",
  setup(build) {
    build.onResolve({ filter: /^tessera:/ }, (args) => {
      const stand_in = NATIVE[args.path];
      if (stand_in === undefined) return { errors: [{ text: `${args.path} is no interface of tessera:plugin@0.2.0` }] };
      return { path: stand_in };
    });
  },
};
await esbuild.build({
  entryPoints: tests.map((t) => path.join("test", t)),
  bundle: true,
  format: "esm",
  platform: "node",
  target: "node20",
  outdir: out,
  outExtension: { ".js": ".mjs" },
  external: ["node:*"],
  plugins: [native],
  logLevel: "warning",
});
const files = tests.map((t) => path.join(out, t.replace(/\.ts$/, ".mjs")));
const run = spawnSync(process.execPath, ["--test", ...files], { stdio: "inherit" });
process.exit(run.status ?? 1);
