import { SignJWT } from "jose";

export interface MintTokenOptions {
  /** HS256 shared secret. */
  readonly secret: string;
  /** Bound into the `device_id` claim when given. */
  readonly deviceId?: string;
  /** `sub`: the user the device belongs to. Default: the device id, else "xiaozhi-im". */
  readonly subject?: string;
  /** Lifetime: seconds, or a jose time span such as "30d", "12h". Default "30d". */
  readonly ttl?: number | string;
  /** Extra claims. */
  readonly claims?: Readonly<Record<string, unknown>>;
}

/** Mints an HS256 device token (for `xiaozhi-im token`, tests and provisioning). */
export async function mintToken(options: MintTokenOptions): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const ttl = options.ttl ?? "30d";
  const jwt = new SignJWT({ ...options.claims, ...(options.deviceId ? { device_id: options.deviceId.toLowerCase() } : {}) })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(options.subject ?? options.deviceId ?? "xiaozhi-im")
    .setIssuedAt(now)
    .setExpirationTime(typeof ttl === "number" ? now + ttl : ttl);
  return jwt.sign(new TextEncoder().encode(options.secret));
}
