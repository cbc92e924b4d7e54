/**
 * The SQL imports as a native test sees them (`tessera-test` links this module in
 * place of `tessera:plugin/projection-store@0.2.0` and `read-store`): there is no read
 * store outside a host, so every statement fails, with the Rust SDK's message, the way
 * a refused statement fails (projections throw `SqlError`, queries `read_failed`).
 */

const NO_HOST = "SQL runs only inside a Tessera host: test projections and queries against one";

function fail(): never {
  throw Object.assign(new Error(NO_HOST), { payload: NO_HOST });
}

export const execute = fail;
export const query = fail;
