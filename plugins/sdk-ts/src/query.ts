/**
 * Query handlers: read-only answers from projections' read models, with one way to
 * page through lists, as the Rust SDK's `QueryHandler`, `Params`, `PageRequest` and
 * `Page`: the same parsing, the same messages, the same cursors (a TypeScript
 * handler's cursors are a Rust one's, and the other way round).
 *
 * A plugin names the projections it reads and the queries it answers, and one
 * `handle(name, params)` returning a JSON value or throwing a `Refusal`; `queryHandler`
 * turns that into the `querier` interface of `tessera:plugin/query-handler@0.2.0`, and
 * the entry exports it as `querier`.
 *
 * Numbers in an answer are exact and typed as SQL returns them: a `bigint` is written
 * as an integer, a `number` as serde_json writes an `f64` (`5` as `5.0`), so a REAL
 * column stays a float and an INTEGER column an integer, as in a Rust handler's answer.
 */

import { query as hostRead } from "tessera:plugin/read-store@0.2.0";
import { DecodeError, type Field, type InferSchema, type Schema, object } from "./fields";
import { JsonNumber, JsonObject, type JsonValue, parse } from "./json";
import { Refusal } from "./refusal";
import { compareKeys, debugStr, floatText, fromUtf8, hasLoneSurrogate, parseInt, parseUint, serdeText, utf8 } from "./rust";
import { Rows, type SqlParam, errorPayload, fromWit, toWit } from "./sql";
import type { WitPluginInfo, WitQuerier } from "./wit";

/**
 * Runs a read-only statement against the active version of `projection`, which must be
 * one of those the handler reads. Refused (anything that writes, a projection not
 * declared, a failing statement), it throws `Refusal.rejected("read_failed", ...)` with
 * the host's message, as the Rust SDK's `read`.
 */
export function read(projection: string, sql: string, params: readonly SqlParam[] = []): Rows {
  try {
    return fromWit(hostRead(projection, sql, toWit(params)));
  } catch (error) {
    const message = errorPayload(error);
    if (message === undefined) throw error;
    throw Refusal.rejected("read_failed", message);
  }
}

/**
 * Each row read into `schema`, as the Rust SDK's `Rows::to::<T>()`: a row that does not
 * fit is refused as `rejected` `read_failed` with serde's message.
 */
export function rowsAs<S extends Schema>(rows: Rows, schema: S): Array<InferSchema<S>> {
  const field = object(schema);
  return rows.json().map((row) => {
    try {
      return field.decode(row, []);
    } catch (error) {
      if (error instanceof DecodeError) throw Refusal.rejected("read_failed", `row does not fit: ${error.message}`);
      throw error;
    }
  });
}

/** Parsers for `Params.get`, each Rust's `FromStr` of that type (`usize` is 32 bits, as in a wasm32 component). */
export const parsers = {
  string: (text: string): string => text,
  u32: (text: string): number | undefined => num(parseUint(text, 32)),
  usize: (text: string): number | undefined => num(parseUint(text, 32)),
  i32: (text: string): number | undefined => num(parseInt(text, 32)),
  u64: (text: string): bigint | undefined => parseUint(text, 64),
  i64: (text: string): bigint | undefined => parseInt(text, 64),
  boolean: (text: string): boolean | undefined => (text === "true" ? true : text === "false" ? false : undefined),
};

function num(value: bigint | undefined): number | undefined {
  return value === undefined ? undefined : Number(value);
}

/** A parser: the value `text` stands for, or `undefined` when it stands for none. */
export type Parser<T> = (text: string) => T | undefined;

/** A query's parameters: the query string of a GET (every value a string) or the JSON object of a POST. */
export class Params {
  private readonly values = new Map<string, JsonValue>();

  constructor(object: JsonObject) {
    // A key given twice keeps its last value, as in a serde_json map.
    const entries = object.entries;
    for (let i = 0; i < entries.length; i++) this.values.set(entries[i]![0], entries[i]![1]);
  }

  /**
   * The parameter as text: a string as it is, another JSON value as serde_json writes
   * it (`5`, `2.0`, `true`, `[1]`); `null` when it is missing or null.
   */
  text(name: string): string | null {
    const value = this.values.get(name);
    if (value === undefined || value === null) return null;
    return typeof value === "string" ? value : serdeText(value);
  }

