import { createServer } from "node:net";

/**
 * True when `port` on `host` cannot be bound because something already listens there. Checked
 * before anything else starts, so that a second gateway on the same port stops with one line
 * instead of a stack trace after it has started its AI service.
 */
export function portInUse(host: string, port: number): Promise<boolean> {
  if (port === 0) return Promise.resolve(false);
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once("error", (err: NodeJS.ErrnoException) => resolve(err.code === "EADDRINUSE"));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(false)));
  });
}
