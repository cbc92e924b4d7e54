/**
 * The Tessera SDK for TypeScript: write plugins as typed TypeScript, not WIT plumbing.
 * It targets `tessera:plugin@0.2.0` (`wit/tessera.wit`) and covers its three worlds as
 * the Rust SDK (`plugins/sdk`) does, with the same JSON conventions, the same refusals
 * and HTTP statuses and the same validation messages: command handlers
 * (`commandHandler`, exported as `aggregate`), projections (`projection`, exported as
 * `projector`) and query handlers (`queryHandler`, exported as `querier`). `npm run
 * build` (the `tessera-build` command) turns a plugin into a `.wasm` component that
 * imports nothing the host does not offer; `@tessera/sdk/testing` tests a command
 * handler natively, with no host.
 */

export { commandHandler, Metadata } from "./aggregate";
export type { AggregateDefinition, CommandHandler, CommandOf, EventOf } from "./aggregate";
export { projection, db } from "./projection";
export type { Db, Envelope, Projection, ProjectionDefinition } from "./projection";
export { queryHandler, read, rowsAs, Params, parsers, pageRequest, pageFromRows, answerText } from "./query";
export type { Page, PageRequest, Parser, QueryHandler, QueryHandlerDefinition } from "./query";
export { Rows, SqlError, Real, real } from "./sql";
export type { SqlParam, SqlValue } from "./sql";
export * as fields from "./fields";
export type { Field, Infer, InferSchema, Schema } from "./fields";
export { DecodeError } from "./fields";
export { Refusal, invalid, rejected, notFound } from "./refusal";
export type { FieldError } from "./refusal";
export { parse, parsePlain, stringify, JsonNumber, JsonObject } from "./json";
export type { Json, JsonValue } from "./json";
export { log } from "./log";
