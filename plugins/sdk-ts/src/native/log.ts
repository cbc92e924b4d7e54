/**
 * The host's `log` import as a native test sees it (`tessera-test` links it in place of
 * `tessera:plugin/log@0.2.0`): lines go to stderr, tagged with their level.
 */

export type Level = "trace" | "debug" | "info" | "warn" | "error";

declare const console: { error(message: string): void };

export function log(level: Level, message: string): void {
  console.error(`[${level}] ${message}`);
}
