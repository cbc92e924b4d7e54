/**
 * Why a handler says no, as the Rust SDK's `Refusal`: throw one of these from `handle`
 * and the SDK hands the host the WIT `refusal` variant, which it answers with the same
 * statuses as for a Rust plugin: `invalid` is 422 `validation_failed` (one message per
 * field), `rejected` is 422 `rejected` (with a stable code), `notFound` is 404
 * `not_found`. Nothing is appended for a refused command. Authors never build the
 * variant's `{tag, val}` objects by hand.
 */

import type { WitRefusal } from "./wit";

/** A message about one field of a command's payload or a query's parameters. */
export interface FieldError {
  field: string;
  message: string;
}

/** A handler's refusal; throw it (or return it from a query) to refuse. */
export class Refusal extends Error {
  private constructor(
    readonly kind: "invalid" | "rejected" | "not-found",
    message: string,
    /** For `invalid`: the offending fields. */
    readonly fields: FieldError[] = [],
    /** For `rejected`: the stable code clients match on. */
    readonly code: string = "",
  ) {
    super(message);
    this.name = "Refusal";
  }

  /** The input is malformed: `field` is wrong, `message` says why. */
  static invalid(field: string, message: string): Refusal {
    return Refusal.invalidFields([{ field, message }]);
  }

  /** The input is malformed in several fields at once. */
  static invalidFields(fields: FieldError[]): Refusal {
    const text = fields.map((f) => `${f.field}: ${f.message}`).join("; ");
    return new Refusal("invalid", text, fields.map((f) => ({ ...f })));
  }

  /** The input is well formed, but a business rule says no. */
  static rejected(code: string, message: string): Refusal {
    return new Refusal("rejected", message, [], code);
  }

  /** What the input asks for does not exist. */
  static notFound(message: string): Refusal {
    return new Refusal("not-found", message);
  }

  /** The WIT `refusal` variant, as the component's bindings expect it. */
  toWit(): WitRefusal {
    switch (this.kind) {
      case "invalid":
        return { tag: "invalid", val: this.fields };
      case "rejected":
        return { tag: "rejected", val: { code: this.code, message: this.message } };
      case "not-found":
        return { tag: "not-found", val: this.message };
    }
  }
}

/** Shorthand for `Refusal.invalid`. */
export const invalid = Refusal.invalid;
/** Shorthand for `Refusal.rejected`. */
export const rejected = Refusal.rejected;
/** Shorthand for `Refusal.notFound`. */
export const notFound = Refusal.notFound;
