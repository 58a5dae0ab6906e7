import { BlockList, isIP } from "node:net";
import { ErrorCode, GatewayError } from "../errors";

/**
 * IM_TRUSTED_PROXIES: the peers (CIDRs or addresses) whose `X-Forwarded-For` / `X-Real-IP`
 * name the real client. Behind a balancer every device comes from the balancer's address:
 * without this, one address's limits would apply to the whole fleet; with it taken from any
 * peer, a client could claim any address it likes. So the headers count only from these.
 */
export class TrustedProxies {
  private constructor(
    private readonly list: BlockList,
    readonly count: number,
  ) {}

  /** Parses a comma-separated list of CIDRs (`10.0.0.0/8`, `fd00::/8`) and addresses.
   * Throws ERR_CONFIG_INVALID, naming the bad entry. */
  static parse(spec: string): TrustedProxies {
    const list = new BlockList();
    let count = 0;
    for (const raw of spec.split(",")) {
      const entry = raw.trim();
      if (entry === "") continue;
      const [address = "", bits] = entry.split("/");
      const family = isIP(address);
      const prefix = bits === undefined ? undefined : Number(bits);
      const max = family === 4 ? 32 : 128;
      if (family === 0 || (prefix !== undefined && (!Number.isInteger(prefix) || prefix < 0 || prefix > max || bits === ""))) {
        throw new GatewayError(
          ErrorCode.ConfigInvalid,
          `IM_TRUSTED_PROXIES: ${JSON.stringify(entry.slice(0, 100))} is not an address or a CIDR (10.0.0.0/8, fd00::/8)`,
        );
      }
      const type = family === 4 ? "ipv4" : "ipv6";
      if (prefix === undefined) list.addAddress(address, type);
      else list.addSubnet(address, prefix, type);
      count++;
    }
    return new TrustedProxies(list, count);
  }

  /** True when `address` is one of the trusted proxies. */
  trusts(address: string): boolean {
    if (this.count === 0) return false;
    const family = isIP(address);
    return family !== 0 && this.list.check(address, family === 4 ? "ipv4" : "ipv6");
  }

  /**
   * The client's address: `peer`'s own, unless `peer` is a trusted proxy; then the nearest
   * address of `X-Forwarded-For` (read from the right, past further trusted proxies) that is
   * not a trusted proxy, else `X-Real-IP`. A header entry that is not an address ends the
   * walk: what lies left of it cannot be trusted.
   */
  clientAddress(headers: Headers, peer: string): string {
    if (!this.trusts(peer)) return peer;
    const forwarded = headers.get("x-forwarded-for");
    if (forwarded !== null) {
      const hops = forwarded.split(",").map((h) => h.trim());
      let client = peer;
      for (let i = hops.length - 1; i >= 0; i--) {
        const hop = stripPort(hops[i]!);
        if (isIP(hop) === 0) break;
        client = hop;
        if (!this.trusts(hop)) break;
      }
      return client;
    }
    const real = headers.get("x-real-ip")?.trim();
    return real !== undefined && isIP(real) !== 0 ? real : peer;
  }
}

/** `1.2.3.4:5678` and `[::1]:5678` (some proxies add the port) to the bare address. */
function stripPort(hop: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(hop);
  if (bracketed !== null) return bracketed[1]!;
  const v4 = /^(\d{1,3}(?:\.\d{1,3}){3}):\d+$/.exec(hop);
  return v4 !== null ? v4[1]! : hop;
}
