import { connect as netConnect } from "node:net";
import { type AiServer, type AiServerOptions, startAiServer } from "../../src/ai/start-ai-server";
import { mintToken } from "../../src/auth/mint-token";
import { createTokenVerifier } from "../../src/auth/token-verifier";
import { configSchema, type HostPort } from "../../src/config/config-schema";
import type { ProtocolVersion } from "../../src/device/frame-codec";
import { type GatewayServer, type GatewayServerOptions, startGatewayServer } from "../../src/http/gateway-server";
import { createOtaRoute } from "../../src/http/ota-route";
import { createFanout } from "../../src/fanout/create-fanout";
import { silentLogger } from "../../src/log";
import { SimulatedDevice } from "../../src/loadtest/simulated-device";
import { Metrics } from "../../src/metrics";
import { createUpstream, type UpstreamOptions } from "../../src/upstream/create-upstream";
import type { Upstream } from "../../src/upstream/upstream";

export const TEST_SECRET = "test-secret-for-integration-tests";

/** A limit no test reaches. */
const UNLIMITED = 1e12;

export interface StackOptions {
  /** Gateway options to override. */
  readonly gateway?: Partial<GatewayServerOptions>;
  readonly upstream?: Partial<UpstreamOptions>;
  /** Default `relay`, the gateway's default. */
  readonly transport?: "relay" | "converse";
  /** Options of the in-process reference AI service; `false`: start none (bring `targets`). */
  readonly ai?: AiServerOptions | false;
  readonly targets?: readonly HostPort[];
  /** Run as one instance of a cluster on this Redis (default: single instance, in-process). */
  readonly redisUrl?: string;
  readonly instanceId?: string;
  /** Wait for the upstream to be ready before returning. Default true. */
  readonly waitReady?: boolean;
}

/** A real gateway and a real reference AI service, talking gRPC over loopback. */
export interface Stack extends AsyncDisposable {
  readonly gateway: GatewayServer;
  readonly ai: AiServer | undefined;
  readonly upstream: Upstream;
  readonly metrics: Metrics;
  /** ws://127.0.0.1:port/ws */
  readonly wsUrl: string;
  /** A device token: bound to `deviceId` (its socket and camera only). */
  token(deviceId: string, extra?: { ttl?: number | string; subject?: string }): Promise<string>;
  /** An operator token (scope api), limited to `devices` when given. */
  apiToken(devices?: readonly string[]): Promise<string>;
  /** A device connected with a fresh token, hello not yet sent. */
  device(deviceId: string, version?: ProtocolVersion): Promise<SimulatedDevice>;
}

/**
 * Starts the stack. A start that fails part-way (the upstream never ready, a port taken)
 * stops what it had started before throwing: no AI server or gateway outlives it.
 */
export async function startStack(o: StackOptions = {}): Promise<Stack> {
  // What has been started so far, stopped in reverse order if a later step throws.
  const started: (() => Promise<void>)[] = [];
  const stopStarted = async () => {
    for (const stop of started.reverse()) await stop().catch(() => {});
  };
  try {
    return await startStackSteps(o, started);
  } catch (err) {
    await stopStarted();
    throw err;
  }
}

