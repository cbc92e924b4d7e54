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
