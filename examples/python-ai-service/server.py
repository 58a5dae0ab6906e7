#!/usr/bin/env python3
"""A xiaozhi AI service that is not ours: Python and grpcio, sharing no code with the gateway.

It speaks proto/xiaozhi/ai/v1/ai.proto (Relay, Converse, Ask) the way any AI service must:
answers every Heartbeat, ends streams with OK only when the gateway half-closed (or after
Close), and ends them with UNAVAILABLE when it shuts down so the gateway resumes the
sessions elsewhere. As an "AI" it only echoes, like tests/interop/grpc-js-echo-server.cjs,
so a test can tell from the answers which process served a session.

    /usr/bin/python3 examples/python-ai-service/server.py --port 50051

Prints `PORT <n>` on stdout once listening.
"""
import argparse
import atexit
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from concurrent import futures

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
log = logging.getLogger("python-ai-service")

# Filled by load_stubs(): the messages (pb) and the service glue (pb_grpc).
pb = None
pb_grpc = None


def load_stubs(proto_root):
    """Generates the Python stubs from proto/ into a temp dir and imports them. Generating at
    start-up (instead of committing *_pb2.py) keeps the example in step with the contract."""
    global pb, pb_grpc
    out = tempfile.mkdtemp(prefix="xiaozhi-ai-stubs-")
    atexit.register(shutil.rmtree, out, True)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_root}", f"--python_out={out}",
         f"--grpc_python_out={out}", "xiaozhi/ai/v1/ai.proto"],
        check=True,
    )
    sys.path.insert(0, out)
    from xiaozhi.ai.v1 import ai_pb2, ai_pb2_grpc  # noqa: E402 (generated just above)
    pb, pb_grpc = ai_pb2, ai_pb2_grpc


def speak(text):
    """The Tts triple the device shows as one spoken sentence."""
    return [
        pb.ServerEvent(tts=pb.Tts(state=pb.TTS_STATE_START)),
        pb.ServerEvent(tts=pb.Tts(state=pb.TTS_STATE_SENTENCE_START, text=f"python heard: {text}")),
        pb.ServerEvent(tts=pb.Tts(state=pb.TTS_STATE_STOP)),
    ]


def answer(ev):
    """The ServerEvents answering one DeviceEvent, tagged with its session_key (0 on Converse)."""
    kind = ev.WhichOneof("event")
    out = []
    if kind == "heartbeat":
        # Same sent_at_ms (and session_key): the gateway matches the answer to its Heartbeat.
        out = [pb.ServerEvent(heartbeat=pb.Heartbeat(sent_at_ms=ev.heartbeat.sent_at_ms))]
    elif kind == "hello":
        text = f"resumed on {os.getpid()}" if ev.hello.resumed else f"hi from {os.getpid()}"
        out = [pb.ServerEvent(llm=pb.Llm(text=text, emotion="happy"))]
    elif kind == "audio":
        out = [pb.ServerEvent(audio=pb.Audio(opus=ev.audio.opus, timestamp_ms=ev.audio.timestamp_ms))]
    elif kind == "listen" and ev.listen.state == pb.LISTEN_STATE_DETECT:
        out = [pb.ServerEvent(stt=pb.Stt(text=ev.listen.text))] + speak(ev.listen.text)
    elif kind == "chat":
        out = speak(ev.chat.text)
        if ev.chat.text == "bye":
            # How an AI service ends a session: Close (then, on Converse, end the stream OK).
            out.append(pb.ServerEvent(close=pb.Close(reason="bye")))
    for e in out:
        e.session_key = ev.session_key
    return out


# What a stream's reader thread puts in its outbox besides answers.
HALF_CLOSED = object()  # the gateway half-closed (or cancelled): end the stream OK
SHUTDOWN = object()  # this server is stopping: end the stream UNAVAILABLE


class OpenStreams:
    """Every open stream's outbox, so that shutdown can end each with UNAVAILABLE."""

    def __init__(self):
        self.lock = threading.Condition()
        self.outboxes = set()
        self.stopping = False

    def add(self, outbox):
        with self.lock:
            if self.stopping:
                return False
            self.outboxes.add(outbox)
            return True

    def remove(self, outbox):
        with self.lock:
            self.outboxes.discard(outbox)
            self.lock.notify_all()

    def stop_all(self, timeout):
        """Ends every stream UNAVAILABLE and waits (at most `timeout` s) until each has sent it."""
        with self.lock:
            self.stopping = True
            boxes = list(self.outboxes)
        for box in boxes:
            box.put(SHUTDOWN)
        with self.lock:
            self.lock.wait_for(lambda: not self.outboxes, timeout)


def serve_stream(requests, context, streams, handle):
    """Runs one bidi stream. `handle(request)` returns the responses to send for a request.

    grpcio runs this generator on a thread of the server's pool and sends what it yields. The
    requests are read on a second thread: grpcio's request iterator blocks and cannot be
    woken, so a generator that read them itself could not end its stream at shutdown until the
    gateway happened to send something. Here it waits on its outbox, which shutdown can reach.
    """
    outbox = queue.SimpleQueue()
    if not streams.add(outbox):
        context.abort(grpc.StatusCode.UNAVAILABLE, "shutting down")
    # Forgotten when the call is over (its status written), not when this generator returns:
    # shutdown waits for that before it sends GOAWAY (see main).
    if not context.add_callback(lambda: streams.remove(outbox)):
        streams.remove(outbox)

    def read():
        try:
            for req in requests:
                for res in handle(req):
                    outbox.put(res)
        except Exception as err:  # the gateway cancelled, or the connection is gone
            log.debug("stream read ended: %s", err)
        outbox.put(HALF_CLOSED)

    threading.Thread(target=read, name="stream-reader", daemon=True).start()
    while True:
        item = outbox.get()
        if item is HALF_CLOSED:
            return  # OK: the gateway is done with this stream
        if item is SHUTDOWN:
            # Not OK (the gateway would take it for the end of the session, or a rotation):
            # UNAVAILABLE tells it to resume the sessions on another AI service.
            context.abort(grpc.StatusCode.UNAVAILABLE, "shutting down")
        yield item
        if isinstance(item, pb.ServerEvent) and item.WhichOneof("event") == "close":
            return  # Converse: Close then end OK ends the session from our side


