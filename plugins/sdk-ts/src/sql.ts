/**
 * SQL values and rows as plugins see them, as the Rust SDK's `sql` module, for
 * projections (`Db`, their own database) and query handlers (`read`).
 *
 * A parameter is `null` (NULL), a `bigint` (INTEGER; one past SQLite's signed 64 bits
 * goes as its decimal text, as the Rust SDK sends a `u64`, so it is never silently
 * wrapped), a `boolean` (INTEGER 0 or 1), a `number` (INTEGER when it is a safe
 * integer, else REAL; `real(x)` sends a REAL whatever `x` is), a `string` (TEXT) or a
 * `Uint8Array` (BLOB). A column comes back as `null`, `bigint` (INTEGER, exact),
 * `number` (REAL), `string` (TEXT) or `Uint8Array` (BLOB).
 */

import { JsonNumber, JsonObject, type JsonValue } from "./json";
import { floatText } from "./rust";
import type { WitRows, WitSqlValue } from "./wit";

/** A REAL parameter, whatever its value (`real(5)` is `5.0`, not the INTEGER 5). */
export class Real {
  constructor(readonly value: number) {}
}

/** Wraps `value` so that it is sent as a REAL. */
export function real(value: number): Real {
  return new Real(value);
}

/** What a statement's parameter can be. */
export type SqlParam = null | undefined | bigint | boolean | number | string | Uint8Array | Real;

/** What a column holds. */
export type SqlValue = null | bigint | number | string | Uint8Array;

/** A statement the host refused or SQLite failed; its message is the host's. */
export class SqlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SqlError";
  }
}

const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

/** The parameters as the WIT `value` variant. */
export function toWit(params: readonly SqlParam[]): WitSqlValue[] {
  return params.map((value, index): WitSqlValue => {
    if (value === null || value === undefined) return { tag: "null" };
    if (value instanceof Real) return { tag: "real", val: value.value };
    if (value instanceof Uint8Array) return { tag: "blob", val: value };
    switch (typeof value) {
      case "bigint":
        return value >= I64_MIN && value <= I64_MAX ? { tag: "integer", val: value } : { tag: "text", val: value.toString() };
      case "boolean":
        return { tag: "integer", val: value ? 1n : 0n };
      case "number":
        return Number.isSafeInteger(value) ? { tag: "integer", val: BigInt(value) } : { tag: "real", val: value };
      case "string":
        return { tag: "text", val: value };
      default:
        throw new TypeError(`SQL parameter ${index + 1} is a ${typeof value}: use null, bigint, number, string, boolean or Uint8Array`);
    }
  });
}

/** The rows a statement returned: column names, and each row's values in order. */
export class Rows {
  constructor(
    readonly columns: string[],
    readonly rows: SqlValue[][],
  ) {}

  get length(): number {
    return this.rows.length;
  }

  /**
   * Each row as an object keyed by column name (the Rust SDK's `Rows::to_json`): a
   * BLOB is an array of byte values, a REAL that is not finite is `null`.
   */
  objects(): Array<Record<string, SqlValue | number[]>> {
    return this.rows.map((row) => {
      const out: Record<string, SqlValue | number[]> = {};
      this.columns.forEach((column, i) => {
        out[column] = plain(row[i] ?? null);
      });
      return out;
    });
  }

  /** The first row as an object, or `null` when there is none. */
  first(): Record<string, SqlValue | number[]> | null {
    return this.objects()[0] ?? null;
  }

  /** The first column of the first row, or `null` when there is none. */
  scalar(): SqlValue {
    return this.rows[0]?.[0] ?? null;
  }

  /**
   * Each row as lossless JSON objects, the form the field decoders of `fields.ts`
   * read: `rows.json().map((row) => schema.decode(row, []))` reads rows as the Rust
   * SDK's `Rows::to::<T>()` does, with serde's messages.
   */
  json(): JsonObject[] {
    return this.rows.map(
      (row) => new JsonObject(this.columns.map((column, i): [string, JsonValue] => [column, jsonOf(row[i] ?? null)])),
    );
  }
}

function plain(value: SqlValue): SqlValue | number[] {
  if (value instanceof Uint8Array) return [...value];
  if (typeof value === "number" && !Number.isFinite(value)) return null;
  return value;
}

function jsonOf(value: SqlValue): JsonValue {
  if (value === null) return null;
  if (typeof value === "bigint") return new JsonNumber(value.toString());
  if (typeof value === "number") return Number.isFinite(value) ? new JsonNumber(floatText(value)) : null;
  if (typeof value === "string") return value;
  return [...value].map((byte) => new JsonNumber(String(byte)));
}

/** Rows from the WIT `rows` record. */
export function fromWit(rows: WitRows): Rows {
  return new Rows(
    rows.columns,
    rows.rows.map((row) => row.map((value) => (value.tag === "null" ? null : value.val))),
  );
}

/** The message a failed import carries: componentize-js throws the `err` case's payload. */
export function errorPayload(error: unknown): string | undefined {
  if (error !== null && typeof error === "object" && "payload" in error) {
    const payload = (error as { payload: unknown }).payload;
    if (typeof payload === "string") return payload;
  }
  return undefined;
}
