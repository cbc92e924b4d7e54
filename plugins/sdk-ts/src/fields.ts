/**
 * Field decoders: the TypeScript counterpart of the serde types a Rust plugin declares.
 * A schema such as `{ amount: fields.u64 }` both types a payload (`{ amount: bigint }`)
 * and decodes it from lossless JSON, refusing what serde would refuse, with the same
 * messages (`missing field \`amount\``, `invalid type: string "5", expected u64`, ...)
 * and the same field paths, so that a TypeScript plugin answers exactly as a Rust one.
 * Every field also encodes its value back to JSON as serde would write it.
 */

import { JsonNumber, JsonObject, type Json, type JsonValue, stringify, toPlain } from "./json";
import { floatText } from "./rust";

/** Why a value does not fit its field: the path to it, and serde's message. */
export class DecodeError extends Error {
  constructor(
    readonly path: string[],
    message: string,
  ) {
    super(message);
  }

  /** The field as the Rust SDK names it: the path joined with dots, or `payload`. */
  get field(): string {
    return this.path.length > 0 ? this.path.join(".") : "payload";
  }
}

/** Decodes one JSON value to `T` and encodes `T` back to JSON text. */
export interface Field<T> {
  /** What serde says it expected, e.g. `u64` or `a string`. */
  readonly expected: string;
  /** Whether a missing key decodes (to `null`) instead of being refused. */
  readonly optional?: boolean;
  decode(value: JsonValue, path: string[]): T;
  encode(value: T): string;
}

/** The TypeScript type a field or a schema decodes to. */
export type Infer<F> = F extends Field<infer T> ? T : F extends Schema ? InferSchema<F> : never;

/** An object's fields by name. */
export type Schema = { readonly [name: string]: Field<unknown> };

/** The object type a schema decodes to. */
export type InferSchema<S extends Schema> = { [K in keyof S]: Infer<S[K]> };

/** How serde describes an unexpected value in its messages. */
export function unexpected(value: JsonValue): string {
  if (value === null) return "null";
  if (typeof value === "boolean") return `boolean \`${value}\``;
  if (typeof value === "string") return `string ${JSON.stringify(value)}`;
  if (Array.isArray(value)) return "sequence";
  if (value instanceof JsonObject) return "map";
  const integer = integerOf(value);
  if (integer !== undefined) return `integer \`${integer}\``;
  return `floating point \`${floatText(Number(value.raw))}\``;
}

const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);

/**
 * The integer a number is, as serde_json reads it: an integer literal within
 * i64..u64's range; anything else (a fraction, an exponent, an integer out of range)
 * is a floating point number to serde_json.
 */
function integerOf(value: JsonNumber): bigint | undefined {
  if (!value.isInteger) return undefined;
  const n = BigInt(value.raw);
  return n >= I64_MIN && n <= U64_MAX ? n : undefined;
}

function invalidType(value: JsonValue, expected: string, path: string[]): DecodeError {
  return new DecodeError(path, `invalid type: ${unexpected(value)}, expected ${expected}`);
}

/** An integer field within `[min, max]`, decoded to `bigint`. */
function integer(expected: string, min: bigint, max: bigint): Field<bigint> {
  return {
    expected,
    decode(value, path) {
      const n = value instanceof JsonNumber ? integerOf(value) : undefined;
      if (n === undefined) throw invalidType(value, expected, path);
      if (n < min || n > max) {
        throw new DecodeError(path, `invalid value: integer \`${n}\`, expected ${expected}`);
      }
      return n;
    },
    encode: (value) => {
      // A value out of range would be written, then refused when read back (a trap on
      // the next call): fail here, where the cause is.
      if (value < min || value > max) throw new RangeError(`${value} is out of range for ${expected}`);
      return value.toString();
    },
  };
}

/** An integer field small enough for `number`. */
function smallInteger(expected: string, min: number, max: number): Field<number> {
  const wide = integer(expected, BigInt(min), BigInt(max));
  return {
    expected,
    decode: (value, path) => Number(wide.decode(value, path)),
    encode: (value) => {
      if (!Number.isInteger(value)) throw new TypeError(`${value} is not an integer`);
      return String(value);
    },
  };
}

/** A string field. */
export const string: Field<string> = {
  expected: "a string",
  decode(value, path) {
    if (typeof value !== "string") throw invalidType(value, "a string", path);
    return value;
  },
  encode: (value) => JSON.stringify(value),
};

/** A boolean field. */
export const boolean: Field<boolean> = {
  expected: "a boolean",
  decode(value, path) {
    if (typeof value !== "boolean") throw invalidType(value, "a boolean", path);
    return value;
  },
  encode: (value) => (value ? "true" : "false"),
};

