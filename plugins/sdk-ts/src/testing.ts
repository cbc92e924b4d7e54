/**
 * Given/when/then tests for command handlers that run natively, under `node --test`
 * with no host (`npm test` in a plugin runs `tessera-test`), as the Rust SDK's
 * `testing::AggregateTest`:
 *
 * ```ts
 * import { test } from "node:test";
 * import { given } from "@tessera/sdk/testing";
 * import { aggregate } from "../src/index";
 *
 * test("a deposit on an open account", () =>
 *   given(aggregate, [{ type: "AccountOpened", data: { owner: "ada" } }])
 *     .when({ name: "deposit", payload: { amount: 5n } })
 *     .then([{ type: "Deposited", data: { amount: 5n } }]));
 *
 * test("no withdrawal from a closed account", () =>
 *   given(aggregate, []).when({ name: "withdraw", payload: { amount: 5n } }).thenRefused("account_not_open"));
 * ```
 *
 * What it guarantees: the handler sees what the host would show it, because every call
 * goes through the component's own interface (`fold`, `handle`) as the host makes it:
 * each given event through its stored form (type and JSON data written by its schema),
 * the folded state through JSON, the command's payload through JSON (`whenPayload`
 * sends raw JSON, to test how malformed payloads are refused), and every event the
 * command produces must fold (the host will fold it later). Events are compared by
 * their stored form.
 */

import { type CommandHandler, type CommandOf, type EventOf } from "./aggregate";
import { object, type Schema } from "./fields";
import { stringify } from "./json";
import type { WitEvent, WitMetadata, WitNewEvent, WitRefusal } from "./wit";

/** The metadata a test command carries unless the test says otherwise. */
export function testMetadata(): WitMetadata {
  return {
    commandId: "test-command",
    correlationId: "test-command",
    causationId: "test-command",
    timestamp: "2026-01-01T00:00:00Z",
  };
}

/** Thrown when an expectation does not hold; `node --test` reports its message. */
export class ExpectationFailed extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ExpectationFailed";
  }
}

type Handler<S extends Schema, C extends Record<string, Schema>, E extends Record<string, Schema>> = CommandHandler<
  S,
  C,
  E
>;

/** A stream that already holds `events`, oldest first (`[]` for a new stream). */
export function given<S extends Schema, C extends Record<string, Schema>, E extends Record<string, Schema>>(
  handler: Handler<S, C, E>,
  events: Array<EventOf<E>>,
): Given<S, C, E> {
  return new Given(handler, events, testMetadata());
}

/** A stream's history and the metadata of the command about to be sent to it. */
export class Given<S extends Schema, C extends Record<string, Schema>, E extends Record<string, Schema>> {
  constructor(
    private readonly handler: Handler<S, C, E>,
    private readonly events: Array<EventOf<E>>,
    private readonly metadata: WitMetadata,
  ) {}

  /** Sends the command on behalf of `principal`, with these verified roles (a teller...). */
  by(principal: string, roles: string[] = []): Given<S, C, E> {
    const claims = stringify({ sub: principal, roles });
    return new Given(this.handler, this.events, { ...this.metadata, principal, claims });
  }

  /** Sends the command with this metadata instead of `testMetadata()`. */
  withMetadata(metadata: WitMetadata): Given<S, C, E> {
    return new Given(this.handler, this.events, metadata);
  }

  /** Sends `command`, its payload written by the command's schema. */
  when(command: CommandOf<C>): Then<E> {
    const schema = this.handler.definition.commands[command.name];
    if (schema === undefined) throw new ExpectationFailed(`${command.name} is not a command of this handler`);
    return this.whenPayload(command.name, object(schema).encode(command.payload));
  }

  /** Sends the command `name` with `payload` as raw JSON text, as a client might. */
  whenPayload(name: string, payload: string): Then<E> {
    const stored = this.events.map((event, i) => storedEvent(this.handler, event, i + 1, this.metadata));
    let state: string | undefined;
    if (stored.length > 0) state = this.handler.fold(undefined, stored);
    const command = { name, aggregateId: "test", payload, metadata: this.metadata };
    let outcome: Outcome;
    try {
      outcome = { events: this.handler.handle(state, command) };
    } catch (error) {
      if (!isWitRefusal(error)) throw error;
      outcome = { refusal: error };
    }
    if ("events" in outcome && outcome.events.length > 0) {
      // The host folds what was decided on the next command: it must fold.
      const next = outcome.events.map((event, i) => ({
        ...storedEvent(this.handler, undefined, stored.length + i + 1, this.metadata),
        eventType: event.eventType,
        data: event.data,
      }));
      this.handler.fold(state, next);
    }
    return new Then(this.handler, outcome);
  }
}

