/**
 * Lossless JSON: what the host hands a plugin is JSON text, and `JSON.parse` loses
 * both the digits of integers above 2^53 and the difference between `5` and `5.0`
 * (which the Rust SDK, through serde_json, refuses for a `u64` field). This parser keeps
 * every number as the text it was written with, and every object as its entries in
 * document order (duplicates included), so that the field decoders in `fields.ts`
 * decide exactly as serde would. `stringify` writes `bigint` as plain JSON digits.
 */

/** A JSON number as written: `raw` is its exact text. */
export class JsonNumber {
  /** Whether it was written as an integer (no fraction, no exponent). */
  readonly isInteger: boolean;

  /** `integer` says whether `raw` is an integer literal, when the caller knows it. */
  constructor(
    readonly raw: string,
    integer?: boolean,
  ) {
    this.isInteger = integer ?? !/[.eE]/.test(raw);
  }
}

/** A JSON object as written: its entries in document order, duplicates kept. */
export class JsonObject {
  constructor(readonly entries: Array<[string, JsonValue]>) {}
}

/** A JSON value as the lossless parser returns it. */
export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | JsonObject;

/** A plain JavaScript value that `stringify` can write: integers may be `bigint`. */
export type Json = null | boolean | string | number | bigint | Json[] | { [key: string]: Json };

/** Thrown when the text is not JSON. */
export class JsonSyntaxError extends Error {}

/**
 * Parses JSON text without losing any number's digits.
 *
 * Most text is read by the engine's own `JSON.parse`, which a component runs natively
 * rather than in its JavaScript interpreter (a tenth of the time on a command's
 * payload). That path is taken only where it gives exactly what the parser below
 * gives: no number `JSON.parse` could change (a fraction, an exponent, `-0`, 16 digits
 * or more), no key given twice, no key that JavaScript would reorder (one starting with
 * a digit) and no nesting past the limit. Anything else, errors included, goes through
 * the parser below, which says what is wrong and where.
 */
export function parse(text: string): JsonValue {
  return parseNative(text) ?? parseInJs(text);
}

/** The parser written in JavaScript alone, which `parse` falls back to (exported for
 * the tests that hold both paths to one answer). */
export function parseInJs(text: string): JsonValue {
  const parser = new Parser(text);
  parser.space();
  const value = parser.value(0);
  parser.space();
  if (parser.at < text.length) parser.fail("trailing characters");
  return value;
}

/**
 * A number token `JSON.parse` could change: a number starts the text or follows `:`,
 * `[` or `,`. Inside a string the same characters only send the text the slow way.
 */
const INEXACT_NUMBER = /(?:^|[:,[])\s*(?:-0|-?\d*[.eE]|-?\d{16})/;

/** `text` through `JSON.parse`, or undefined where that could differ from `Parser`. */
function parseNative(text: string): JsonValue | undefined {
  if (INEXACT_NUMBER.test(text)) return undefined;
  let plain: unknown;
  try {
    plain = JSON.parse(text);
  } catch {
    return undefined;
  }
  const walk = { members: 0 };
  const value = exact(plain, 0, walk);
  // Fewer members parsed than written means a key given twice: the parser decides.
  if (value === undefined || walk.members !== membersAtMost(text)) return undefined;
  return value;
}

/**
 * At least as many as the object members `text` writes. Each member's key ends in `"`
 * followed by `:`; inside a string that pair only follows an escaped quote, so it
 * rarely counts anything but members (a colon in a timestamp does not). With space
 * between a key and its colon (hand-written text), every colon counts instead.
 */
function membersAtMost(text: string): number {
  return (SPACED_COLON.test(text) ? text.split(":") : text.split('":')).length - 1;
}

const SPACED_COLON = /"\s+:/;

/** The lossless form of what `JSON.parse` returned, counting object members. */
function exact(value: unknown, depth: number, walk: { members: number }): JsonValue | undefined {
  if (depth > MAX_DEPTH) return undefined;
  // Only integers of at most 15 digits get here (see INEXACT_NUMBER): `String` writes
  // them as they were written.
  if (typeof value === "number") return new JsonNumber(String(value), true);
  if (value === null || typeof value !== "object") return value as JsonValue;
  if (Array.isArray(value)) {
    const items: JsonValue[] = [];
    for (let i = 0; i < value.length; i++) {
      const item = exact(value[i], depth + 1, walk);
      if (item === undefined) return undefined;
      items.push(item);
    }
    return items;
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record);
  const entries: Array<[string, JsonValue]> = [];
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    // JavaScript lists integer-like keys first, whatever the text's order.
    if (isDigit(key.charCodeAt(0))) return undefined;
    const item = exact(record[key], depth + 1, walk);
    if (item === undefined) return undefined;
    entries.push([key, item]);
  }
  walk.members += keys.length;
  return new JsonObject(entries);
}

