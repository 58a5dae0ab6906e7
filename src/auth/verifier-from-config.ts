import { readFileSync, statSync } from "node:fs";
import { type Config, DEFAULT_JWT_SECRET } from "../config/config-schema";
import { describeError, ErrorCode, GatewayError, isGatewayError } from "../errors";
import type { Logger } from "../log";
import { configError } from "./jws-algorithms";
import { type ConfiguredTokenVerifier, createTokenVerifier, TokenError, type TokenVerifierOptions } from "./token-verifier";

/** The settings that decide how device tokens are verified. */
export type VerifierConfig = Pick<
  Config,
  | "jwtSecret"
  | "jwtPublicKey"
  | "jwtJwksUrl"
  | "jwtAlgorithms"
  | "jwtIssuer"
  | "jwtAudience"
  | "jwtRequireExp"
  | "jwtClockToleranceSeconds"
  | "debug"
  | "otaPolicy"
>;

/** Where the verification key comes from, as the settings decide it. */
export type KeySourceSetting = "JWT_SECRET" | "JWT_PUBLIC_KEY" | "JWT_JWKS_URL";

/** A key file is a few KiB; anything bigger is a wrong path (a log, a device node). */
const MAX_KEY_FILE_BYTES = 1024 * 1024;

/** Reads a key file; the default reader of {@link verifierOptionsFromConfig}. */
export function readKeyFile(path: string): string {
  const size = statSync(path).size;
  if (size > MAX_KEY_FILE_BYTES) throw new Error(`${size} bytes, not a key file`);
  return readFileSync(path, "utf8");
}

/** Which setting supplies the key: JWT_PUBLIC_KEY or JWT_JWKS_URL when set, else JWT_SECRET. */
export function keySourceOf(config: Pick<VerifierConfig, "jwtPublicKey" | "jwtJwksUrl">): KeySourceSetting {
  if (config.jwtPublicKey !== "") return "JWT_PUBLIC_KEY";
  if (config.jwtJwksUrl !== "") return "JWT_JWKS_URL";
  return "JWT_SECRET";
}

/**
 * The verifier options the settings describe, with the start-up rules applied. Throws a
 * GatewayError ERR_CONFIG_INVALID whose message is one line naming the settings:
 * - exactly one key source: JWT_PUBLIC_KEY and JWT_JWKS_URL together, or either with a
 *   JWT_SECRET of its own (which would only sign tokens the gateway then refuses), conflict;
 * - provisioning (IM_OTA_POLICY) hands out tokens signed with JWT_SECRET, so it must not
 *   issue them while another key source verifies;
 * - production safety: without IM_SERVER_DEBUG, the built-in development secret is refused
 *   (anyone can mint tokens with it);
 * - JWT_PUBLIC_KEY is a file path, read here (unreadable: an error naming the path).
 */
export function verifierOptionsFromConfig(config: VerifierConfig, readFile: (path: string) => string = readKeyFile): TokenVerifierOptions {
  const source = keySourceOf(config);
  const ownSecret = config.jwtSecret !== DEFAULT_JWT_SECRET;
  if (config.jwtPublicKey !== "" && config.jwtJwksUrl !== "") {
    throw configError("JWT_PUBLIC_KEY and JWT_JWKS_URL are both set: tokens are verified with exactly one key source; unset one of them");
  }
  if (source !== "JWT_SECRET" && ownSecret) {
    throw configError(
      `JWT_SECRET and ${source} are both set: tokens are verified with ${source} only, so tokens signed with JWT_SECRET would be refused; unset one of them`,
    );
  }
  if (source !== "JWT_SECRET" && issuesTokens(config)) {
    throw configError(
      `IM_OTA_POLICY=${config.otaPolicy} hands out tokens signed with JWT_SECRET, but tokens are verified with ${source}: set IM_OTA_POLICY=off (devices get their tokens from your issuer)`,
    );
  }
  if (source === "JWT_SECRET" && !ownSecret && !config.debug) {
    throw configError(
      "JWT_SECRET is not set: the built-in development secret lets anyone mint tokens for this gateway. Set JWT_SECRET (or JWT_PUBLIC_KEY / JWT_JWKS_URL), or run with IM_SERVER_DEBUG=true (--debug) for local use only",
    );
  }
  const common = {
    ...(config.jwtAlgorithms !== "" ? { algorithms: config.jwtAlgorithms } : {}),
    ...(config.jwtIssuer !== "" ? { issuer: config.jwtIssuer } : {}),
    ...(config.jwtAudience !== "" ? { audience: config.jwtAudience } : {}),
    requireExp: config.jwtRequireExp,
    clockToleranceSeconds: config.jwtClockToleranceSeconds,
  };
  switch (source) {
    case "JWT_SECRET":
      return { secret: config.jwtSecret, ...common };
    case "JWT_JWKS_URL":
      return { jwksUrl: config.jwtJwksUrl, ...common };
    case "JWT_PUBLIC_KEY": {
      let text: string;
      try {
        text = readFile(config.jwtPublicKey);
      } catch (err) {
        throw configError(`JWT_PUBLIC_KEY: cannot read ${JSON.stringify(config.jwtPublicKey)} (${oneLine(describeError(err))})`);
      }
      return { publicKey: text, ...common };
    }
  }
}

