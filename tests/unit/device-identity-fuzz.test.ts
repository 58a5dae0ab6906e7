import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { type DeviceIdentity, readDeviceIdentity } from "../../src/auth/device-identity";

const SEED = 0x7a_10_4026;

const HEADER_NAMES = ["authorization", "device-id", "client-id", "protocol-version", "origin", "x-device-id", "cookie"] as const;
const QUERY_NAMES = [
  "token",
  "access_token",
  "authorization",
  "device-id",
  "device_id",
  "deviceId",
  "client-id",
  "client_id",
  "clientId",
  "protocol-version",
  "protocol_version",
  "version",
  "other",
] as const;

/** What an HTTP header value can hold (what `new Headers` accepts): tab, visible ASCII,
 * space, and obs-text bytes 0x80-0xFF as Latin-1 characters. */
const headerChar = fc.oneof(
  fc.constantFrom("\t", " ", "\u00a0", "\u00ff"),
  fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)),
  fc.integer({ min: 0x80, max: 0xff }).map((c) => String.fromCharCode(c)),
);
const headerValue = fc.oneof(
  fc.string({ unit: headerChar, maxLength: 80 }),
  fc.constantFrom("", " ", "Bearer", "Bearer ", "bearer\t", "Bearer  Bearer x", "BEARER tok", "Basic dXNlcjpwYXNz", "1", "2", "3"),
  fc.string({ unit: headerChar, maxLength: 40 }).map((t) => `Bearer ${t}`),
);
const mixedCase = (name: string) => fc.mixedCase(fc.constant(name));

const headersArb = fc.array(fc.tuple(fc.constantFrom(...HEADER_NAMES).chain(mixedCase), headerValue), { maxLength: 6 }).map((pairs) => {
  const h = new Headers();
  for (const [k, v] of pairs) h.append(k, v);
  return h;
});

/** Any code point in names and values, including ones URLSearchParams must percent-decode. */
const queryValue = fc.oneof(
  fc.string({ unit: "binary", maxLength: 60 }),
  fc.string({ unit: "binary-ascii", maxLength: 60 }),
  fc.constantFrom("", " ", "Bearer ", "Bearer+x", "%", "%zz", "%E0%A4%A", "+", "%00", "\u0000"),
);
const queryArb = fc.oneof(
  // Pairs set through the API.
  fc
    .array(fc.tuple(fc.oneof(fc.constantFrom(...QUERY_NAMES), fc.string({ maxLength: 10 })), queryValue), { maxLength: 8 })
    .map((pairs) => new URLSearchParams(pairs)),
  // A raw query string: whatever a client put after `?`, malformed escapes included.
  fc.string({ unit: "binary", maxLength: 200 }).map((s) => new URLSearchParams(s)),
  fc
    .array(fc.tuple(fc.constantFrom(...QUERY_NAMES), fc.string({ unit: "binary-ascii", maxLength: 30 })), { maxLength: 6 })
    .map((pairs) => new URLSearchParams(pairs.map(([k, v]) => `${k}=${v}`).join("&"))),
);

function checkIdentity(id: DeviceIdentity): void {
  expect(Object.keys(id).sort()).toEqual(["clientId", "deviceId", "protocolVersion", "token"]);
  for (const v of Object.values(id)) {
    if (v === undefined) continue;
    expect(typeof v).toBe("string");
    // Present means non-blank and trimmed.
    expect(v).not.toBe("");
    expect(v).toBe(v.trim());
  }
  if (id.deviceId !== undefined) expect(id.deviceId).toBe(id.deviceId.toLowerCase());
}

describe("readDeviceIdentity on hostile headers and queries", () => {
  test("arbitrary headers and queries never throw; fields are absent or trimmed non-empty strings", () => {
    fc.assert(
      fc.property(headersArb, queryArb, (headers, query) => {
        checkIdentity(readDeviceIdentity(headers, query));
      }),
      { seed: SEED, numRuns: 5_000 },
    );
  });

  test("a non-blank header always wins over the query, field by field", () => {
    fc.assert(
      fc.property(headersArb, queryArb, (headers, query) => {
        const id = readDeviceIdentity(headers, query);
        const dev = headers.get("device-id")?.trim();
        if (dev) expect(id.deviceId).toBe(dev.toLowerCase());
        const client = headers.get("client-id")?.trim();
        if (client) expect(id.clientId).toBe(client);
        const pv = headers.get("protocol-version")?.trim();
        if (pv) expect(id.protocolVersion).toBe(pv);
      }),
      { seed: SEED + 1, numRuns: 3_000 },
    );
  });

  test("the token is never the bare word Bearer and never keeps the scheme it was sent with", () => {
    fc.assert(
      fc.property(fc.string({ unit: headerChar, maxLength: 60 }), fc.constantFrom("Bearer ", "bearer ", "BEARER\t", "Bearer    "), (t, scheme) => {
        const id = readDeviceIdentity(new Headers({ Authorization: `${scheme}${t}` }), new URLSearchParams());
        const want = t.trim();
        if (want === "") expect(id.token).toBeUndefined();
        else expect(id.token).toBe(want);
      }),
      { seed: SEED + 2, numRuns: 3_000 },
    );
  });
});

describe("identities round-trip through every form a client uses", () => {
  const idValue = fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 40 }).filter((s) => s.trim() === s && s !== "" && !/^bearer(\s|$)/i.test(s));

  test("headers, or any query alias, give back the same values", () => {
    fc.assert(
      fc.property(
        idValue,
        idValue,
        idValue,
        fc.constantFrom("1", "2", "3"),
        fc.constantFrom("headers", "query"),
        fc.constantFrom(0, 1, 2),
        fc.constantFrom("token", "access_token", "authorization"),
        (token, deviceId, clientId, version, where, alias, tokenName) => {
          let id: DeviceIdentity;
          if (where === "headers") {
            id = readDeviceIdentity(
              new Headers({ Authorization: `Bearer ${token}`, "Device-Id": deviceId, "Client-Id": clientId, "Protocol-Version": version }),
              new URLSearchParams(),
            );
          } else {
            const q = new URLSearchParams();
            q.set(tokenName, tokenName === "authorization" ? `Bearer ${token}` : token);
            q.set(["device-id", "device_id", "deviceId"][alias]!, deviceId);
            q.set(["client-id", "client_id", "clientId"][alias]!, clientId);
            q.set(["protocol-version", "protocol_version", "version"][alias]!, version);
            id = readDeviceIdentity(new Headers(), new URLSearchParams(q.toString()));
          }
          expect(id).toEqual({ token, deviceId: deviceId.toLowerCase(), clientId, protocolVersion: version });
        },
      ),
      { seed: SEED + 3, numRuns: 3_000 },
    );
  });
});