/** The deepest nesting accepted, as serde_json's default recursion limit. */
const MAX_DEPTH = 128;

function isDigit(code: number): boolean {
  return code >= 0x30 && code <= 0x39;
}

/** Where the run of digits from `at` ends. */
function digits(text: string, at: number): number {
  while (isDigit(text.charCodeAt(at))) at++;
  return at;
}

/** Whether `text[start..end]` holds no escape and no control character. */
function plain(text: string, start: number, end: number): boolean {
  for (let at = start; at < end; at++) {
    const code = text.charCodeAt(at);
    if (code < 0x20 || code === 0x5c) return false;
  }
  return true;
}

class Parser {
  at = 0;
  constructor(readonly text: string) {}

  fail(what: string): never {
    throw new JsonSyntaxError(`${what} at character ${this.at}`);
  }

  space(): void {
    while (this.at < this.text.length) {
      const c = this.text.charCodeAt(this.at);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return;
      this.at++;
    }
  }

  value(depth: number): JsonValue {
    if (depth > MAX_DEPTH) this.fail("recursion limit exceeded");
    const c = this.text[this.at];
    switch (c) {
      case "{":
        return this.object(depth);
      case "[":
        return this.array(depth);
      case '"':
        return this.string();
      case "t":
        return this.word("true", true);
      case "f":
        return this.word("false", false);
      case "n":
        return this.word("null", null);
      default:
        return this.number();
    }
  }

  word<T>(word: string, value: T): T {
    if (!this.text.startsWith(word, this.at)) this.fail("expected a value");
    this.at += word.length;
    return value;
  }

  // The scanners below walk character codes by hand rather than through regular
  // expressions: a component runs JavaScript in an interpreter, where a regular
  // expression's call machinery costs more than the few characters it would look at.
  number(): JsonNumber {
    const text = this.text;
    const start = this.at;
    let at = start;
    if (text.charCodeAt(at) === 0x2d) at++; // -
    const first = text.charCodeAt(at);
    if (first === 0x30) at++;
    else if (first >= 0x31 && first <= 0x39) at = digits(text, at + 1);
    else this.fail("expected a value");
    let integer = true;
    if (text.charCodeAt(at) === 0x2e && isDigit(text.charCodeAt(at + 1))) {
      integer = false;
      at = digits(text, at + 2);
    }
    const e = text.charCodeAt(at);
    if (e === 0x65 || e === 0x45) {
      let exponent = at + 1;
      const sign = text.charCodeAt(exponent);
      if (sign === 0x2b || sign === 0x2d) exponent++;
      if (isDigit(text.charCodeAt(exponent))) {
        integer = false;
        at = digits(text, exponent + 1);
      }
    }
    this.at = at;
    return new JsonNumber(text.slice(start, at), integer);
  }

