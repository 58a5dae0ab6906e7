/** A JSON response with `status`. */
export function jsonResponse(body: unknown, status = 200, headers?: Record<string, string>): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json; charset=utf-8", ...headers } });
}

/** The error body every refused request gets: a stable code and a short reason. */
export function errorResponse(status: number, code: string, message: string, headers?: Record<string, string>): Response {
  return jsonResponse({ error: { code, message } }, status, headers);
}