/** Whether /xiaozhi/ota/ would hand out tokens (signed with JWT_SECRET) under these settings. */
function issuesTokens(config: Pick<VerifierConfig, "otaPolicy" | "debug">): boolean {
  switch (config.otaPolicy) {
    case "off":
      return false;
    case "debug-only":
      return config.debug;
    default:
      return true;
  }
}

/**
 * The verifier the settings describe (see {@link verifierOptionsFromConfig}); throws
 * ERR_CONFIG_INVALID, one line, naming the setting at fault.
 */
export function verifierFromConfig(config: VerifierConfig, readFile?: (path: string) => string): ConfiguredTokenVerifier {
  const options = verifierOptionsFromConfig(config, readFile);
  try {
    return createTokenVerifier(options);
  } catch (err) {
    if (!isGatewayError(err, ErrorCode.ConfigInvalid)) throw err;
    // The verifier names its options (publicKey, algorithms...); the operator knows settings.
    throw configError(`token verification (key from ${keySourceOf(config)}): ${oneLine(err.message)}`);
  }
}

/** What start-up does with a bad setting: one line on stderr, exit status 2. */
export function exitOnConfigError(message: string): never {
  process.stderr.write(`xiaozhi-im: ${oneLine(message)}\n`);
  process.exit(2);
}

/**
 * The gateway's verifier, for `serve`: built from the settings (a bad or unsafe one ends
 * start-up through `onConfigError`, by default one line on stderr and exit status 2), its
 * summary logged (never a secret, key material or a JWKS path), and a JWKS fetched once at
 * once so that the log says whether it is reachable. Verification fails closed meanwhile and
 * whenever the endpoint is down (handshakes get 503 ERR_TOKEN_KEYS_UNAVAILABLE).
 */
export function createVerifierFromConfig(
  config: VerifierConfig,
  logger: Logger,
  onConfigError: (message: string) => never = exitOnConfigError,
): ConfiguredTokenVerifier {
  let verifier: ConfiguredTokenVerifier;
  try {
    verifier = verifierFromConfig(config);
  } catch (err) {
    if (err instanceof GatewayError) return onConfigError(err.message);
    throw err;
  }
  const description = verifier.describe();
  logger.info({ ...description, keySetting: keySourceOf(config) }, "device tokens are verified");
  if (description.weakSecret === true && config.jwtSecret !== DEFAULT_JWT_SECRET) {
    logger.warn(
      { algorithms: description.algorithms },
      "JWT_SECRET is shorter than the hash of its algorithm (32 bytes for HS256): use a long random secret, e.g. `openssl rand -base64 48`",
    );
  }
  if (description.keySource === "jwks") {
    const jwksHost = description.jwksHost;
    verifier.warm().then(
      () => logger.info({ jwksHost }, "JWKS reachable: token keys loaded"),
      (err: unknown) =>
        logger.error(
          { jwksHost, code: err instanceof TokenError ? err.code : ErrorCode.Internal, reason: describeError(err) },
          "JWKS unreachable at start-up: device handshakes are refused (503) until it answers",
        ),
    );
  } else {
    // A key that cannot be imported must not wait for the first device to surface.
    verifier.warm().catch((err: unknown) => logger.error({ reason: describeError(err) }, "the token key cannot be used: every handshake will be refused"));
  }
  return verifier;
}

function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, " ");
}