  /**
   * The parameter parsed from its text (`parsers.usize`, `parsers.i64`... or your own).
   * Missing is `null`; unparsable is `Refusal.invalid(name, '"x" is not a valid <name>')`.
   */
  get<T = string>(name: string, parse: Parser<T> = parsers.string as Parser<T>): T | null {
    const text = this.text(name);
    if (text === null) return null;
    const value = parse(text);
    if (value === undefined) throw Refusal.invalid(name, `${debugStr(text)} is not a valid ${name}`);
    return value;
  }

  /** Like `get`, but the parameter must be there (else `is required`). */
  require<T = string>(name: string, parse: Parser<T> = parsers.string as Parser<T>): T {
    const value = this.get(name, parse);
    if (value === null) throw Refusal.invalid(name, "is required");
    return value;
  }

  /** The parameters' names. */
  names(): string[] {
    return [...this.values.keys()];
  }
}

/** `limit` and `cursor` for a list query, parsed the same way by every handler. */
export interface PageRequest<C> {
  limit: number;
  /** Where the previous page ended; `null` for the first page. */
  cursor: C | null;
}

/**
 * Reads `limit` (default `defaultLimit`, at most `maxLimit`) and `cursor`, whose
 * fields `cursor` declares in the order the handler's cursors are written (as a Rust
 * cursor struct's fields). A cursor that is not one is refused as invalid.
 */
export function pageRequest<S extends Schema>(
  params: Params,
  defaultLimit: number,
  maxLimit: number,
  cursor: S,
): PageRequest<InferSchema<S>> {
  const limit = params.get("limit", parsers.usize) ?? defaultLimit;
  if (limit === 0 || limit > maxLimit) throw Refusal.invalid("limit", `must be between 1 and ${maxLimit}`);
  const text = params.get("cursor");
  if (text === null) return { limit, cursor: null };
  const decoded = decodeCursor(text, cursor);
  if (decoded === undefined) throw Refusal.invalid("cursor", "is not a cursor this query returned");
  return { limit, cursor: decoded };
}

/** One page of a list; `next_cursor` is `null` on the last page. */
export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

/**
 * A page of `items` fetched with one extra row to tell whether more follow: pass
 * `limit + 1` rows, and `cursorOf` the cursor of the last item kept (its fields in the
 * schema's order).
 */
export function pageFromRows<T, S extends Schema>(
  items: T[],
  limit: number,
  cursor: S,
  cursorOf: (last: T) => InferSchema<S>,
): Page<T> {
  const more = items.length > limit;
  const kept = items.slice(0, limit);
  const last = kept[kept.length - 1];
  const next = more && last !== undefined ? encodeCursor(cursor, cursorOf(last)) : null;
  return { items: kept, next_cursor: next };
}

/** Cursors are opaque to clients: hex of the JSON of the position in the sort order. */
function encodeCursor<S extends Schema>(schema: S, value: InferSchema<S>): string {
  const bytes = utf8(object(schema).encode(value));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Whether a decoded string holds a lone surrogate, which serde_json refuses to read. */
function wellFormed(value: JsonValue): boolean {
  if (typeof value === "string") return !hasLoneSurrogate(value);
  if (Array.isArray(value)) return value.every(wellFormed);
  if (value instanceof JsonObject) return value.entries.every(([key, item]) => wellFormed(key) && wellFormed(item));
  return true;
}

/**
 * The cursor `text` read as the Rust SDK reads one: hex pairs (each `u8::from_str_radix`,
 * which takes a `+` before one digit), then a serde struct from that JSON: an object
 * with each field once (unknown fields ignored), or an array of the fields in order.
 */
function decodeCursor<S extends Schema>(text: string, schema: S): InferSchema<S> | undefined {
  if (utf8(text).length % 2 !== 0) return undefined;
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i += 2) {
    const pair = text.slice(i, i + 2);
    if (!/^(?:[0-9a-fA-F]{2}|\+[0-9a-fA-F])$/.test(pair)) return undefined;
    bytes.push(Number.parseInt(pair, 16));
  }
  // Bytes that are not UTF-8 are no JSON to serde_json.
  const decoded = fromUtf8(bytes);
  if (decoded === undefined) return undefined;
  let value: JsonValue;
  try {
    value = parse(decoded);
  } catch {
    return undefined;
  }
  if (!wellFormed(value)) return undefined;
  const names = Object.keys(schema);
  let entries: Array<[string, JsonValue]>;
  if (value instanceof JsonObject) {
    const seen = new Set<string>();
    entries = [];
    for (const [key, item] of value.entries) {
      if (!Object.hasOwn(schema, key)) continue;
      // serde's derived struct refuses a field given twice.
      if (seen.has(key)) return undefined;
      seen.add(key);
      entries.push([key, item]);
    }
  } else if (Array.isArray(value)) {
    if (value.length !== names.length) return undefined;
    entries = names.map((name, i): [string, JsonValue] => [name, value[i]!]);
  } else {
    return undefined;
  }
  try {
    return (object(schema) as Field<InferSchema<S>>).decode(new JsonObject(entries), []);
  } catch {
    return undefined;
  }
}

