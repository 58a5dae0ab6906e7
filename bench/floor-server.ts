/**
 * The floor: a plain Bun.serve websocket that answers hello and echoes binary frames as they
 * are, with nothing in between. Whatever the gateway adds is measured against this, in the
 * same run (performance.md). Prints `PORT <n>` when listening.
 */
const sessionHello = JSON.stringify({
  type: "hello",
  transport: "websocket",
  session_id: "floor",
  audio_params: { format: "opus", sample_rate: 24000, channels: 1, frame_duration: 60 },
});

const server = Bun.serve({
  hostname: "127.0.0.1",
  port: Number(process.argv[2] ?? 0),
  fetch(req, srv) {
    if (srv.upgrade(req)) return undefined;
    return new Response("floor", { status: 200 });
  },
  websocket: {
    perMessageDeflate: false,
    message(ws, msg) {
      if (typeof msg === "string") {
        if (msg.includes('"hello"')) ws.send(sessionHello);
        return;
      }
      ws.send(msg);
    },
  },
});
process.stdout.write(`PORT ${server.port}\n`);
process.on("SIGTERM", () => process.exit(0));
