// The host's imports, as componentize-js binds them: `import ... from "<interface>"`.
// The build marks these module names external; the component links them to the host.

declare module "tessera:plugin/log@0.2.0" {
  export type Level = "trace" | "debug" | "info" | "warn" | "error";
  export function log(level: Level, message: string): void;
}

// The SQL values and rows, as in `wit.ts` (an ambient module cannot import it).
type TesseraSqlValue =
  | { tag: "null" }
  | { tag: "integer"; val: bigint }
  | { tag: "real"; val: number }
  | { tag: "text"; val: string }
  | { tag: "blob"; val: Uint8Array };
type TesseraRows = { columns: string[]; rows: TesseraSqlValue[][] };

declare module "tessera:plugin/projection-store@0.2.0" {
  export function execute(statement: string, params: TesseraSqlValue[]): bigint;
  export function query(statement: string, params: TesseraSqlValue[]): TesseraRows;
}

declare module "tessera:plugin/read-store@0.2.0" {
  export function query(projection: string, statement: string, params: TesseraSqlValue[]): TesseraRows;
}