type Outcome = { events: WitNewEvent[] } | { refusal: WitRefusal };

function isWitRefusal(value: unknown): value is WitRefusal {
  if (value === null || typeof value !== "object" || !("tag" in value)) return false;
  const tag = (value as { tag: unknown }).tag;
  return tag === "invalid" || tag === "rejected" || tag === "not-found";
}

function storedEvent<E extends Record<string, Schema>>(
  handler: { definition: { events: E } },
  event: EventOf<E> | undefined,
  version: number,
  metadata: WitMetadata,
): WitEvent {
  let eventType = "";
  let data = "{}";
  if (event !== undefined) {
    const schema = handler.definition.events[event.type];
    if (schema === undefined) throw new ExpectationFailed(`${event.type} is not an event of this handler`);
    eventType = event.type;
    data = object(schema).encode(event.data);
  }
  return {
    position: BigInt(version),
    stream: "test",
    version: BigInt(version),
    eventType,
    data,
    metadata,
    timestamp: metadata.timestamp,
  };
}

function describeRefusal(refusal: WitRefusal): string {
  switch (refusal.tag) {
    case "invalid":
      return `invalid (${refusal.val.map((f) => `${f.field}: ${f.message}`).join("; ")})`;
    case "rejected":
      return `rejected ${refusal.val.code} (${refusal.val.message})`;
    case "not-found":
      return `not found (${refusal.val})`;
  }
}

function describeEvents(events: WitNewEvent[]): string {
  return events.length === 0 ? "no events" : events.map((e) => `${e.eventType} ${e.data}`).join(", ");
}

/** What the command did: the events it decided on, or its refusal. */
export class Then<E extends Record<string, Schema>> {
  constructor(
    private readonly handler: { definition: { events: E } },
    private readonly outcome: Outcome,
  ) {}

  private decided(): WitNewEvent[] {
    if ("refusal" in this.outcome) {
      throw new ExpectationFailed(`the command was refused: ${describeRefusal(this.outcome.refusal)}`);
    }
    return this.outcome.events;
  }

  private refusal(): WitRefusal {
    if ("events" in this.outcome) {
      throw new ExpectationFailed(`the command was accepted with ${describeEvents(this.outcome.events)}`);
    }
    return this.outcome.refusal;
  }

  /** The command was accepted with exactly these events, in this order. */
  then(expected: Array<EventOf<E>>): void {
    const got = this.decided();
    const want = expected.map((event) => {
      const stored = storedEvent(this.handler, event, 1, testMetadata());
      return { eventType: stored.eventType, data: stored.data };
    });
    const same = got.length === want.length && got.every((e, i) => e.eventType === want[i]!.eventType && e.data === want[i]!.data);
    if (!same) throw new ExpectationFailed(`expected ${describeEvents(want)}, got ${describeEvents(got)}`);
  }

  /** The command was refused by a business rule with this code (422 `rejected`). */
  thenRefused(code: string): void {
    const refusal = this.refusal();
    if (refusal.tag !== "rejected" || refusal.val.code !== code) {
      throw new ExpectationFailed(`expected a rejection with code ${code}, got ${describeRefusal(refusal)}`);
    }
  }

  /** The command was refused as invalid (422 `validation_failed`) at `field`, with `message` if given. */
  thenInvalid(field: string, message?: string): void {
    const refusal = this.refusal();
    const hit = refusal.tag === "invalid" && refusal.val.some((f) => f.field === field && (message === undefined || f.message === message));
    if (!hit) {
      const what = message === undefined ? field : `${field}: ${message}`;
      throw new ExpectationFailed(`expected the field ${what} to be refused, got ${describeRefusal(refusal)}`);
    }
  }

  /** The command was refused as asking for what does not exist (404). */
  thenNotFound(): void {
    const refusal = this.refusal();
    if (refusal.tag !== "not-found") throw new ExpectationFailed(`expected not found, got ${describeRefusal(refusal)}`);
  }
}

