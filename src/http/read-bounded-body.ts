/** A request body read with bounded memory. */
export type BoundedBody = { readonly t: "ok"; readonly bytes: Uint8Array } | { readonly t: "too-large" } | { readonly t: "failed" };

/**
 * Reads at most `limit` bytes of a request's body. A body announced (Content-Length) or found
 * to be bigger is refused without being buffered: the rest is cancelled. An absent body is
 * empty; a body that breaks off is `failed`.
 */
export async function readBoundedBody(req: Request, limit: number): Promise<BoundedBody> {
  const announced = Number(req.headers.get("content-length") ?? Number.NaN);
  if (Number.isFinite(announced) && announced > limit) return { t: "too-large" };
  if (req.body === null) return { t: "ok", bytes: new Uint8Array(0) };
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > limit) {
        await reader.cancel().catch(() => {});
        return { t: "too-large" };
      }
      chunks.push(value);
    }
  } catch {
    return { t: "failed" };
  } finally {
    reader.releaseLock();
  }
  return { t: "ok", bytes: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total) };
}
