#!/usr/bin/env node
// tessera-build: turns a TypeScript plugin into a Tessera component.
//
//   tessera-build [--entry src/index.ts] [--out dist/<package>.wasm] [--wit <dir>] [--no-check]
//   tessera-build --check-only     (the type check alone)
//
// 1. type-checks the plugin with its tsconfig.json (unless --no-check);
// 2. bundles the entry and the SDK into one ES module with esbuild (the host's
//    interfaces, `tessera:plugin/...`, stay imports);
// 3. componentizes it with componentize-js against `tessera:plugin@0.2.0`, picking the
//    world from what the entry exports (`aggregate`, `projector` or `querier`), with
//    fetch and wasi:http left out: the host offers neither, and a component that
//    imports them is refused; componentize-js's generated glue is tightened on the
//    way (bindings.mjs);
// 4. checks that the component imports no wasi:http, and writes it.
//
// It calls componentize-js directly (not `jco componentize`), so none of jco's CLI
// set-up (its nested componentize-js, the preview2-shim pin) is in the way.

import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const sdkDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const WORLDS = { aggregate: "command-handler", projector: "projection", querier: "query-handler" };
const CONTRACT = "0.2.0";

function usage(message) {
  console.error(`tessera-build: ${message}`);
  console.error("usage: tessera-build [--entry src/index.ts] [--out dist/NAME.wasm] [--wit DIR] [--no-check | --check-only]");
  process.exit(2);
}

const options = { entry: "src/index.ts", out: undefined, wit: undefined, check: true, checkOnly: false, keepHttp: false };
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const arg = args[i];
  const value = () => args[++i] ?? usage(`${arg} needs a value`);
  if (arg === "--entry") options.entry = value();
  else if (arg === "--out") options.out = value();
  else if (arg === "--wit") options.wit = value();
  else if (arg === "--no-check") options.check = false;
  else if (arg === "--check-only") options.checkOnly = true;
  // Only for the host's own test of how it refuses such a component (tests/differential.rs).
  else if (arg === "--keep-wasi-http-for-tests") options.keepHttp = true;
  else usage(`unknown argument ${arg}`);
}

const pkg = JSON.parse(await readFile("package.json", "utf8"));
const out = path.resolve(options.out ?? `dist/${pkg.name.replace(/^@.*\//, "")}.wasm`);
// The WIT lives in the repository (`wit/`, two folders above the SDK); TESSERA_WIT or
// --wit points elsewhere.
const wit = path.resolve(options.wit ?? process.env.TESSERA_WIT ?? path.join(sdkDir, "..", "..", "wit"));
if (!existsSync(path.join(wit, "tessera.wit"))) usage(`no tessera.wit in ${wit}; pass --wit`);

const started = Date.now();
if ((options.check || options.checkOnly) && existsSync("tsconfig.json")) {
  const tsc = path.join(sdkDir, "node_modules", "typescript", "bin", "tsc");
  const checked = spawnSync(process.execPath, [tsc, "--noEmit", "-p", "tsconfig.json"], { stdio: "inherit" });
  if (checked.status !== 0) {
    console.error("tessera-build: the type check failed (--no-check skips it)");
    process.exit(1);
  }
}

if (options.checkOnly) process.exit(0);

const esbuild = await import("esbuild");
const work = path.join(path.dirname(out), ".tessera-build");
await mkdir(work, { recursive: true });
const bundle = path.join(work, "bundle.js");
const bundled = await esbuild.build({
  entryPoints: [options.entry],
  bundle: true,
  format: "esm",
  platform: "neutral",
  target: "es2022",
  outfile: bundle,
  external: ["tessera:*", "wasi:*"],
  metafile: true,
  logLevel: "warning",
});
const exported = Object.values(bundled.metafile.outputs)[0]?.exports ?? [];
const kinds = exported.filter((name) => name in WORLDS);
if (kinds.length !== 1) {
  usage(
    `${options.entry} must export exactly one of ${Object.keys(WORLDS).join(", ")} ` +
      `(e.g. \`export const aggregate = commandHandler({...})\`); it exports ${exported.join(", ") || "nothing"}`,
  );
}
const world = `tessera:plugin/${WORLDS[kinds[0]]}@${CONTRACT}`;

const { componentize } = await import("@bytecodealliance/componentize-js");
// componentize-js's glue, rewritten to run faster (bindings.mjs says how and why).
const { useTightenedBindings } = await import("./bindings.mjs");
await useTightenedBindings();
const { component } = await componentize({
  sourcePath: bundle,
  witPath: wit,
  worldName: world,
  // The host gives plugins no network: without these the engine imports wasi:http.
  disableFeatures: options.keepHttp ? [] : ["http", "fetch-event"],
});
const bytes = Buffer.from(component);
const { componentWit } = await import("@bytecodealliance/jco");
const unoffered = (await componentWit(bytes))
  .split("\n")
  .map((line) => line.trim())
  .filter((line) => line.startsWith("import wasi:http/"));
if (unoffered.length > 0 && !options.keepHttp) {
  console.error(`tessera-build: the component imports what the host does not offer: ${unoffered.join(" ")}`);
  process.exit(1);
}
await mkdir(path.dirname(out), { recursive: true });
await writeFile(out, bytes);
const mb = (bytes.length / 1e6).toFixed(1);
console.log(`tessera-build: ${path.relative(process.cwd(), out)} (${world}, ${mb} MB) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