/** A `u64`, exact, as `bigint`: money, counts, positions. */
export const u64: Field<bigint> = integer("u64", 0n, U64_MAX);
/** An `i64`, exact, as `bigint`. */
export const i64: Field<bigint> = integer("i64", I64_MIN, (1n << 63n) - 1n);
/** A `u32` as `number`. */
export const u32: Field<number> = smallInteger("u32", 0, 2 ** 32 - 1);
/** An `i32` as `number`. */
export const i32: Field<number> = smallInteger("i32", -(2 ** 31), 2 ** 31 - 1);

/** An `f64`: any JSON number. */
export const f64: Field<number> = {
  expected: "f64",
  decode(value, path) {
    if (!(value instanceof JsonNumber)) throw invalidType(value, "f64", path);
    return Number(value.raw);
  },
  encode: (value) => stringify(value),
};

/** Any JSON, as plain values (integers above 2^53 as `bigint`). */
export const json: Field<Json> = {
  expected: "any valid JSON value",
  decode: (value) => toPlain(value),
  encode: (value) => stringify(value),
};

/** `T` or `null`, as Rust's `Option<T>`: a missing key or `null` decodes to `null`. */
export function optional<T>(field: Field<T>): Field<T | null> {
  return {
    expected: field.expected,
    optional: true,
    decode: (value, path) => (value === null ? null : field.decode(value, path)),
    encode: (value) => (value === null ? "null" : field.encode(value)),
  };
}

/** A list of `T`, as Rust's `Vec<T>`; an item's path is its index. */
export function array<T>(item: Field<T>): Field<T[]> {
  return {
    expected: "a sequence",
    decode(value, path) {
      if (!Array.isArray(value)) throw invalidType(value, "a sequence", path);
      return value.map((v, i) => item.decode(v, [...path, String(i)]));
    },
    encode: (value) => `[${value.map((v) => item.encode(v)).join(",")}]`,
  };
}

/** What an object does with a key its schema does not declare. */
export interface ObjectOptions {
  /** `"ignore"` (serde's default) or `"deny"` (serde's `deny_unknown_fields`). */
  unknownFields?: "ignore" | "deny";
  /** How serde names the type in a message, e.g. `struct Account`. */
  expected?: string;
}

/** How serde lists the expected fields after an unknown one. */
function oneOf(names: string[]): string {
  const quoted = names.map((n) => `\`${n}\``);
  if (quoted.length === 0) return "there are no fields";
  if (quoted.length === 1) return quoted[0]!;
  if (quoted.length === 2) return `${quoted[0]} or ${quoted[1]}`;
  return `one of ${quoted.join(", ")}`;
}

/**
 * An object with the fields of `schema`, as a Rust struct read through the Rust SDK:
 * the first problem is reported, in the order serde meets it (see `decode`); declared
 * fields are written in declaration order, as serde writes a struct.
 */
export function object<S extends Schema>(schema: S, options: ObjectOptions = {}): Field<InferSchema<S>> {
  const names = Object.keys(schema);
  const expected = options.expected ?? "a map";
  // What `encode` writes before each field's value, and the fields, in declaration
  // order: computed once, not per call.
  const prefixes = names.map((name, i) => `${i > 0 ? "," : ""}${JSON.stringify(name)}:`);
  const declared = names.map((name) => schema[name]!);
  return {
    expected,
    decode(value, path) {
      if (!(value instanceof JsonObject)) throw invalidType(value, expected, path);
      // The Rust SDK reads a payload into a serde_json `Value` before its type: a key
      // given twice keeps its last value, and keys are then visited in sorted order,
      // so the first problem reported is the first in that order.
      const entries = new Map<string, JsonValue>();
      // Indexed loops, not iterators or spreads: in a component's interpreter each
      // step of an iterator is a call.
      const given = value.entries;
      const keys: string[] = [];
      for (let i = 0; i < given.length; i++) {
        // Not `const [key, item] = ...`: array destructuring runs the iterator protocol.
        const entry = given[i]!;
        const key = entry[0];
        const item = entry[1];
        if (!entries.has(key)) keys.push(key);
        entries.set(key, item);
      }
      if (keys.length > 1) keys.sort();
      const out: Record<string, unknown> = {};
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i]!;
        const field = Object.hasOwn(schema, key) ? schema[key] : undefined;
        if (field === undefined) {
          if (options.unknownFields === "deny") {
            throw new DecodeError(path.concat(key), `unknown field \`${key}\`, expected ${oneOf(names)}`);
          }
          continue;
        }
        out[key] = field.decode(entries.get(key)!, path.concat(key));
      }
      for (let i = 0; i < names.length; i++) {
        const name = names[i]!;
        if (entries.has(name)) continue;
        if (schema[name]!.optional) {
          out[name] = null;
          continue;
        }
        throw new DecodeError(path.concat(name), `missing field \`${name}\``);
      }
      return out as InferSchema<S>;
    },
    encode(value) {
      const record = value as Record<string, unknown>;
      let text = "{";
      for (let i = 0; i < names.length; i++) text += prefixes[i]! + declared[i]!.encode(record[names[i]!]);
      return text + "}";
    },
  };
}
