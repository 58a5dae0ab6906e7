import { hostname } from "node:os";
import { ErrorCode, GatewayError } from "../errors";

const VALID = /^[A-Za-z0-9._:-]{1,100}$/;

/**
 * A fresh id for this process: host, pid and random bits. It is new on every start on purpose:
 * sequence numbers restart with the process, so a restarted gateway must not be mistaken for
 * the old one by the receivers' duplicate filters.
 */
export function newInstanceId(): string {
  const host =
    hostname()
      .replace(/[^A-Za-z0-9.-]/g, "-")
      .slice(0, 60) || "gateway";
  return `${host}-${process.pid}-${crypto.randomUUID().slice(0, 8)}`;
}

/**
 * Checks an instance id given in options. It goes into Redis keys, channel names and the
 * envelope header (one length byte), hence the short ASCII alphabet without spaces.
 */
export function checkInstanceId(id: string): string {
  if (!VALID.test(id)) {
    throw new GatewayError(ErrorCode.ConfigInvalid, `instance id must match ${VALID.source}, got ${JSON.stringify(id)}`);
  }
  return id;
}