async function startStackSteps(o: StackOptions, started: (() => Promise<void>)[]): Promise<Stack> {
  const ai = o.ai === false ? undefined : await startAiServer({ port: 0, ...o.ai });
  if (ai !== undefined) started.push(() => ai.close());
  const targets = o.targets ?? [{ host: "127.0.0.1", port: ai!.port }];
  const metrics = new Metrics();
  const upstream = createUpstream({
    targets,
    transport: o.transport ?? "relay",
    maxConnections: 2,
    heartbeatMs: 30_000,
    reconnectBaseMs: 50,
    reconnectMaxMs: 500,
    bufferMs: 2000,
    logger: silentLogger,
    metrics,
    ...o.upstream,
  });
  started.push(() => upstream.close());
  if (o.waitReady !== false && !(await upstream.waitReady(10_000))) throw new Error("upstream never became ready");
  const fanout = createFanout({ redisUrl: o.redisUrl, instanceId: o.instanceId, logger: silentLogger });
  started.push(() => fanout.close());
  const gateway = startGatewayServer({
    host: "127.0.0.1",
    port: 0,
    upstream,
    verifier: createTokenVerifier({ secret: TEST_SECRET }),
    authRequired: true,
    helloTimeoutMs: 10_000,
    idleTimeoutSeconds: 120,
    maxFrameBytes: 65536,
    maxJsonBytes: 1024 * 1024,
    maxImageBytes: 5 * 1024 * 1024,
    fanout,
    ota: createOtaRoute({
      jwtSecret: TEST_SECRET,
      policy: "open",
      tokenTtlSeconds: 3600,
      protocolVersion: 3,
      issuesPerMinute: 600,
      debug: false,
      logger: silentLogger,
    }),
    devTokens: { enabled: false, secret: TEST_SECRET },
    serverAudio: { format: "opus", sampleRate: 24000, channels: 1, frameDurationMs: 60 },
    maxConnections: configSchema.maxConnections.default,
    maxConnectsPerSecond: configSchema.maxConnectsPerSecond.default,
    // Production's inbound limits would close the tests that flood on purpose (to fill an
    // upstream backlog, say); tests of the limits set them.
    maxFramesPerSecond: UNLIMITED,
    maxBytesPerSecond: UNLIMITED,
    inboundBurstSeconds: configSchema.inboundBurstSeconds.default,
    slowConsumerBytes: configSchema.slowConsumerBytes.default,
    slowConsumerMs: configSchema.slowConsumerSeconds.default * 1000,
    logger: silentLogger,
    metrics,
    // The API's limits are for the tests that test them.
    apiLimits: { perTokenPerSecond: UNLIMITED, perIpPerSecond: UNLIMITED, broadcastIntervalMs: 0 },
    ...o.gateway,
    // Every test device comes from 127.0.0.1: the per-address connect rate is for the tests
    // that test it.
    handshake: { maxConnectsPerIpPerSecond: UNLIMITED, ...o.gateway?.handshake },
  });
  started.push(() => gateway.stop());
  const wsUrl = `ws://127.0.0.1:${gateway.port}/ws`;
  const token = (deviceId: string, extra: { ttl?: number | string; subject?: string } = {}) => mintToken({ secret: TEST_SECRET, deviceId, ...extra });
  return {
    gateway,
    ai,
    upstream,
    metrics,
    wsUrl,
    token,
    apiToken: (devices) => mintToken({ secret: TEST_SECRET, subject: "operator", claims: { scope: "api", ...(devices ? { devices } : {}) } }),
    async device(deviceId, version = 1) {
      return SimulatedDevice.connect({ url: wsUrl, token: await token(deviceId), deviceId, clientId: `client-${deviceId}`, protocolVersion: version });
    },
    async [Symbol.asyncDispose]() {
      await gateway.stop();
      await upstream.close();
      await fanout.close();
      await ai?.close();
    },
  };
}

/** `count` distinct fake audio packets (the gateway forwards bytes untouched). */
export function packets(count: number, bytes = 24): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => {
    const p = new Uint8Array(bytes);
    p.fill(i & 0xff);
    p[0] = 0x78; // an Opus TOC byte: SILK-only-free CELT 20 ms; any byte works for the relay
    p[1] = i >> 8;
    p[2] = i & 0xff;
    return p;
  });
}

/** The raw HTTP answer to a WebSocket handshake (status and JSON body), for refusals.
 * `localAddress` picks the client's own address (any of 127.0.0.0/8 on loopback). */
export async function handshake(
  url: string,
  headers: Record<string, string> = {},
  o: { localAddress?: string } = {},
): Promise<{ status: number; body: unknown; raw: string }> {
  const u = new URL(url.replace(/^ws/, "http"));
  const lines = [
    `GET ${u.pathname}${u.search} HTTP/1.1`,
    `Host: ${u.host}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    "",
    "",
  ];
  const { promise, resolve, reject } = Promise.withResolvers<string>();
  let data = "";
  const socket = netConnect({ host: u.hostname, port: Number(u.port), localAddress: o.localAddress });
  socket.on("data", (chunk: Buffer) => {
    data += chunk.toString();
    const head = data.indexOf("\r\n\r\n");
    if (head < 0) return;
    const m = /content-length:\s*(\d+)/i.exec(data.slice(0, head));
    if (data.startsWith("HTTP/1.1 101") || (m && data.length >= head + 4 + Number(m[1]))) resolve(data);
  });
  socket.on("close", () => resolve(data));
  socket.on("error", reject);
  socket.write(lines.join("\r\n"));
  const raw = await promise;
  socket.destroy();
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0);
  const bodyText = raw.slice(raw.indexOf("\r\n\r\n") + 4);
  let body: unknown;
  try {
    body = JSON.parse(bodyText);
  } catch {
    body = bodyText;
  }
  return { status, body, raw };
}
