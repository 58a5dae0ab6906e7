import { describe, expect, test } from "bun:test";
import { readDeviceIdentity } from "../../src/auth/device-identity";

function read(headers: Record<string, string>, query = "") {
  return readDeviceIdentity(new Headers(headers), new URLSearchParams(query));
}

describe("headers (firmware)", () => {
  test("Authorization Bearer, Device-Id, Client-Id, Protocol-Version", () => {
    expect(
      read({
        Authorization: "Bearer eyJ.abc.def",
        "Device-Id": "aa:bb:cc:dd:ee:ff",
        "Client-Id": "3f2a9c1e-0000-4000-8000-000000000001",
        "Protocol-Version": "3",
      }),
    ).toEqual({
      token: "eyJ.abc.def",
      deviceId: "aa:bb:cc:dd:ee:ff",
      clientId: "3f2a9c1e-0000-4000-8000-000000000001",
      protocolVersion: "3",
    });
  });

  test("Device-Id in upper case is lower-cased", () => {
    expect(read({ "Device-Id": "AA:BB:CC:DD:EE:FF" }).deviceId).toBe("aa:bb:cc:dd:ee:ff");
  });

  test("the Bearer prefix is case-insensitive; a bare token is taken as is", () => {
    expect(read({ authorization: "bearer tok1" }).token).toBe("tok1");
    expect(read({ authorization: "BEARER   tok2" }).token).toBe("tok2");
    expect(read({ authorization: "tok3" }).token).toBe("tok3");
  });

  test("nothing given -> all undefined", () => {
    expect(read({})).toEqual({ token: undefined, deviceId: undefined, clientId: undefined, protocolVersion: undefined });
  });

  test("blank headers count as absent", () => {
    expect(read({ "Device-Id": "  ", "Client-Id": "", Authorization: " " })).toEqual({
      token: undefined,
      deviceId: undefined,
      clientId: undefined,
      protocolVersion: undefined,
    });
  });

  test("`Bearer ` with no token after it is no token", () => {
    expect(read({ Authorization: "Bearer " }).token).toBeUndefined();
  });
});

describe("query forms (browsers, test clients)", () => {
  test("token=, device-id=, client-id=, protocol-version=", () => {
    expect(read({}, "token=jwt1&device-id=AA:BB:CC:00:11:22&client-id=c1&protocol-version=2")).toEqual({
      token: "jwt1",
      deviceId: "aa:bb:cc:00:11:22",
      clientId: "c1",
      protocolVersion: "2",
    });
  });

  test("authorization=Bearer%20<jwt>", () => {
    expect(read({}, "authorization=Bearer%20jwt2").token).toBe("jwt2");
    expect(read({}, "authorization=Bearer+jwt3").token).toBe("jwt3");
  });

  test("authorization=Bearer%20 with no token is no token", () => {
    expect(read({}, "authorization=Bearer%20").token).toBeUndefined();
  });

  test("device_id, client_id, protocol_version with underscores", () => {
    const id = read({}, "device_id=AA:00:00:00:00:01&client_id=c2&protocol_version=1");
    expect(id.deviceId).toBe("aa:00:00:00:00:01");
    expect(id.clientId).toBe("c2");
    expect(id.protocolVersion).toBe("1");
  });

  test("token= wins over authorization=", () => {
    expect(read({}, "authorization=Bearer%20b&token=a").token).toBe("a");
  });
});

describe("headers win over the query", () => {
  test("every field", () => {
    const id = read(
      { Authorization: "Bearer from-header", "Device-Id": "aa:aa:aa:aa:aa:aa", "Client-Id": "h", "Protocol-Version": "1" },
      "token=from-query&device-id=bb:bb:bb:bb:bb:bb&client-id=q&protocol-version=3",
    );
    expect(id).toEqual({ token: "from-header", deviceId: "aa:aa:aa:aa:aa:aa", clientId: "h", protocolVersion: "1" });
  });

  test("a missing header falls back to the query per field", () => {
    const id = read({ "Device-Id": "aa:aa:aa:aa:aa:aa" }, "token=q-token&device-id=bb:bb:bb:bb:bb:bb&protocol-version=3");
    expect(id.deviceId).toBe("aa:aa:aa:aa:aa:aa");
    expect(id.token).toBe("q-token");
    expect(id.protocolVersion).toBe("3");
  });
});
