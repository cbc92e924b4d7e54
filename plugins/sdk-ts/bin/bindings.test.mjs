// Tests of the build's rewrite of componentize-js's glue (bindings.mjs), on glue of the
// shape componentize-js 0.23 generates; `npm test` runs them with node --test. Every
// TypeScript plugin the host's tests build also goes through the rewrite, so those
// tests check that the rewritten glue still serves real calls.

import assert from "node:assert/strict";
import { test } from "node:test";
import vm from "node:vm";
import { PROMISE_REFUSED, tightenBindings } from "./bindings.mjs";

const GLUE = `
let [$memory, out] = $bindings;
const _debugLog = (...args) => {
  if (!globalThis?.process?.env?.JCO_DEBUG) { return; }
  console.debug(...args);
};
let plugin;
async function export_demo$handle(arg0, arg1) {
  _debugLog(' [Instruction::CallInterface] (sync, @ enter)');
  if (arg0 > 1) _debugLog('big', { arg0 });
  let ret;
  try {
    const answer = await plugin.handle(arg0 + $memory);
    ret = { tag: 'ok', val: answer };
  } catch (e) {
    if (e instanceof Error) throw e;
    ret = { tag: 'err', val: e };
  }
  out.push(ret);
  _debugLog('[Instruction::Return]', {
    funcName: 'handle',
    async: false,
  });
  return;
}
async function export_demo$count() {
  return out.length;
}
  function bindExports(sourceName) {
    plugin = $source_mod[sourceName];
  }
`;

/** Evaluates glue as the engine does (a classic script), with the plugin's `handle`
 * written in `handle` (evaluated in the glue's realm, so its errors are that realm's). */
function load(js, handle) {
  const out = [];
  const context = vm.createContext({ $bindings: [10, out], logged: [] });
  context.$source_mod = { demo: { handle: vm.runInContext(`(${handle})`, context) } };
  // A debug log that records, so a call the rewrite left would show.
  vm.runInContext(js.replace("console.debug(...args);", "logged.push(args);"), context);
  vm.runInContext('globalThis.bindExports("demo")', context);
  return { context, out };
}

/** `value` from the glue's realm as plain data of this one (deepEqual compares prototypes). */
const plain = (value) => JSON.parse(JSON.stringify(value));

const tighten = (js = GLUE) => tightenBindings(js, ["export_demo$handle", "export_demo$count"]);

test("the glue's declarations are closure variables, and what the engine calls is on globalThis", async () => {
  const { context, out } = load(tighten(), "(n) => n * 2");
  assert.equal(typeof context.export_demo$handle, "function");
  assert.equal(typeof context.bindExports, "function");
  // Nothing else leaks onto the global object.
  assert.equal(context.plugin, undefined);
  assert.equal(context.$memory, undefined);
  assert.equal(await context.export_demo$handle(5), undefined);
  assert.equal(await context.export_demo$handle(6), undefined);
  assert.deepEqual(plain(out), [{ tag: "ok", val: 30 }, { tag: "ok", val: 32 }]);
  // An export with a result hands it on through the settled promise.
  assert.equal(await context.export_demo$count(), 2);
});

test("exports answer at once: a settled promise, with the work done before it returns", async () => {
  const { context, out } = load(tighten(), "(n) => n");
  const answer = context.export_demo$handle(1);
  assert.equal(out.length, 1, "the result is written before the export returns");
  assert.equal(typeof answer.then, "function", "the engine still gets a promise");
  // The original glue does the same work only after the event loop runs.
  const original = load(`${GLUE}\nglobalThis.handle = export_demo$handle;`, "(n) => n");
  original.context.handle(1);
  assert.equal(original.out.length, 0);
});

test("refusals and failures take the glue's own paths", async () => {
  const refused = load(tighten(), '() => { throw { tag: "rejected", val: "no" }; }');
  await refused.context.export_demo$handle(1);
  assert.deepEqual(plain(refused.out), [{ tag: "err", val: { tag: "rejected", val: "no" } }]);

  const failing = load(tighten(), '() => { throw new RangeError("boom"); }');
  await assert.rejects(failing.context.export_demo$handle(1), /boom/);
});

test("an export that answers with a promise fails the call, saying why", async () => {
  const { context, out } = load(tighten(), "async (n) => n");
  await assert.rejects(context.export_demo$handle(1), (error) => error.message === PROMISE_REFUSED);
  assert.equal(out.length, 0);
});

