import type { TokenVerifier } from "../auth/token-verifier";
import { authenticateApiCall, authorize, authorizeKind } from "./api-auth";
import { errorResponse } from "./error-response";
import type { MessageDispatch } from "../cluster/message-dispatch";
import { dispatchedResponse } from "./message-route";
import { readMultipartImage } from "./multipart-image";

export interface ImageRouteOptions {
  readonly verifier: TokenVerifier;
  readonly authRequired: boolean;
  readonly dispatch: MessageDispatch;
  readonly maxImageBytes: number;
}

/**
 * `POST /api/image` (multipart: `image`, optional `prompt`, `device_id`): like /api/message,
 * the AI's answer about the picture streams to that device or to every connected client.
 * Not an image, empty, or over IM_MAX_IMAGE_BYTES: refused with the reason.
 */
export function createImageRoute(o: ImageRouteOptions): (req: Request) => Promise<Response> {
  return async (req) => {
    const caller = await authenticateApiCall(req, o.verifier, o.authRequired);
    if (caller instanceof Response) return caller;
    const kind = authorizeKind(caller, "api");
    if (kind !== undefined) return kind;
    const form = await readMultipartImage(req, { maxImageBytes: o.maxImageBytes, imageFields: ["image", "file"] });
    if (form.t === "refused") return errorResponse(form.code, form.message);
    const deviceId = form.text("device_id")?.trim();
    const denied = authorize(caller, "api", deviceId === "" ? undefined : deviceId);
    if (denied !== undefined) return denied;
    const userId = caller.t === "token" ? caller.token.subject : "";
    const question = { text: form.text("prompt") ?? "", image: form.image, userId };
    return dispatchedResponse(await o.dispatch.dispatch(question, deviceId === "" ? undefined : deviceId));
  };
}
