/**
 * MCP requests the HTTP API pushes to one device, waiting for the device's answers. Each
 * request's id is replaced by a gateway id the AI service never uses (`gw-...`), so that the
 * device's answer is taken here instead of going to the AI; the caller sees its own id again.
 */
export class PushedMcpCalls {
  /** Made on the first push: most sessions never get one. */
  private pending:
    | Map<string, { readonly originalId: unknown; readonly reply: (payload: unknown) => void; readonly timer: ReturnType<typeof setTimeout> }>
    | undefined;
  private seq = 0;

  /** @param idPrefix names the session in the gateway ids (a few characters of its id). */
  constructor(private readonly idPrefix: string) {}

  /**
   * Sends `payload` with a gateway id through `send`; `reply` gets the device's answer with
   * the caller's id, or undefined after `timeoutMs` (or when the session ends).
   */
  push(
    payload: Readonly<Record<string, unknown>>,
    reply: (payload: unknown) => void,
    timeoutMs: number,
    send: (payload: Record<string, unknown>) => void,
  ): void {
    const gatewayId = `gw-${this.idPrefix}-${++this.seq}`;
    const timer = setTimeout(() => {
      this.pending?.delete(gatewayId);
      reply(undefined);
    }, timeoutMs);
    this.pending ??= new Map();
    this.pending.set(gatewayId, { originalId: payload.id, reply, timer });
    send({ ...payload, id: gatewayId });
  }

  /** A device's MCP message: true when it answered a pushed request (then it is taken). */
  take(payloadJson: string): boolean {
    const pending = this.pending;
    if (pending === undefined || pending.size === 0) return false;
    let payload: { id?: unknown } & Record<string, unknown>;
    try {
      payload = JSON.parse(payloadJson) as { id?: unknown } & Record<string, unknown>;
    } catch {
      return false;
    }
    const call = typeof payload.id === "string" ? pending.get(payload.id) : undefined;
    if (call === undefined) return false;
    pending.delete(payload.id as string);
    clearTimeout(call.timer);
    call.reply({ ...payload, id: call.originalId });
    return true;
  }

  /** The session ended: every caller still waiting gets undefined now. */
  cancelAll(): void {
    for (const call of this.pending?.values() ?? []) {
      clearTimeout(call.timer);
      call.reply(undefined);
    }
    this.pending = undefined;
  }
}
