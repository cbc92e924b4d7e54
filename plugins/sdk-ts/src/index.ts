/**
 * The Tessera SDK for TypeScript: write plugins as typed TypeScript, not WIT plumbing.
 * It targets `tessera:plugin@0.2.0` (`wit/tessera.wit`) and behaves as the Rust SDK
 * (`plugins/sdk`): the same JSON conventions, the same refusals and HTTP statuses, the
 * same validation messages. `npm run build` (the `tessera-build` command) turns a
 * plugin into a `.wasm` component that imports nothing the host does not offer.
 */

export { commandHandler, Metadata } from "./aggregate";
export type { AggregateDefinition, CommandHandler, CommandOf, EventOf } from "./aggregate";
export * as fields from "./fields";
export type { Field, Infer, InferSchema, Schema } from "./fields";
export { DecodeError } from "./fields";
export { Refusal, invalid, rejected, notFound } from "./refusal";
export type { FieldError } from "./refusal";
export { parse, parsePlain, stringify, JsonNumber, JsonObject } from "./json";
export type { Json, JsonValue } from "./json";
export { log } from "./log";