class AiService:
    """The servicer; grpcio calls Converse/Relay/Ask by the method names of the proto."""

    def __init__(self, streams):
        self.streams = streams

    def Converse(self, requests, context):
        # One stream per device session (first event Hello), or a probe (first event
        # Heartbeat). Both are served alike: answer each event, end OK when the gateway does.
        return serve_stream(requests, context, self.streams, answer)

    def Relay(self, requests, context):
        sessions = {}  # session_key -> Hello, for this stream only (keys are per stream)

        def handle(req):
            events = []
            for ev in req.events:
                kind = ev.WhichOneof("event")
                if kind == "hello":
                    sessions[ev.session_key] = ev.hello
                elif kind == "end":
                    sessions.pop(ev.session_key, None)
                elif kind != "heartbeat" and ev.session_key not in sessions:
                    continue  # an event of a session we closed, crossing our Close on the wire
                out = answer(ev)
                if any(e.WhichOneof("event") == "close" for e in out):
                    sessions.pop(ev.session_key, None)
                events.extend(out)
            return [pb.RelayResponse(events=events)] if events else []

        # Never end a Relay stream OK on our own: that means "rotate" to the gateway.
        return serve_stream(requests, context, self.streams, handle)

    def Ask(self, request, context):
        # Streamed in pieces, as a real LLM answer would be.
        yield pb.AskResponse(text="python:")
        for word in request.text.split(" "):
            yield pb.AskResponse(text=f" {word}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "50051")), help="0: any free port")
    p.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    p.add_argument("--max-streams", type=int, default=int(os.environ.get("MAX_STREAMS", "256")),
                   help="streams served at once (threads of the pool)")
    p.add_argument("--gateway-connections", type=int, default=int(os.environ.get("GATEWAY_CONNECTIONS", "10")),
                   help="HTTP/2 connections the gateway(s) open (the gateway's GRPC_MAX_CONNECTIONS)")
    p.add_argument("--proto", default=os.path.join(HERE, "..", "..", "proto"), help="the proto/ directory")
    p.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    args = p.parse_args()
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s python-ai-service[%(process)d] %(levelname)s %(message)s")
    load_stubs(os.path.abspath(args.proto))
    # Block SIGTERM/SIGINT before any thread exists (threads inherit the mask) and take them
    # with sigwait below: a handler's Event.wait() in the main thread is not woken when the
    # kernel delivers the signal to one of grpcio's threads, so a SIGTERM could go unnoticed.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})

    # grpcio's sync server serves each streaming call on one thread of its pool for as long
    # as the stream lives: a call past the pool's size would wait for a thread, i.e. hang
    # (and a Converse stream is a whole device session). So:
    # - the pool holds --max-streams calls; maximum_concurrent_rpcs refuses any more at once
    #   with RESOURCE_EXHAUSTED (the gateway retries) instead of letting them hang;
    # - each connection advertises its share as SETTINGS_MAX_CONCURRENT_STREAMS: the gateway
    #   reads it and queues its sessions past the limit rather than opening streams that
    #   would never be served. Converse needs one stream per device plus a probe per
    #   connection now and then; Relay one stream per connection plus probes.
    per_connection = max(2, args.max_streams // max(1, args.gateway_connections))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.max_streams, thread_name_prefix="rpc"),
        options=[("grpc.max_concurrent_streams", per_connection)],
        maximum_concurrent_rpcs=args.max_streams,
    )
    streams = OpenStreams()
    pb_grpc.add_AiServiceServicer_to_server(AiService(streams), server)
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    if port == 0:
        sys.exit(f"cannot listen on {args.host}:{args.port}")
    server.start()
    log.info("listening on %s:%d (%d streams, %d per connection)", args.host, port, args.max_streams, per_connection)
    print(f"PORT {port}", flush=True)  # the line a supervisor (or test) waits for

    sig = signal.sigwait({signal.SIGTERM, signal.SIGINT})
    log.info("%s: shutting down", signal.Signals(sig).name)
    # End the open streams UNAVAILABLE and wait until each status is written, then stop: GOAWAY
    # and no new calls (a stream opened meanwhile is refused UNAVAILABLE by OpenStreams.add).
    # Not server.stop() alone: its cancellation reached the gateway as RST_STREAM CANCEL. Nor
    # a GOAWAY sent while a status is still on its way: the gateway's HTTP/2 stack answers it
    # with a GOAWAY of its own, and grpcio then cancels every stream not yet ended (measured:
    # one run in 30 lost a status so). The grace only bounds a handler that fails to return.
    streams.stop_all(timeout=5)
    server.stop(grace=5).wait()
    log.info("stopped")


if __name__ == "__main__":
    main()