  string(): string {
    // The common case, a string with no escapes, is sliced out in one go.
    const start = ++this.at;
    const end = this.text.indexOf('"', start);
    if (end < 0) this.fail("unterminated string");
    if (plain(this.text, start, end)) {
      this.at = end + 1;
      return this.text.slice(start, end);
    }
    let out = "";
    for (;;) {
      if (this.at >= this.text.length) this.fail("unterminated string");
      const ch = this.text[this.at++]!;
      if (ch === '"') return out;
      if (ch < " ") this.fail("control character in string");
      if (ch !== "\\") {
        out += ch;
        continue;
      }
      const esc = this.text[this.at++];
      switch (esc) {
        case '"':
        case "\\":
        case "/":
          out += esc;
          break;
        case "b":
          out += "\b";
          break;
        case "f":
          out += "\f";
          break;
        case "n":
          out += "\n";
          break;
        case "r":
          out += "\r";
          break;
        case "t":
          out += "\t";
          break;
        case "u": {
          const hex = this.text.slice(this.at, this.at + 4);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail("invalid escape");
          out += String.fromCharCode(parseInt(hex, 16));
          this.at += 4;
          break;
        }
        default:
          this.fail("invalid escape");
      }
    }
  }

  array(depth: number): JsonValue[] {
    this.at++;
    const items: JsonValue[] = [];
    this.space();
    if (this.text[this.at] === "]") {
      this.at++;
      return items;
    }
    for (;;) {
      this.space();
      items.push(this.value(depth + 1));
      this.space();
      const c = this.text[this.at++];
      if (c === "]") return items;
      if (c !== ",") this.fail("expected `,` or `]`");
    }
  }

  object(depth: number): JsonObject {
    this.at++;
    const entries: Array<[string, JsonValue]> = [];
    this.space();
    if (this.text[this.at] === "}") {
      this.at++;
      return new JsonObject(entries);
    }
    for (;;) {
      this.space();
      if (this.text[this.at] !== '"') this.fail("expected a key");
      const key = this.string();
      this.space();
      if (this.text[this.at++] !== ":") this.fail("expected `:`");
      this.space();
      entries.push([key, this.value(depth + 1)]);
      this.space();
      const c = this.text[this.at++];
      if (c === "}") return new JsonObject(entries);
      if (c !== ",") this.fail("expected `,` or `}`");
    }
  }
}

/**
 * The plain value of a parsed JSON value: integers within 2^53 as `number`, larger
 * ones as `bigint` (so no digit is lost), other numbers as `number`; for a key given
 * twice, the last value.
 */
export function toPlain(value: JsonValue): Json {
  if (value instanceof JsonNumber) {
    if (value.isInteger) {
      const n = Number(value.raw);
      return Number.isSafeInteger(n) ? n : BigInt(value.raw);
    }
    return Number(value.raw);
  }
  if (value instanceof JsonObject) {
    const out: { [key: string]: Json } = {};
    const entries = value.entries;
    for (let i = 0; i < entries.length; i++) out[entries[i]![0]] = toPlain(entries[i]![1]);
    return out;
  }
  if (Array.isArray(value)) return value.map(toPlain);
  return value;
}

/** Parses JSON text to plain values, keeping integers above 2^53 exact as `bigint`. */
export function parsePlain(text: string): Json {
  return toPlain(parse(text));
}

/**
 * Writes a plain value as JSON text: a `bigint` as its digits, keys in insertion order,
 * `undefined` members left out. A number that is not finite has no JSON form: throws.
 */
export function stringify(value: unknown): string {
  switch (typeof value) {
    case "bigint":
      return value.toString();
    case "number":
      if (!Number.isFinite(value)) throw new TypeError(`${value} has no JSON form`);
      return JSON.stringify(value);
    case "string":
    case "boolean":
      return JSON.stringify(value);
    case "object": {
      if (value === null) return "null";
      if (Array.isArray(value)) {
        return `[${value.map((item) => (item === undefined ? "null" : stringify(item))).join(",")}]`;
      }
      const parts: string[] = [];
      for (const [key, item] of Object.entries(value)) {
        if (item === undefined) continue;
        parts.push(`${JSON.stringify(key)}:${stringify(item)}`);
      }
      return `{${parts.join(",")}}`;
    }
    default:
      throw new TypeError(`a ${typeof value} has no JSON form`);
  }
}
