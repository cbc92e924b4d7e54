// Tightens the JavaScript glue componentize-js generates between the component ABI and
// a plugin's exports, before it is pre-initialised into the component.
//
// The glue costs a TypeScript plugin more than its own code does on a small command,
// for three reasons this rewrite removes:
// - componentize-js (0.23) evaluates the glue as a classic script, so every helper and
//   binding it declares at the top (`$memory`, `dataView`, the text decoder, the
//   plugin's bound `handle`) is a global, and each use in a call is a name lookup
//   through the global object, which SpiderMonkey's interpreter (no inline caches in a
//   Wasm build) pays in full;
// - each export is an `async` function that awaits the plugin's answer: a generator
//   object, a promise with its creation stack recorded, and the second half of the call
//   run as a job of the event loop, though the SDK's exports always answer at once;
// - it logs through `_debugLog`, which only prints under `process.env.JCO_DEBUG` (there
//   is no `process` in a component) but builds its arguments all the same.
//
// So, on the glue's syntax tree:
// 1. the `_debugLog(...)` statements are removed;
// 2. each export loses `async`, and its `await x` becomes `settled(x)`, which hands `x`
//    on, or throws if it is a promise (a plugin's exports must answer synchronously, as
//    the SDK's do: the host has nothing for a promise to wait on); the export the
//    engine calls runs it and returns a promise already settled with its result, as
//    the engine expects;
// 3. the whole is wrapped in a function, so its declarations become closure variables,
//    and the functions the engine calls by name (the exports, `bindExports`) are put on
//    `globalThis` at its end;
// 4. the string writer counts a string's UTF-8 bytes with `TextEncoder.encode` instead
//    of an interpreted loop over its characters (same bytes written);
// 5. each export reads its argument record (a command's nine strings are eighteen
//    pointers and lengths) on one `DataView` at its start, instead of through the
//    `dataView($memory)` helper, a call and two buffer checks, per field.
// The same code then runs on the same values, in one step. A warm `handle` of the
// TypeScript bank went from about 0.21 ms to 0.16 ms with 1-3, and its CPU time in
// process (the benchmark's `languages-ts-call-cpu`) from 49 to 38 µs with 4 and 5. If
// componentize-js's glue ever stops having the shape this expects, the build fails and
// says so rather than guess.

import { parseSync } from "oxc-parser";

/** Why a plugin call failed when an export answered with a promise. */
export const PROMISE_REFUSED =
  "a Tessera plugin's exported functions answer synchronously; this one returned a promise";

const FUNCTIONS = new Set(["FunctionDeclaration", "FunctionExpression", "ArrowFunctionExpression"]);

/** Calls `found` on every node under `node` (itself included) that `wanted` accepts, not
 * looking inside nested functions when `nested` is false. */
function walk(node, wanted, found, nested = true) {
  if (node === null || typeof node !== "object") return;
  if (Array.isArray(node)) {
    for (const child of node) walk(child, wanted, found, nested);
    return;
  }
  if (wanted(node)) {
    found(node);
    return;
  }
  if (!nested && FUNCTIONS.has(node.type)) return;
  for (const key in node) if (key !== "parent") walk(node[key], wanted, found, nested);
}

/**
 * The glue's string writer, counting UTF-8 bytes natively (`TextEncoder.encode`) rather
 * than in an interpreted loop over each character; the bytes written are the same
 * (a lone surrogate becomes U+FFFD either way).
 */
const ENCODE = `function _utf8AllocateAndEncode(s, realloc, memory) {
  if (typeof s !== 'string') {
    throw new TypeError('expected a string, received [' + typeof s + ']');
  }
  if (s.length === 0) { return { ptr: 1, len: 0 }; }
  const bytes = TEXT_ENCODER_UTF8.encode(s);
  const len = bytes.length;
  const ptr = realloc(0, 0, 1, len);
  new Uint8Array(memory.buffer, ptr, len).set(bytes);
  return { ptr, len };
}`;

