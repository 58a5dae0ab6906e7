import { createRemoteJWKSet, customFetch, type FetchImplementation, type JWTVerifyGetKey, errors as joseErrors } from "jose";
import { configError } from "./jws-algorithms";
import { KeySetUnavailable } from "./token-error";

/** Tuning of a remote JWKS; every duration in milliseconds. */
export interface RemoteKeySetOptions {
  /** A failed fetch fails every verification that needs the endpoint for this long, without a
   * new request (a reconnect storm against a down endpoint costs one fetch per window). */
  readonly failureBackoffMs: number;
  /** See jose `cooldownDuration`: how soon after a fetch an unknown `kid` may refetch. */
  readonly cooldownMs: number;
  /** See jose `cacheMaxAge`: keys older than this are refetched before use. */
  readonly cacheMaxAgeMs: number;
  /** See jose `timeoutDuration`: one fetch, response body included. */
  readonly timeoutMs: number;
  /** Larger responses are refused unread (a JWKS is a few KiB). */
  readonly maxResponseBytes: number;
}

export interface RemoteKeySet {
  /** The jose key resolver, its failures translated to KeySetUnavailable. */
  readonly resolve: JWTVerifyGetKey;
  /** Fetches now (bypassing cooldown); throws KeySetUnavailable. */
  reload(): Promise<void>;
  /** How many keys the cached set holds; undefined before the first successful fetch. */
  keyCount(): number | undefined;
}

/**
 * Validates a JWKS URL eagerly: https only, except loopback hosts (tests, a sidecar) or when
 * `allowHttp` says the network path is trusted. Keys fetched over plain http from elsewhere
 * could be swapped by anyone on the path, which would make every token forgeable.
 */
export function parseJwksUrl(value: string | URL, allowHttp: boolean): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw configError("jwksUrl is not a valid URL");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw configError("jwksUrl must be an https:// URL");
  if (url.protocol === "http:" && !allowHttp && !isLoopback(url.hostname)) {
    throw configError("jwksUrl must be https:// (plain http is allowed for loopback hosts, or with jwksAllowHttp)");
  }
  return url;
}

function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

/** A jose remote JWKS whose fetch classifies failures, bounds the body and backs off. */
export function createRemoteKeySet(url: URL, opts: RemoteKeySetOptions): RemoteKeySet {
  let failedAt = Number.NEGATIVE_INFINITY;
  let lastFailure: KeySetUnavailable | undefined;

  const fetchJwks: FetchImplementation = async (href, init) => {
    if (lastFailure !== undefined && Date.now() - failedAt < opts.failureBackoffMs) {
      throw new KeySetUnavailable("recently failed, retrying later");
    }
    try {
      const res = await fetchOnce(href, init, opts.maxResponseBytes);
      lastFailure = undefined;
      return res;
    } catch (err) {
      lastFailure = err instanceof KeySetUnavailable ? err : new KeySetUnavailable(isTimeout(err) ? "timed out" : "endpoint unreachable");
      failedAt = Date.now();
      throw lastFailure;
    }
  };

  const remote = createRemoteJWKSet(url, {
    cooldownDuration: opts.cooldownMs,
    cacheMaxAge: opts.cacheMaxAgeMs,
    timeoutDuration: opts.timeoutMs,
    [customFetch]: fetchJwks,
  });

  const translate = (err: unknown): unknown => {
    if (err instanceof joseErrors.JWKSTimeout) return new KeySetUnavailable("timed out");
    // A body that is not JSON (generic JOSEError) or not a key set (JWKSInvalid).
    if (err instanceof joseErrors.JWKSInvalid || (err instanceof joseErrors.JOSEError && err.code === "ERR_JOSE_GENERIC")) {
      return new KeySetUnavailable("not a JSON Web Key Set");
    }
    return err;
  };

  return {
    async resolve(header, token) {
      try {
        return await remote(header, token);
      } catch (err) {
        throw translate(err);
      }
    },
    async reload() {
      try {
        await remote.reload();
      } catch (err) {
        throw translate(err);
      }
    },
    keyCount: () => remote.jwks()?.keys.length,
  };
}

async function fetchOnce(href: string, init: Parameters<FetchImplementation>[1], maxBytes: number): Promise<Response> {
  const res = await fetch(href, init);
  if (res.status >= 300 && res.status < 400) {
    await res.body?.cancel();
    throw new KeySetUnavailable("redirect refused");
  }
  if (res.status !== 200) {
    await res.body?.cancel();
    throw new KeySetUnavailable(`HTTP ${res.status}`);
  }
  const declared = Number(res.headers.get("content-length") ?? "0");
  if (declared > maxBytes) {
    await res.body?.cancel();
    throw new KeySetUnavailable("response too large");
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (res.body !== null) {
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        await reader.cancel();
        throw new KeySetUnavailable("response too large");
      }
      chunks.push(value);
    }
  }
  return new Response(Buffer.concat(chunks), { status: 200, headers: { "content-type": "application/json" } });
}

function isTimeout(err: unknown): boolean {
  return err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError");
}
