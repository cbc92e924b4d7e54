/**
 * The shapes of `tessera:plugin@0.2.0` (`wit/tessera.wit`) as componentize-js lowers
 * and lifts them: records as objects with camelCase keys, `u64` as `bigint`, `option`
 * as a value or `undefined`, variants as `{tag, val}`. Only the SDK uses these; a
 * plugin works with the typed forms in `aggregate.ts`, `projection.ts` and `query.ts`.
 */

export type WitJson = string;

export interface WitMetadata {
  commandId: string;
  correlationId: string;
  causationId: string;
  principal?: string;
  timestamp: string;
  claims?: WitJson;
}

export interface WitEvent {
  position: bigint;
  stream: string;
  version: bigint;
  eventType: string;
  data: WitJson;
  metadata: WitMetadata;
  timestamp: string;
}

export type WitRefusal =
  | { tag: "invalid"; val: Array<{ field: string; message: string }> }
  | { tag: "rejected"; val: { code: string; message: string } }
  | { tag: "not-found"; val: string };

export type WitPluginDetails =
  | { tag: "command-handler"; val: { aggregateType: string } }
  | { tag: "projection"; val: { schemaVersion: number; mode: "async" | "inline" } }
  | { tag: "query-handler"; val: { reads: string[] } };

export interface WitPluginInfo {
  name: string;
  version: string;
  handles: string[];
  details: WitPluginDetails;
}

export interface WitCommand {
  name: string;
  aggregateId: string;
  payload: WitJson;
  metadata: WitMetadata;
}

export interface WitNewEvent {
  eventType: string;
  data: WitJson;
}

/** The `aggregate` interface a command handler exports. */
export interface WitAggregate {
  describe(): WitPluginInfo;
  fold(state: WitJson | undefined, events: WitEvent[]): WitJson;
  handle(state: WitJson | undefined, command: WitCommand): WitNewEvent[];
}

export type WitSqlValue =
  | { tag: "null" }
  | { tag: "integer"; val: bigint }
  | { tag: "real"; val: number }
  | { tag: "text"; val: string }
  | { tag: "blob"; val: Uint8Array };

export interface WitRows {
  columns: string[];
  rows: WitSqlValue[][];
}

/** The `projector` interface a projection exports. */
export interface WitProjector {
  describe(): WitPluginInfo;
  setup(): void;
  applyBatch(events: WitEvent[]): void;
}

/** The `querier` interface a query handler exports. */
export interface WitQuerier {
  describe(): WitPluginInfo;
  handle(name: string, params: WitJson): WitJson;
}