/** `dataView($memory).getUint32(arg0 + 4, true)` and the like: a read of an export's
 * argument record at a fixed offset. Returns the parameter, method and offset. */
function argumentRead(node, params) {
  if (node.type !== "CallExpression" || node.callee.type !== "MemberExpression") return undefined;
  const view = node.callee.object;
  const method = node.callee.property?.name ?? "";
  if (
    view.type !== "CallExpression" ||
    view.callee.type !== "Identifier" ||
    view.callee.name !== "dataView" ||
    view.arguments.length !== 1 ||
    view.arguments[0].type !== "Identifier" ||
    view.arguments[0].name !== "$memory" ||
    !/^(get|set)/.test(method)
  ) {
    return undefined;
  }
  const at = node.arguments[0];
  if (
    at?.type !== "BinaryExpression" ||
    at.operator !== "+" ||
    at.left.type !== "Identifier" ||
    !params.has(at.left.name) ||
    at.right.type !== "Literal" ||
    typeof at.right.value !== "number"
  ) {
    return undefined;
  }
  return { param: at.left.name, method, offset: at.right.value };
}

/**
 * The reads of an export's argument records (`dataView($memory).getX(arg0 + N, true)`,
 * one `DataView` check and call each, spread through the lifting of each field),
 * made once at the export's start on one `DataView`, each use then a local. Safe
 * because the glue never writes an argument record (a parameter it writes through,
 * such as the return area, is left alone) and nothing can move the memory before the
 * export's first statement; read later, between two strings' decoding, the memory may
 * have grown, which is why the glue checks its `DataView` at every read.
 */
function hoistArgumentReads(js, fn) {
  const params = new Set(fn.params.map((p) => p.name));
  const reads = [];
  const written = new Set();
  walk(
    fn.body,
    (node) => argumentRead(node, params) !== undefined,
    (node) => {
      const read = argumentRead(node, params);
      if (read.method.startsWith("set")) written.add(read.param);
      else reads.push({ node, ...read });
    },
    false,
  );
  const kept = reads.filter((read) => !written.has(read.param));
  if (kept.length === 0) return undefined;
  const names = new Map();
  const edits = [];
  for (const read of kept) {
    const key = `${read.param}_${read.method}_${read.offset}`;
    if (!names.has(key)) names.set(key, read);
    edits.push([read.node.start, read.node.end, `__tesseraIn_${key}`]);
  }
  let prologue = "\n  const __tesseraIn = dataView($memory);";
  for (const [key, read] of names) {
    const args = js.slice(read.node.arguments[0].start, read.node.end - 1);
    prologue += `\n  const __tesseraIn_${key} = __tesseraIn.${read.method}(${args});`;
  }
  return { prologue, edits };
}

