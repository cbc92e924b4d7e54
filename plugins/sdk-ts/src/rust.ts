/**
 * How Rust writes and reads the few things the Rust SDK's messages and parameters
 * depend on, so that a TypeScript plugin answers word for word as a Rust one: `{:?}` of
 * a string (`debugStr`), `FromStr` of the integer types (`parseUint`, `parseInt`), and
 * serde_json's text of a JSON value (`serdeText`: sorted keys, an `f64` as serde_json
 * writes it). Only the SDK uses these.
 */

import { JsonNumber, JsonObject, type JsonValue } from "./json";

const NAMED: Record<string, string> = { "\0": "\\0", "\t": "\\t", "\r": "\\r", "\n": "\\n", "\\": "\\\\", '"': '\\"' };

/**
 * Whether Rust's `char::escape_debug` writes `code` as `\u{..}`: control and format
 * characters, separators other than the space, combining marks and lone surrogates.
 * The table covers what text in requests holds in practice (the engine carries no
 * Unicode database to ask).
 */
function unprintable(code: number): boolean {
  return (
    code < 0x20 ||
    (code >= 0x7f && code <= 0xa0) ||
    code === 0xad ||
    (code >= 0x300 && code <= 0x36f) ||
    code === 0x1680 ||
    (code >= 0x2000 && code <= 0x200f) ||
    (code >= 0x2028 && code <= 0x202f) ||
    (code >= 0x205f && code <= 0x2064) ||
    code === 0x3000 ||
    (code >= 0xd800 && code <= 0xdfff) ||
    code === 0xfeff
  );
}

/** `format!("{text:?}")`: quoted, with Rust's escapes (`\n`, `\"`, `\u{1b}`...). */
export function debugStr(text: string): string {
  let out = '"';
  for (const char of text) {
    const named = NAMED[char];
    const code = char.codePointAt(0)!;
    if (named !== undefined) out += named;
    else if (unprintable(code)) out += `\\u{${code.toString(16)}}`;
    else out += char;
  }
  return `${out}"`;
}

/** `u<bits>::from_str`: an optional `+`, ASCII digits, in range; else undefined. */
export function parseUint(text: string, bits: number): bigint | undefined {
  if (!/^\+?[0-9]+$/.test(text)) return undefined;
  const value = BigInt(text.replace(/^\+/, ""));
  return value < 1n << BigInt(bits) ? value : undefined;
}

/** `i<bits>::from_str`: an optional sign, ASCII digits, in range; else undefined. */
export function parseInt(text: string, bits: number): bigint | undefined {
  if (!/^[+-]?[0-9]+$/.test(text)) return undefined;
  const value = BigInt(text.replace(/^\+/, ""));
  const half = 1n << BigInt(bits - 1);
  return value >= -half && value < half ? value : undefined;
}

/** A float as serde_json writes it: `5.0`, `1.5`, `0.00001`, `1e+16`, `-0.0`. */
export function floatText(n: number): string {
  if (!Number.isFinite(n)) return "null";
  if (Object.is(n, -0)) return "-0.0";
  const abs = Math.abs(n);
  if (abs !== 0 && (abs >= 1e16 || abs < 1e-5)) return n.toExponential();
  const text = String(n);
  return text.includes(".") ? text : `${text}.0`;
}

const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);

/**
 * The number as serde_json holds it (without arbitrary precision): an integer literal
 * within i64..u64 is that integer; anything else, and `-0`, is an f64.
 */
export function serdeNumber(value: JsonNumber): bigint | number {
  if (value.isInteger) {
    const n = BigInt(value.raw);
    if (n >= I64_MIN && n <= U64_MAX && !(n === 0n && value.raw.startsWith("-"))) return n;
  }
  return Number(value.raw);
}

/** The Unicode code points of `a` and `b` compared, as Rust compares strings' bytes. */
export function compareKeys(a: string, b: string): number {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i]!.codePointAt(0)! - y[i]!.codePointAt(0)!;
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

/**
 * `serde_json::Value::to_string()` of a parsed value: compact, an object's keys sorted
 * (a key given twice keeps its last value), numbers as serde_json reads and writes them.
 */
export function serdeText(value: JsonValue): string {
  if (value === null) return "null";
  if (typeof value === "boolean" || typeof value === "string") return JSON.stringify(value);
  if (value instanceof JsonNumber) {
    const n = serdeNumber(value);
    return typeof n === "bigint" ? n.toString() : floatText(n);
  }
  if (Array.isArray(value)) return `[${value.map(serdeText).join(",")}]`;
  const entries = new Map<string, JsonValue>();
  for (const [key, item] of (value as JsonObject).entries) entries.set(key, item);
  const keys = [...entries.keys()].sort(compareKeys);
  return `{${keys.map((key) => `${JSON.stringify(key)}:${serdeText(entries.get(key)!)}`).join(",")}}`;
}

/** The UTF-8 bytes of `text` (a lone surrogate, which no Rust string holds, as U+FFFD). */
export function utf8(text: string): number[] {
  const out: number[] = [];
  for (const char of text) {
    let code = char.codePointAt(0)!;
    if (code >= 0xd800 && code <= 0xdfff) code = 0xfffd;
    if (code < 0x80) out.push(code);
    else if (code < 0x800) out.push(0xc0 | (code >> 6), 0x80 | (code & 63));
    else if (code < 0x10000) out.push(0xe0 | (code >> 12), 0x80 | ((code >> 6) & 63), 0x80 | (code & 63));
    else out.push(0xf0 | (code >> 18), 0x80 | ((code >> 12) & 63), 0x80 | ((code >> 6) & 63), 0x80 | (code & 63));
  }
  return out;
}

/** `bytes` as UTF-8 text, or undefined when they are not UTF-8 (as `str::from_utf8`). */
export function fromUtf8(bytes: readonly number[]): string | undefined {
  let out = "";
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i]!;
    const need = b < 0x80 ? 0 : b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : -1;
    if (need < 0 || i + need >= bytes.length) return undefined;
    let code = need === 0 ? b : b & (0x3f >> need);
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if (c === undefined || (c & 0xc0) !== 0x80) return undefined;
      code = (code << 6) | (c & 63);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8.
    if ((need === 2 && (code < 0x800 || (code >= 0xd800 && code <= 0xdfff))) || (need === 3 && (code < 0x10000 || code > 0x10ffff))) {
      return undefined;
    }
    out += String.fromCodePoint(code);
    i += need + 1;
  }
  return out;
}

/** Whether `text` holds a lone surrogate, which serde_json refuses to read into a string. */
export function hasLoneSurrogate(text: string): boolean {
  return /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(text);
}
