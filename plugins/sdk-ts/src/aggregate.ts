/**
 * Command handlers as event-sourced aggregates, the TypeScript side of the Rust SDK's
 * `Aggregate` trait and `command_handler!` macro.
 *
 * A plugin declares its state, commands and events as schemas (`fields.ts`), and two
 * functions: `apply` folds one event into the state, `handle` decides what a command
 * means. `commandHandler` turns that into the `aggregate` interface of
 * `tessera:plugin/command-handler@0.2.0`; the plugin's entry exports it as `aggregate`.
 *
 * The JSON conventions are the Rust SDK's: a command named `deposit` with payload
 * `{"amount": 5}` is decoded with the `deposit` schema (a payload that does not fit is
 * refused as invalid, naming the field, with serde's message); an event
 * `{type: "Deposited", data: {amount: 5n}}` is stored with type `Deposited` and data
 * `{"amount":5}`; the state travels between calls as JSON written by its schema, so
 * `u64` values stay exact.
 */

import { DecodeError, type Field, type InferSchema, type Schema, object } from "./fields";
import { JsonSyntaxError, parse, parseInJs, parsePlain, type Json } from "./json";
import { Refusal } from "./refusal";
import type { WitAggregate, WitCommand, WitEvent, WitMetadata, WitNewEvent, WitPluginInfo } from "./wit";

/** Who sent a command and why; the host copies it onto the events it produces. */
export class Metadata {
  // The host's record is kept as it came and read through getters: most commands never
  // look at their metadata, and copying it costs a call's worth of interpreter time.
  constructor(private readonly m: WitMetadata) {}

  get commandId(): string {
    return this.m.commandId;
  }
  get correlationId(): string {
    return this.m.correlationId;
  }
  get causationId(): string {
    return this.m.causationId;
  }
  /** The caller's identity, if the host knows it. */
  get principal(): string | null {
    return this.m.principal ?? null;
  }
  /** When the host accepted the command, RFC 3339 in UTC. */
  get timestamp(): string {
    return this.m.timestamp;
  }
  /** The verified claims as JSON text, when the host authenticates callers. */
  get claimsJson(): string | null {
    return this.m.claims ?? null;
  }

  /** `JSON.stringify` writes the fields, as it did when they were copied. */
  toJSON(): object {
    const { commandId, correlationId, causationId, principal, timestamp, claimsJson } = this;
    return { commandId, correlationId, causationId, principal, timestamp, claimsJson };
  }

  /** The verified claims as an object; null for an anonymous caller. */
  claims(): { [key: string]: Json } | null {
    if (this.claimsJson === null) return null;
    const claims = parsePlain(this.claimsJson);
    return claims !== null && typeof claims === "object" && !Array.isArray(claims) ? claims : null;
  }

  /** The strings of the verified `roles` claim; empty for an anonymous caller. */
  roles(): string[] {
    const roles = this.claims()?.["roles"];
    return Array.isArray(roles) ? roles.filter((r): r is string => typeof r === "string") : [];
  }

  /** Whether the verified caller carries `role`. */
  hasRole(role: string): boolean {
    return this.roles().includes(role);
  }
}

/** A command as `handle` sees it: its name and its decoded payload. */
export type CommandOf<C extends Record<string, Schema>> = {
  [N in keyof C & string]: { name: N; payload: InferSchema<C[N]> };
}[keyof C & string];

/** An event as `apply` sees it and `handle` returns it: its type and its data. */
export type EventOf<E extends Record<string, Schema>> = {
  [T in keyof E & string]: { type: T; data: InferSchema<E[T]> };
}[keyof E & string];

/** What a command handler is made of. */
export interface AggregateDefinition<
  S extends Schema,
  C extends Record<string, Schema>,
  E extends Record<string, Schema>,
> {
  /** The plugin's name, unique among command handlers in a host. */
  name: string;
  /** The plugin's own release, free-form. */
  version: string;
  /** The aggregate type: a command for aggregate id `x` works on stream `<type>-x`. */
  aggregateType: string;
  /** The state's fields; the state travels between calls as JSON written by them. */
  state: S;
  /** The state before the stream's first event (a fresh object each call). */
  initial: () => InferSchema<S>;
  /** The commands by name (`open-account`), each with its payload's fields. */
  commands: C;
  /** The events by type (`AccountOpened`), each with its data's fields. */
  events: E;
  /** A payload key no schema declares: ignored (serde's default) or refused. */
  unknownFields?: "ignore" | "deny";
  /** Folds one event into the state: mutate it, or return the next state. */
  apply(state: InferSchema<S>, event: EventOf<E>): InferSchema<S> | void;
  /** Decides what a command means: the events to append, or throw a `Refusal`. */
  handle(state: Readonly<InferSchema<S>>, command: CommandOf<C>, metadata: Metadata): Array<EventOf<E>>;
}

