import { describe, expect, test } from "bun:test";
import { createCipheriv } from "node:crypto";
import fc from "fast-check";
import { checkDatagram, UDP_HEADER_BYTES, UdpAudioCipher } from "../../src/device/udp-audio-cipher";

/** A datagram as the firmware builds one (mqtt_protocol.cc SendAudio), written independently. */
function firmwareDatagram(key: Buffer, nonce: Buffer, opus: Uint8Array, timestamp: number, sequence: number): Buffer {
  const header = Buffer.from(nonce);
  header.writeUInt16BE(opus.length, 2);
  header.writeUInt32BE(timestamp, 8);
  header.writeUInt32BE(sequence, 12);
  const cipher = createCipheriv("aes-128-ctr", key, header);
  return Buffer.concat([header, cipher.update(opus), cipher.final()]);
}

describe("UdpAudioCipher", () => {
  test("opens what the firmware sends, in order; the ssrc bytes are the session's", () => {
    const server = UdpAudioCipher.create(0xdeadbeef);
    expect(server.ssrc).toBe(0xdeadbeef);
    for (let seq = 1; seq <= 50; seq++) {
      const opus = new Uint8Array(120).fill(seq);
      const got = server.open(firmwareDatagram(server.key, server.nonce, opus, seq * 60, seq));
      expect(got).toEqual({ opus, timestamp: seq * 60, sequence: seq });
    }
    expect(server.receivedSequence).toBe(50);
  });

  test("what it seals, the firmware's way of opening reads back (header as IV), sequences from 1", () => {
    const server = UdpAudioCipher.create(7);
    const device = new UdpAudioCipher(server.key, server.nonce);
    for (let i = 1; i <= 3; i++) {
      const sealed = server.seal(new Uint8Array([i, i, i]), 1000 + i);
      expect(sealed.readUInt32BE(12)).toBe(i);
      expect(sealed.readUInt32BE(4)).toBe(7);
      expect(device.open(sealed)).toEqual({ opus: new Uint8Array([i, i, i]), timestamp: 1000 + i, sequence: i });
    }
  });

  test("replays, stale, truncated, padded, foreign-type and oversized datagrams are refused and do not move the sequence", () => {
    const server = UdpAudioCipher.create(1);
    const d5 = firmwareDatagram(server.key, server.nonce, new Uint8Array(40), 0, 5);
    expect(server.open(d5)).toMatchObject({ sequence: 5 });
    expect(server.open(d5)).toBe("stale-sequence");
    expect(server.open(firmwareDatagram(server.key, server.nonce, new Uint8Array(40), 0, 4))).toBe("stale-sequence");
    expect(server.open(d5.subarray(0, 10))).toBe("short");
    expect(server.open(d5.subarray(0, d5.length - 1))).toBe("bad-length");
    expect(server.open(Buffer.concat([d5, Buffer.from([0])]))).toBe("bad-length");
    const typed = Buffer.from(d5);
    typed[0] = 2;
    expect(server.open(typed)).toBe("bad-type");
    expect(server.open(firmwareDatagram(server.key, server.nonce, new Uint8Array(1501), 0, 9))).toBe("too-large");
    expect(server.receivedSequence).toBe(5);
    // A gap is accepted (the firmware logs gaps, it does not refuse them).
    expect(server.open(firmwareDatagram(server.key, server.nonce, new Uint8Array(40), 0, 9))).toMatchObject({ sequence: 9 });
  });

  test("fuzz: any bytes are refused or opened, never thrown; only a well-framed, newer datagram moves the sequence", () => {
    const server = UdpAudioCipher.create(3);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), (bytes) => {
        const before = server.receivedSequence;
        const out = server.open(bytes);
        if (typeof out === "string") expect(server.receivedSequence).toBe(before);
        else {
          expect(checkDatagram(bytes)).not.toBeTypeOf("string");
          expect(out.sequence).toBeGreaterThan(before);
          expect(out.opus.length).toBe(bytes.length - UDP_HEADER_BYTES);
        }
      }),
      { numRuns: 2000 },
    );
  });

  test("fuzz: every payload and header field survives a seal/open round trip", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1500 }), fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff }), (opus, ssrc, ts) => {
        const a = UdpAudioCipher.create(ssrc);
        const b = new UdpAudioCipher(a.key, a.nonce);
        expect(b.open(a.seal(opus, ts))).toEqual({ opus, timestamp: ts, sequence: 1 });
      }),
      { numRuns: 300 },
    );
  });
});
