/**
 * Logging through the host: each line is tagged with the plugin's name and, during a
 * request, its request id. The host bounds how much one call may write.
 */

import { log as hostLog } from "tessera:plugin/log@0.2.0";

export const log = {
  trace: (message: string): void => hostLog("trace", message),
  debug: (message: string): void => hostLog("debug", message),
  info: (message: string): void => hostLog("info", message),
  warn: (message: string): void => hostLog("warn", message),
  error: (message: string): void => hostLog("error", message),
};