/** The typed aggregate plus the WIT `aggregate` interface it exports. */
export interface CommandHandler<
  S extends Schema,
  C extends Record<string, Schema>,
  E extends Record<string, Schema>,
> extends WitAggregate {
  readonly definition: AggregateDefinition<S, C, E>;
}

/**
 * Builds a command handler from its definition. Export the result as `aggregate`:
 * `export const aggregate = commandHandler({...})`.
 */
export function commandHandler<S extends Schema, C extends Record<string, Schema>, E extends Record<string, Schema>>(
  definition: AggregateDefinition<S, C, E>,
): CommandHandler<S, C, E> {
  const state = object(definition.state) as Field<InferSchema<S>>;
  const commands = new Map<string, Field<unknown>>();
  for (const [name, schema] of Object.entries(definition.commands)) {
    commands.set(name, object(schema, { unknownFields: definition.unknownFields ?? "ignore" }));
  }
  const events = new Map<string, Field<unknown>>();
  for (const [type, schema] of Object.entries(definition.events)) events.set(type, object(schema));

  const load = (text: string | undefined): InferSchema<S> => {
    if (text === undefined) return definition.initial();
    // The host only hands back what `fold` returned: a state that does not decode is
    // a bug in this plugin, so it traps (as the Rust SDK panics) rather than guess.
    return state.decode(parse(text), []);
  };

  warmUp(() => state.decode(parse(state.encode(definition.initial())), []));
  for (const field of commands.values()) warmUp(() => field.decode(parse("{}"), []));

  const encodeEvent = (event: EventOf<E>): WitNewEvent => {
    const field = events.get(event.type);
    if (field === undefined) throw new Error(`event type ${event.type} is not declared in events`);
    return { eventType: event.type, data: field.encode(event.data) };
  };

  return {
    definition,

    describe(): WitPluginInfo {
      return {
        name: definition.name,
        version: definition.version,
        handles: [...commands.keys()],
        details: { tag: "command-handler", val: { aggregateType: definition.aggregateType } },
      };
    },

    fold(text: string | undefined, list: WitEvent[]): string {
      let current = load(text);
      for (let i = 0; i < list.length; i++) {
        const event = list[i]!;
        const field = events.get(event.eventType);
        if (field === undefined) {
          throw new Error(`event ${event.position} has type ${event.eventType}, not declared in events`);
        }
        const data = field.decode(parse(event.data), []);
        const next = definition.apply(current, { type: event.eventType, data } as EventOf<E>);
        if (next !== undefined) current = next;
      }
      return state.encode(current);
    },

    handle(text: string | undefined, command: WitCommand): WitNewEvent[] {
      try {
        const current = load(text);
        const field = commands.get(command.name);
        if (field === undefined) {
          // The host routes only the commands `describe` lists; say so all the same.
          throw Refusal.invalid("name", `unknown command ${command.name}`);
        }
        let payload: unknown;
        try {
          payload = field.decode(parse(command.payload), []);
        } catch (error) {
          if (error instanceof JsonSyntaxError) throw Refusal.invalid("payload", `not JSON: ${error.message}`);
          if (error instanceof DecodeError) throw Refusal.invalid(error.field, error.message);
          throw error;
        }
        const decided = definition.handle(
          current,
          { name: command.name, payload } as CommandOf<C>,
          new Metadata(command.metadata),
        );
        if (!Array.isArray(decided)) {
          throw new TypeError(`handle must return an array of events; it returned ${typeof decided}`);
        }
        const encoded: WitNewEvent[] = [];
        for (let i = 0; i < decided.length; i++) encoded.push(encodeEvent(decided[i]!));
        return encoded;
      } catch (error) {
        // The bindings turn a thrown `{tag, val}` into the `err` case of the result.
        if (error instanceof Refusal) throw error.toWit();
        throw error;
      }
    },
  };
}

/**
 * Runs `work` once and forgets its outcome. A component is pre-initialised: the build
 * runs the module's top level and keeps the heap, compiled functions included. So what
 * runs here is not compiled again by each new instance's first call, which otherwise
 * takes milliseconds in SpiderMonkey.
 */
function warmUp(work: () => unknown): void {
  try {
    work();
  } catch {
    // A schema that refuses the sample has still been run.
  }
}

warmUp(() => parseInJs('{"a":[1,-2.5e3,"b\\n",true,false,null],"c":{}}'));
warmUp(() => parse('{"a":[1,"b",true,null],"c":{"d":-1}}'));
