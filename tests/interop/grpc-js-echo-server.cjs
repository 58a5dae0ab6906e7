// A foreign AI service: @grpc/grpc-js on Node, loading proto/ at run time with
// @grpc/proto-loader. It shares no code with xiaozhi-im, so a conversation through it
// proves the contract is plain gRPC. It echoes audio, answers heartbeats and chat, and
// prints its port on stdout.
const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const def = protoLoader.loadSync(path.join(__dirname, "../../proto/xiaozhi/ai/v1/ai.proto"), {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const pkg = grpc.loadPackageDefinition(def).xiaozhi.ai.v1;
const maxStreams = Number(process.env.MAX_CONCURRENT_STREAMS || 0);

function answer(event, hello) {
  switch (event.event) {
    case "heartbeat":
      return [{ heartbeat: { sentAtMs: event.heartbeat.sentAtMs } }];
    case "hello":
      hello.value = event.hello;
      return [{ llm: { text: event.hello.resumed ? `resumed on ${process.pid}` : `hi from ${process.pid}`, emotion: "happy" } }];
    case "audio":
      return [{ audio: { opus: event.audio.opus, timestampMs: event.audio.timestampMs } }];
    case "chat":
      return [
        { tts: { state: "TTS_STATE_START" } },
        { tts: { state: "TTS_STATE_SENTENCE_START", text: `grpc-js heard: ${event.chat.text} from ${hello.value ? hello.value.userId : "?"}` } },
        { tts: { state: "TTS_STATE_STOP" } },
      ];
    default:
      return [];
  }
}

const server = new grpc.Server(maxStreams ? { "grpc.max_concurrent_streams": maxStreams } : {});
server.addService(pkg.AiService.service, {
  converse(call) {
    const hello = { value: undefined };
    call.on("data", (ev) => {
      for (const out of answer(ev, hello)) call.write(out);
    });
    call.on("end", () => call.end());
    call.on("error", () => {});
  },
  relay(call) {
    const hellos = new Map();
    call.on("data", (req) => {
      const events = [];
      for (const ev of req.events) {
        if (!hellos.has(ev.sessionKey)) hellos.set(ev.sessionKey, { value: undefined });
        for (const out of answer(ev, hellos.get(ev.sessionKey))) events.push({ sessionKey: ev.sessionKey, ...out });
      }
      if (events.length) call.write({ events });
    });
    call.on("end", () => call.end());
    call.on("error", () => {});
  },
  ask(call) {
    call.write({ text: `grpc-js: ${call.request.text}` });
    call.end();
  },
});
server.bindAsync(`127.0.0.1:${process.env.PORT || 0}`, grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    console.error(err);
    process.exit(1);
  }
  process.stdout.write(`PORT ${port}\n`);
});
process.on("SIGTERM", () => server.forceShutdown());
// A graceful shutdown: GOAWAY to every client, live calls go on until they end.
process.on("SIGUSR2", () => server.tryShutdown(() => process.stdout.write("DRAINED\n")));
