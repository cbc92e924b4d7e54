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
  constructor(readonly raw: string) {}

  /** Whether it was written as an integer (no fraction, no exponent). */
  get isInteger(): boolean {
    return !/[.eE]/.test(this.raw);
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

/** Parses JSON text without losing any number's digits. */
export function parse(text: string): JsonValue {
  const parser = new Parser(text);
  parser.space();
  const value = parser.value(0);
  parser.space();
  if (parser.at < text.length) parser.fail("trailing characters");
  return value;
}

/**
 * Parses JSON that this plugin's SDK wrote (a state, the data of a stored event) to the
 * same value as `parse`, faster: where the text holds no number that `JSON.parse` could
 * change (a fraction, an exponent, `-0`, more than 15 digits) and nests no deeper than
 * `parse` allows, the engine's own `JSON.parse` reads it, and its numbers are written
 * back as their exact digits. A key given twice keeps only its last value here, which
 * is what every decoder of `fields.ts` keeps too; text read from clients (payloads,
 * parameters, cursors) goes through `parse`, which sees duplicates.
 *
 * It matters because a component runs JavaScript in an interpreter: folding a long
 * stream from its first event (after a deploy, the cached state belongs to the old
 * code) calls this once per event.
 */
export function parseStored(text: string): JsonValue {
  const outside = text.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  if (/[.eE]|\d{16}|-0/.test(outside) || (outside.match(/[[{]/g)?.length ?? 0) > MAX_DEPTH) return parse(text);
  let plain: unknown;
  try {
    plain = JSON.parse(text);
  } catch {
    // Not JSON: `parse` says where, in its words.
    return parse(text);
  }
  return lossless(plain);
}

function lossless(value: unknown): JsonValue {
  if (typeof value === "number") return new JsonNumber(String(value));
  if (value === null || typeof value !== "object") return value as JsonValue;
  if (Array.isArray(value)) return value.map(lossless);
  return new JsonObject(Object.entries(value).map(([key, item]): [string, JsonValue] => [key, lossless(item)]));
}

/** The deepest nesting accepted, as serde_json's default recursion limit. */
const MAX_DEPTH = 128;

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

  number(): JsonNumber {
    const match = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
    match.lastIndex = this.at;
    const found = match.exec(this.text);
    if (!found || found[0].length === 0) this.fail("expected a value");
    this.at += found[0].length;
    return new JsonNumber(found[0]);
  }

  string(): string {
    // The common case, a string with no escapes, is sliced out in one go.
    const start = ++this.at;
    const end = this.text.indexOf('"', start);
    if (end < 0) this.fail("unterminated string");
    const slice = this.text.slice(start, end);
    if (!slice.includes("\\") && !/[\u0000-\u001f]/.test(slice)) {
      this.at = end + 1;
      return slice;
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
    for (const [key, item] of value.entries) out[key] = toPlain(item);
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
