/**
 * Projections: events in, a read model in the projection's own SQLite database out,
 * the TypeScript side of the Rust SDK's `Projection` trait and `projection!` macro.
 *
 * A plugin declares the events it consumes as schemas (`fields.ts`), `setup` (create
 * the tables, once per schema version) and `apply` (one event, with SQL through `db`).
 * `projection` turns that into the `projector` interface of
 * `tessera:plugin/projection@0.2.0`; the plugin's entry exports it as `projector`.
 * The host hands a batch of events in one `apply-batch` call; they are applied in
 * order, and the first that fails (a thrown error: a refused statement, data that does
 * not fit its schema) stops the batch and is reported by its index with the error's
 * message, so the host rolls the batch back, narrows down to that event and halts or
 * parks it by the projection's policy. Event data is read with the same decoders, and
 * the same serde messages, as a Rust projection's.
 */

import { execute as hostExecute, query as hostQuery } from "tessera:plugin/projection-store@0.2.0";
import { Metadata, type EventOf } from "./aggregate";
import { DecodeError, type Field, type Schema, object } from "./fields";
import { JsonSyntaxError, parse } from "./json";
import { Rows, SqlError, type SqlParam, errorPayload, fromWit, toWit } from "./sql";
import type { WitEvent, WitPluginInfo, WitProjector } from "./wit";

/** An event with where it sits in the log; `event` is its typed type and data. */
export interface Envelope<E extends Record<string, Schema>> {
  /** Its place in the global log. */
  position: bigint;
  /** The stream (one aggregate instance) it belongs to, e.g. `account-42`. */
  stream: string;
  /** Its version within the stream, from 1. */
  version: bigint;
  metadata: Metadata;
  /** When the event was appended, RFC 3339 in UTC. */
  timestamp: string;
  /** `{type, data}`, narrowed by `type` as in a command handler's `apply`. */
  event: EventOf<E>;
}

/**
 * The projection's own database. Statements run inside the host's transaction for the
 * current batch: they commit together with the projection's checkpoint. A statement
 * that fails throws `SqlError` with the host's message.
 */
export const db = {
  /** Runs a statement that returns no rows; returns how many rows it changed. */
  execute(sql: string, params: readonly SqlParam[] = []): bigint {
    try {
      return hostExecute(sql, toWit(params));
    } catch (error) {
      throw asSqlError(error);
    }
  },

  /** Runs a statement and returns its rows. */
  query(sql: string, params: readonly SqlParam[] = []): Rows {
    try {
      return fromWit(hostQuery(sql, toWit(params)));
    } catch (error) {
      throw asSqlError(error);
    }
  },
};

/** The projection's database, as `setup` and `apply` receive it. */
export type Db = typeof db;

function asSqlError(error: unknown): unknown {
  const message = errorPayload(error);
  return message === undefined ? error : new SqlError(message);
}

/** What a projection is made of. */
export interface ProjectionDefinition<E extends Record<string, Schema>> {
  /** The plugin's name, unique among projections in a host. */
  name: string;
  /** The plugin's own release, free-form. */
  version: string;
  /** The read model's version: raise it when the tables' shape or meaning changes. */
  schemaVersion: number;
  /** `inline`: a command's response waits for it; `async`: it follows in the background. */
  mode: "async" | "inline";
  /** The consumed events by type, each with its data's fields; no other type is delivered. */
  events: E;
  /** Creates the tables and indexes, once per schema version. */
  setup(db: Db): void;
  /** Applies one event; a thrown error fails the batch at this event. */
  apply(db: Db, envelope: Envelope<E>): void;
}

/** The typed projection plus the WIT `projector` interface it exports. */
export interface Projection<E extends Record<string, Schema>> extends WitProjector {
  readonly definition: ProjectionDefinition<E>;
}

/** Why `apply-batch` stopped: which event, and the error's message. */
interface BatchFailure {
  index: number;
  message: string;
}

/**
 * Builds a projection from its definition. Export the result as `projector`:
 * `export const projector = projection({...})`.
 */
export function projection<E extends Record<string, Schema>>(definition: ProjectionDefinition<E>): Projection<E> {
  if (!Number.isInteger(definition.schemaVersion) || definition.schemaVersion < 0 || definition.schemaVersion > 0xffffffff) {
    throw new TypeError(`schemaVersion ${definition.schemaVersion} is not a u32`);
  }
  if (definition.mode !== "async" && definition.mode !== "inline") {
    throw new TypeError(`mode ${String(definition.mode)} is neither "async" nor "inline"`);
  }
  const events = new Map<string, Field<unknown>>();
  for (const [type, schema] of Object.entries(definition.events)) events.set(type, object(schema));
  if (events.size === 0) throw new TypeError("a projection consumes at least one event type");

  const envelope = (event: WitEvent): Envelope<E> => {
    const field = events.get(event.eventType);
    if (field === undefined) {
      throw new Error(`event ${event.position} has type ${event.eventType}, which this projection does not consume`);
    }
    let data: unknown;
    try {
      data = field.decode(parse(event.data), []);
    } catch (error) {
      if (error instanceof JsonSyntaxError) {
        throw new Error(`event ${event.position} carries invalid JSON: ${error.message}`);
      }
      if (error instanceof DecodeError) {
        throw new Error(`event ${event.position} of type ${event.eventType} does not deserialize: ${error.message}`);
      }
      throw error;
    }
    return {
      position: event.position,
      stream: event.stream,
      version: event.version,
      metadata: new Metadata(event.metadata),
      timestamp: event.timestamp,
      event: { type: event.eventType, data } as EventOf<E>,
    };
  };

  return {
    definition,

    describe(): WitPluginInfo {
      return {
        name: definition.name,
        version: definition.version,
        handles: [...events.keys()],
        details: { tag: "projection", val: { schemaVersion: definition.schemaVersion, mode: definition.mode } },
      };
    },

    setup(): void {
      try {
        definition.setup(db);
      } catch (error) {
        // The bindings turn a thrown value that is not an Error into the `err` case.
        throw messageOf(error);
      }
    },

    applyBatch(list: WitEvent[]): void {
      // An indexed loop: in a component's interpreter `forEach` is a call per event.
      for (let index = 0; index < list.length; index++) {
        try {
          definition.apply(db, envelope(list[index]!));
        } catch (error) {
          const failure: BatchFailure = { index: Math.min(index, 0xffffffff), message: messageOf(error) };
          throw failure;
        }
      }
    },
  };
}

function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}
