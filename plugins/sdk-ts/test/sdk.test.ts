/**
 * The SDK's own tests, natively (`npm test` here: tessera-test, node --test, no host):
 * the pieces whose every answer must be the Rust SDK's, word for word, checked against
 * what the Rust SDK gives for the same input (the differential tests then check the
 * same against real hosts): query parameters, cursors, answers' JSON, stored JSON.
 */

import { test } from "node:test";
import { JsonNumber, JsonObject, Params, Refusal, answerText, fields, pageFromRows, pageRequest, parse } from "../src/index";
import { parseInJs } from "../src/json";
import { debugStr, utf8 } from "../src/rust";

function equal(got: unknown, want: unknown, what = ""): void {
  const g = JSON.stringify(got, (_k, v) => (typeof v === "bigint" ? `${v}n` : v));
  const w = JSON.stringify(want, (_k, v) => (typeof v === "bigint" ? `${v}n` : v));
  if (g !== w) throw new Error(`${what ? `${what}: ` : ""}got ${g}, want ${w}`);
}

const CURSOR = { as_of: fields.i64, balance: fields.i64, id: fields.string };
const hex = (text: string) => utf8(text).map((b) => b.toString(16).padStart(2, "0")).join("");

function refusalOf(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    if (error instanceof Refusal) return error.toWit();
    throw error;
  }
  throw new Error("not refused");
}

const params = (json: string) => new Params(parse(json) as JsonObject);

test("a parameter is read as Rust's FromStr reads it", () => {
  equal(params('{"limit": "+2"}').get("limit", (t) => (/^\+?\d+$/.test(t) ? Number(t) : undefined)), 2);
  equal(pageRequest(params('{"limit": "+2"}'), 50, 500, CURSOR).limit, 2);
  equal(pageRequest(params("{}"), 50, 500, CURSOR).limit, 50);
  for (const [text, message] of [
    ['{"limit": "abc"}', '"abc" is not a valid limit'],
    ['{"limit": "4294967296"}', '"4294967296" is not a valid limit'],
    ['{"limit": " 2"}', '" 2" is not a valid limit'],
    ['{"limit": "€\\n\\""}', '"€\\n\\"" is not a valid limit'],
    ['{"limit": 2.0}', '"2.0" is not a valid limit'],
    ['{"limit": 1e20}', '"1e+20" is not a valid limit'],
    ['{"limit": 0.00001}', '"0.00001" is not a valid limit'],
    ['{"limit": {"b": 1, "a": "é\\u001b"}}', '"{\\"a\\":\\"é\\\\u001b\\",\\"b\\":1}" is not a valid limit'],
    ['{"limit": 0}', "must be between 1 and 500"],
    ['{"limit": "501"}', "must be between 1 and 500"],
  ]) {
    equal(refusalOf(() => pageRequest(params(text!), 50, 500, CURSOR)), {
      tag: "invalid",
      val: [{ field: "limit", message }],
    });
  }
});

test("cursors are the Rust SDK's, both ways", () => {
  const page = pageFromRows([{ id: "a", balance: 5n }, { id: "b", balance: 4n }], 1, CURSOR, (last) => ({
    as_of: 7n,
    balance: last.balance,
    id: last.id,
  }));
  equal(page.next_cursor, hex('{"as_of":7,"balance":5,"id":"a"}'));
  equal(page.items.length, 1);
  const read = (text: string) => pageRequest(params(JSON.stringify({ cursor: text })), 50, 500, CURSOR).cursor;
  equal(read(page.next_cursor!), { as_of: 7n, balance: 5n, id: "a" });
  equal(read(hex(' [99, 100, "a"] ').toUpperCase()), { as_of: 99n, balance: 100n, id: "a" });
  equal(read(hex('{"id":"a","more":[1,{"x":null}],"balance":100,"as_of":99}')), { as_of: 99n, balance: 100n, id: "a" });
  for (const bad of [
    "zz",
    "abc",
    "",
    "+a+b",
    hex('{"as_of":1}'),
    hex('{"as_of":1.0,"balance":1,"id":"a"}'),
    hex('{"as_of":1,"balance":1,"id":"a","id":"b"}'),
    hex('{"as_of":99,"balance":100,"id":"\\ud800"}'),
    hex('{"as_of":99,"balance":18446744073709551615,"id":"a"}'),
    hex("[99, 100]"),
    hex('"text"'),
  ]) {
    equal(refusalOf(() => read(bad)), {
      tag: "invalid",
      val: [{ field: "cursor", message: "is not a cursor this query returned" }],
    });
  }
});

test("answers are written as serde_json writes a Value", () => {
  equal(
    answerText({ b: 1.8446744073709552e19, a: 5n, c: [1000, 0.5, 1e-7, -0, null], d: "x\u0001", e: undefined }),
    '{"a":5,"b":1.8446744073709552e+19,"c":[1000.0,0.5,1e-7,-0.0,null],"d":"x\\u0001"}',
  );
  equal(debugStr("a\u0301\t\"\\"), '"a\\u{301}\\t\\"\\\\"');
});

test("JSON.parse's fast path reads every text as the parser in JavaScript does", () => {
  const texts = [
    '{"amount":5}',
    '{"amount":18446744073709551615}',
    '{"amount":123456789012345}',
    '{"amount":1234567890123456}',
    '{"amount":9007199254740993}',
    '{"amount":5.0}',
    '{"amount":5e2}',
    '{"amount":-0}',
    '{"amount":-7}',
    '[1, 2.5, -0, 3]',
    '{"owner":"a\\"b","n":[1,2,{"x":null}]}',
    '{"owner":"alice","owner":"bob"}',
    '{"b":1,"2":2,"a":{"1":1}}',
    '{"note":"a:b","n":1}',
    '{"at":"2026-12-07T12:00:00Z","n":1}',
    '{"a" :1,"a":2}',
    '{"a":1 ,"a" : 2}',
    '{"k\\":":1,"k\\":":2}',
    '{"note":"1.5e3 -0"}',
    '{"__proto__":{"x":1}}',
    ' { "a" : [ true , false , null ] } ',
    '"text"',
    "42",
    "-0",
    "[]",
    "{}",
    "[".repeat(129) + "]".repeat(129),
    "[".repeat(130) + "]".repeat(130),
    '{"a":1,}',
    "{'a':1}",
    '{"a":01}',
  ];
  const plain = (value: unknown) =>
    JSON.stringify(value, (_k, v) => (v instanceof JsonObject ? { entries: v.entries } : v instanceof JsonNumber ? `#${v.raw}/${v.isInteger}` : v));
  const outcome = (read: (text: string) => unknown, text: string) => {
    try {
      return plain(read(text));
    } catch (error) {
      return `${(error as Error).constructor.name}: ${(error as Error).message}`;
    }
  };
  for (const text of texts) equal(outcome(parse, text), outcome(parseInJs, text), text);
});