/**
 * An answer's JSON text as a Rust handler's `serde_json::Value` is written: compact,
 * keys sorted, a `bigint` as an integer and a `number` as an `f64`, a `Uint8Array` as
 * an array of bytes, `undefined` members left out.
 */
export function answerText(value: unknown): string {
  if (value === null || value === undefined) return "null";
  switch (typeof value) {
    case "bigint":
      return value.toString();
    case "number":
      return floatText(value);
    case "string":
    case "boolean":
      return JSON.stringify(value);
    case "object": {
      if (value instanceof JsonNumber || value instanceof JsonObject) return serdeText(value);
      if (value instanceof Uint8Array) return `[${[...value].join(",")}]`;
      if (Array.isArray(value)) return `[${value.map(answerText).join(",")}]`;
      const record = value as Record<string, unknown>;
      const keys = Object.keys(record)
        .filter((key) => record[key] !== undefined)
        .sort(compareKeys);
      return `{${keys.map((key) => `${JSON.stringify(key)}:${answerText(record[key])}`).join(",")}}`;
    }
    default:
      throw new TypeError(`a ${typeof value} has no JSON form`);
  }
}

/** What a query handler is made of. */
export interface QueryHandlerDefinition<Q extends string> {
  /** The plugin's name, unique among query handlers in a host. */
  name: string;
  /** The plugin's own release, free-form. */
  version: string;
  /** The projections it reads (their active versions, or `name@N` to pin one). */
  reads: string[];
  /** The queries it answers. */
  queries: readonly Q[];
  /** Answers the query `name`: a JSON value (see `answerText`), or throw a `Refusal`. */
  handle(name: Q, params: Params): unknown;
}

/** The typed query handler plus the WIT `querier` interface it exports. */
export interface QueryHandler<Q extends string> extends WitQuerier {
  readonly definition: QueryHandlerDefinition<Q>;
  /** What the export does with one call, natively testable: the answer's JSON text, or the Refusal thrown. */
  answer(name: string, params: string): string;
}

/**
 * Builds a query handler from its definition. Export the result as `querier`:
 * `export const querier = queryHandler({...})`.
 */
export function queryHandler<const Q extends string>(definition: QueryHandlerDefinition<Q>): QueryHandler<Q> {
  if (definition.queries.length === 0) throw new TypeError("a query handler answers at least one query");
  const answer = (name: string, text: string): string => {
    let params: JsonValue;
    try {
      params = parse(text);
    } catch {
      params = null;
    }
    if (!(params instanceof JsonObject) || !wellFormed(params)) throw Refusal.invalid("params", "must be a JSON object");
    return answerText(definition.handle(name as Q, new Params(params)));
  };
  return {
    definition,
    answer,

    describe(): WitPluginInfo {
      return {
        name: definition.name,
        version: definition.version,
        handles: [...definition.queries],
        details: { tag: "query-handler", val: { reads: [...definition.reads] } },
      };
    },

    handle(name: string, params: string): string {
      try {
        return answer(name, params);
      } catch (error) {
        // The bindings turn a thrown `{tag, val}` into the `err` case of the result.
        if (error instanceof Refusal) throw error.toWit();
        throw error;
      }
    },
  };
}