test("every _debugLog statement is gone, wherever it was, and nothing else is", async () => {
  const tight = tighten();
  assert.equal(tight.match(/_debugLog\(/g), null);
  assert.match(tight, /const _debugLog = /);
  // With the debug switch on, the original glue logs and the rewritten one does not.
  const on = (js) => js.replace("!globalThis?.process?.env?.JCO_DEBUG", "false");
  const original = load(`${on(GLUE)}\nglobalThis.handle = export_demo$handle;`, "(n) => n");
  await original.context.handle(2);
  assert.equal(original.context.logged.length, 3);
  const rewritten = load(on(tight), "(n) => n");
  await rewritten.context.export_demo$handle(2);
  assert.equal(rewritten.context.logged.length, 0);
});

test("glue of another shape fails the build, naming what it lacks", () => {
  assert.throws(
    () => tightenBindings(GLUE, ["export_demo$handle", "export_demo$fold"]),
    /does not declare export_demo\$fold at its top level/,
  );
  assert.throws(() => tightenBindings(GLUE.replace("function bindExports", "const bindExports = function"), []), /bindExports/);
  assert.throws(() => tightenBindings(GLUE.replace("(arg0, arg1)", "(arg0, ...rest)"), ["export_demo$handle"]), /form this build/);
  assert.throws(() => tightenBindings("function (", []), /did not parse/);
});

// Glue that reads an argument record and writes strings, as componentize-js 0.23's does.
const MEMORY_GLUE = `
let [$memory, $realloc, out] = $bindings;
let dv = new DataView(new ArrayBuffer());
const dataView = mem => dv.buffer === mem.buffer ? dv : dv = new DataView(mem.buffer);
const TEXT_ENCODER_UTF8 = new TextEncoder();
function _utf8AllocateAndEncode(s, realloc, memory) {
  if (typeof s !== 'string') {
    throw new TypeError('expected a string, received [' + typeof s + ']');
  }
  if (s.length === 0) { return { ptr: 1, len: 0 }; }
  let len = 0;
  for (let i = 0; i < s.length; i++) {
    const ch = s.charCodeAt(i);
    if (ch < 0x80) { len += 1; }
    else if (ch < 0x800) { len += 2; }
    else if (ch >= 0xd800 && ch <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) { len += 4; i++; }
    else { len += 3; }
  }
  const ptr = realloc(0, 0, 1, len);
  const { read, written } = TEXT_ENCODER_UTF8.encodeInto(s, new Uint8Array(memory.buffer, ptr, len));
  if (read !== s.length || written !== len) { throw new Error('failed to encode whole string'); }
  return { ptr, len, codepoints: 0 };
}
let plugin;
async function export_demo$handle(arg0, arg1) {
  let first;
  if (dataView($memory).getUint8(arg0 + 0, true)) {
    first = dataView($memory).getUint32(arg0 + 4, true);
  }
  const grown = plugin.grow();
  const second = dataView($memory).getUint32(arg0 + 8, true);
  dataView($memory).setUint32(arg1 + 0, first + second, true);
  out.push({ first, second, grown, at: dataView($memory).getUint32(arg1 + 0, true) });
}
async function export_demo$write(s) {
  const { ptr, len } = _utf8AllocateAndEncode(s, $realloc, $memory);
  out.push([...new Uint8Array($memory.buffer, ptr, len)]);
}
function bindExports(sourceName) {
  plugin = $source_mod[sourceName];
}
`;

/** Runs MEMORY_GLUE (rewritten or not) on a memory whose buffer the plugin's `grow`
 * replaces. */
function loadMemory(js) {
  const out = [];
  const memory = { buffer: new ArrayBuffer(64) };
  let next = 32;
  const realloc = (_old, _size, _align, len) => {
    const ptr = next;
    next += len;
    return ptr;
  };
  const context = vm.createContext({ $bindings: [memory, realloc, out], TextEncoder });
  context.$source_mod = {
    demo: {
      // As a Wasm memory's growth does: the old buffer is detached, so a view of it
      // kept across the growth fails.
      grow: () => {
        const moved = structuredClone(memory.buffer, { transfer: [memory.buffer] });
        const bigger = new ArrayBuffer(moved.byteLength * 2);
        new Uint8Array(bigger).set(new Uint8Array(moved));
        memory.buffer = bigger;
        return bigger.byteLength;
      },
    },
  };
  const view = new DataView(memory.buffer);
  view.setUint8(0, 1);
  view.setUint32(4, 40, true);
  view.setUint32(8, 2, true);
  vm.runInContext(js, context);
  vm.runInContext('globalThis.bindExports("demo")', context);
  return { context, out };
}

const MEMORY_EXPORTS = ["export_demo$handle", "export_demo$write"];

test("an export's argument record is read once at its start, with the values the glue read", async () => {
  const tight = tightenBindings(MEMORY_GLUE, MEMORY_EXPORTS);
  assert.match(tight, /const __tesseraIn_arg0_getUint32_8 = __tesseraIn\.getUint32\(arg0 \+ 8, true\);/);
  // The return area (written through) is read where the glue read it.
  assert.match(tight, /at: dataView\(\$memory\)\.getUint32\(arg1 \+ 0, true\)/);
  const original = loadMemory(`${MEMORY_GLUE}\nglobalThis.handle = export_demo$handle;`);
  await original.context.handle(0, 16);
  const rewritten = loadMemory(tight);
  await rewritten.context.export_demo$handle(0, 16);
  // The memory grew between the two reads: the rewritten glue read both before.
  assert.deepEqual(plain(rewritten.out), plain(original.out));
  assert.deepEqual(plain(rewritten.out), [{ first: 40, second: 2, grown: 128, at: 42 }]);
  // A view kept across the growth, which the rewrite must not do, fails here.
  const stale = loadMemory(
    tight.replace("const second = __tesseraIn_arg0_getUint32_8;", "const second = __tesseraIn.getUint32(arg0 + 8, true);"),
  );
  await assert.rejects(stale.context.export_demo$handle(0, 16), /detached/);
});

test("strings are written with the same bytes, counted natively", async () => {
  const tight = tightenBindings(MEMORY_GLUE, MEMORY_EXPORTS);
  assert.match(tight, /TEXT_ENCODER_UTF8\.encode\(s\)/);
  for (const text of ["alice", "", "é", "€ and 𝄞", "lone \ud800 surrogate", "end \udc00"]) {
    const original = loadMemory(`${MEMORY_GLUE}\nglobalThis.write = export_demo$write;`);
    await original.context.write(text);
    const rewritten = loadMemory(tight);
    await rewritten.context.export_demo$write(text);
    assert.deepEqual(plain(rewritten.out), plain(original.out), JSON.stringify(text));
  }
  const refused = loadMemory(tight);
  await assert.rejects(refused.context.export_demo$write(7), /expected a string, received \[number\]/);
});
