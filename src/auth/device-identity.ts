/** Who is connecting, as the handshake says (docs/device-protocol.md). */
export interface DeviceIdentity {
  /** The bearer token without its `Bearer ` prefix, if any. Never log it. */
  readonly token: string | undefined;
  readonly deviceId: string | undefined;
  readonly clientId: string | undefined;
  /** The raw Protocol-Version value, if any (validated by the caller). */
  readonly protocolVersion: string | undefined;
}

function nonEmpty(v: string | null | undefined): string | undefined {
  if (v === null || v === undefined) return undefined;
  const t = v.trim();
  return t === "" ? undefined : t;
}

function stripBearer(v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  // `Bearer` alone (the value was trimmed) carries no token.
  const m = /^bearer(\s+|$)/i.exec(v);
  return nonEmpty(m ? v.slice(m[0].length) : v);
}

/**
 * Reads identity from the firmware's headers, or from the query forms browsers and test
 * clients use (`token`, `authorization=Bearer ...`, `device-id`, `client-id`,
 * `protocol-version`, also with underscores). Headers win over the query.
 */
export function readDeviceIdentity(headers: Headers, query: URLSearchParams): DeviceIdentity {
  const q = (...names: string[]): string | undefined => {
    for (const n of names) {
      const v = nonEmpty(query.get(n));
      if (v !== undefined) return v;
    }
    return undefined;
  };
  const token = stripBearer(nonEmpty(headers.get("authorization"))) ?? q("token", "access_token") ?? stripBearer(q("authorization"));
  const deviceId = nonEmpty(headers.get("device-id")) ?? q("device-id", "device_id", "deviceId");
  return {
    token,
    // MACs are compared lower-case: the firmware sends lower case, hand-typed ones vary.
    deviceId: deviceId?.toLowerCase(),
    clientId: nonEmpty(headers.get("client-id")) ?? q("client-id", "client_id", "clientId"),
    protocolVersion: nonEmpty(headers.get("protocol-version")) ?? q("protocol-version", "protocol_version", "version"),
  };
}