/** The glue `js` rewritten; `exportNames` are the functions the engine calls by name. */
export function tightenBindings(js, exportNames) {
  const parsed = parseSync("bindings.js", js, { sourceType: "script" });
  if (parsed.errors.length > 0) {
    throw new Error(`componentize-js's glue did not parse: ${parsed.errors[0].message}`);
  }
  const body = parsed.program.body;
  const declared = new Map(body.filter((s) => s.type === "FunctionDeclaration").map((s) => [s.id.name, s]));
  const called = [...exportNames, "bindExports"];
  const missing = called.filter((name) => !declared.has(name));
  if (missing.length > 0) {
    throw new Error(
      `componentize-js's glue does not declare ${missing.join(", ")} at its top level; ` +
        "this SDK's build expects componentize-js 0.23 (see plugins/sdk-ts/package.json)",
    );
  }

  // Edits as [start, end, replacement]; offsets are UTF-16 indices (oxc-parser's
  // JavaScript API), as `String.prototype.slice` wants. None overlap.
  const edits = [];
  walk(
    body,
    (node) =>
      node.type === "ExpressionStatement" &&
      node.expression.type === "CallExpression" &&
      node.expression.callee.type === "Identifier" &&
      node.expression.callee.name === "_debugLog",
    (node) => edits.push([node.start, node.end, ";"]),
  );

  const wrappers = [];
  for (const name of exportNames) {
    const fn = declared.get(name);
    if (!fn.async) continue;
    if (js.slice(fn.start, fn.start + 6) !== "async " || fn.params.some((p) => p.type !== "Identifier")) {
      throw new Error(`componentize-js's glue declares ${name} in a form this build does not know`);
    }
    const inner = `${name}$tesseraSync`;
    edits.push([fn.start, fn.start + 6, ""]);
    edits.push([fn.id.start, fn.id.end, inner]);
    walk(
      fn.body,
      (node) => node.type === "AwaitExpression",
      (node) =>
        edits.push([node.start, node.end, `__tesseraSettled(${js.slice(node.argument.start, node.argument.end)})`]),
      false,
    );
    const params = fn.params.map((p) => js.slice(p.start, p.end)).join(", ");
    wrappers.push(
      `function ${name}(${params}) {\n` +
        `  let answer;\n` +
        `  try { answer = ${inner}(${params}); } catch (e) { return Promise.reject(e); }\n` +
        `  return answer === undefined ? __tesseraDone : Promise.resolve(answer);\n` +
        `}`,
    );
  }

  const encoder = declared.get("_utf8AllocateAndEncode");
  if (encoder !== undefined) {
    if (encoder.params.map((p) => p.name).join() !== "s,realloc,memory") {
      throw new Error("componentize-js's glue declares _utf8AllocateAndEncode in a form this build does not know");
    }
    edits.push([encoder.start, encoder.end, ENCODE]);
  }

  for (const name of exportNames) {
    const fn = declared.get(name);
    const hoisted = hoistArgumentReads(js, fn);
    if (hoisted === undefined) continue;
    edits.push([fn.body.start + 1, fn.body.start + 1, hoisted.prologue]);
    edits.push(...hoisted.edits);
  }

  edits.sort((a, b) => a[0] - b[0]);
  let out = "";
  let at = 0;
  for (const [start, end, replacement] of edits) {
    if (start < at) throw new Error("tessera-build: overlapping edits of componentize-js's glue");
    out += js.slice(at, start) + replacement;
    at = end;
  }
  out += js.slice(at);

  const settled =
    "const __tesseraDone = Promise.resolve();\n" +
    "function __tesseraSettled(value) {\n" +
    '  if (value !== null && (typeof value === "object" || typeof value === "function") && typeof value.then === "function") {\n' +
    `    throw new TypeError(${JSON.stringify(PROMISE_REFUSED)});\n` +
    "  }\n" +
    "  return value;\n" +
    "}";
  const publish = called.map((name) => `globalThis[${JSON.stringify(name)}] = ${name};`).join("\n");
  return `(function () {\n${out}\n${settled}\n${wrappers.join("\n")}\n${publish}\n})();\n`;
}

/**
 * Makes componentize-js use tightened glue: its splicer is a plain object shared with
 * the module that generates the glue, so the build wraps its `spliceBindings` once.
 */
export async function useTightenedBindings() {
  // The module componentize-js itself imports, by the same URL, so the same instance.
  const entry = import.meta.resolve("@bytecodealliance/componentize-js");
  const { splicer } = await import(new URL("../lib/spidermonkey-embedding-splicer.js", entry).href);
  if (typeof splicer?.spliceBindings !== "function") {
    throw new Error("componentize-js has no splicer.spliceBindings; this SDK's build expects componentize-js 0.23");
  }
  if (splicer.spliceBindings.tightened) return;
  const splice = splicer.spliceBindings;
  const tightened = (...args) => {
    const spliced = splice(...args);
    const names = spliced.exports.map(([name]) => name);
    return { ...spliced, jsBindings: tightenBindings(spliced.jsBindings, names) };
  };
  tightened.tightened = true;
  splicer.spliceBindings = tightened;
}
