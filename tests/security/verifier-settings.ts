import type { VerifierConfig } from "../../src/auth/verifier-from-config";
import { DEFAULT_JWT_SECRET } from "../../src/config/config-schema";

/** The verifier's settings as `serve` reads them by default; tests pass only what differs. */
export function verifierSettings(o: Partial<VerifierConfig> = {}): VerifierConfig {
  return {
    jwtSecret: DEFAULT_JWT_SECRET,
    jwtPublicKey: "",
    jwtJwksUrl: "",
    jwtAlgorithms: "",
    jwtIssuer: "",
    jwtAudience: "",
    jwtRequireExp: true,
    jwtClockToleranceSeconds: 30,
    debug: false,
    otaPolicy: "off",
    ...o,
  };
}
