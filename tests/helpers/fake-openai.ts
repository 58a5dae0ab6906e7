/**
 * A local OpenAI-compatible provider for tests, which have no internet: speech to text
 * (`POST /v1/audio/transcriptions`, a multipart WAV upload), streamed chat completions with
 * function tools (`POST /v1/chat/completions`, SSE chunks as OpenAI sends them) and text to
 * speech (`POST /v1/audio/speech`, raw 16-bit little-endian mono PCM at 24 kHz, as OpenAI's
 * `response_format: "pcm"`). It behaves like the real service on the wire, so the official
 * `openai` client can talk to it unchanged, and it records every request so a test can check
 * what the pipeline sent, when, and whether it cancelled it.
 *
 * Answers are scripted per call by functions (`transcribe`, `chat`, `speech`), which may also
 * return a failure: an HTTP error with OpenAI's JSON error body, a stall until the client
 * gives up, or a delay before either. The defaults make a loop testable end to end without a
 * script: a sine of known pitch is "heard" as `tone <Hz> Hz`, the model repeats what it was
 * told, and speech is a 300 Hz tone whose length follows the text.
 */
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionCreateParams, ChatCompletionMessageFunctionToolCall } from "openai/resources/chat/completions";

/** 16-bit PCM, interleaved when `channels` > 1: the uploaded WAV as the fake decoded it. */
export interface WavAudio {
  readonly sampleRateHz: number;
  readonly channels: number;
  readonly pcm: Int16Array;
}

/** One channel of 16-bit PCM: what a transcriber is given (a multi-channel upload's first channel). */
export interface MonoAudio {
  readonly sampleRateHz: number;
  readonly pcm: Int16Array;
}

/** A chat request body as the client sent it (trusted to be what the `openai` package sends). */
export type ChatRequestBody = ChatCompletionCreateParams;

/** A speech request body; a custom voice `{ id }` is recorded as its id. */
export interface SpeechRequestBody {
  readonly model: string;
  readonly input: string;
  readonly voice: string;
  readonly response_format?: string;
  readonly stream_format?: string;
  readonly speed?: number;
  readonly instructions?: string;
}

/** What every recorded request has, whatever its endpoint. */
interface RecordedBase {
  readonly method: string;
  /** The URL path, e.g. `/v1/chat/completions`. */
  readonly path: string;
  /** The body's (or form's) `model`, when it had one. */
  readonly model: string | undefined;
  /** Whether an `Authorization` header came; its value is never kept, so no key can leak into a test's output. */
  readonly hasAuthorization: boolean;
  /** `performance.now()` when the request arrived (before its body was read). */
  readonly startedAt: number;
  /** The client cancelled it (closed the connection) before the response ended. */
  readonly aborted: boolean;
  /** The HTTP status answered; undefined while the fake has not answered (a delay, a stall). */
  readonly status: number | undefined;
  /** `performance.now()` when the response ended (its last byte queued) or was aborted. */
  readonly endedAt: number | undefined;
}

export interface RecordedTranscription extends RecordedBase {
  readonly kind: "transcription";
  /** The form's text fields (`model`, `language`, `prompt`, `response_format`…); the file is in `audio`. */
  readonly body: Readonly<Record<string, string>>;
  readonly fileName: string;
  readonly audio: WavAudio;
}

export interface RecordedChat extends RecordedBase {
  readonly kind: "chat";
  readonly body: ChatRequestBody;
}

export interface RecordedSpeech extends RecordedBase {
  readonly kind: "speech";
  readonly body: SpeechRequestBody;
}

/** An unknown path, or a body the fake could not make sense of (it answered 4xx). */
export interface RecordedOther extends RecordedBase {
  readonly kind: "other";
  /** The parsed JSON or the form's text fields when there were any. */
  readonly body: unknown;
}

export type RecordedRequest = RecordedTranscription | RecordedChat | RecordedSpeech | RecordedOther;

/** An HTTP error answered with OpenAI's body, `{"error":{"message","type","param","code"}}`. */
export interface HttpFailure {
  readonly status: number;
  readonly message?: string;
  /** Default from the status, as OpenAI types it: `invalid_request_error`, `requests`, `server_error`. */
  readonly type?: string;
  readonly code?: string;
}

/** No response at all, until the client gives up. */
export interface Stall {
  readonly stall: true;
}

export type FakeFailure = HttpFailure | Stall;

/** Waits `delayMs` before answering `outcome` (not `then`: an object with a `then` would pass for a promise). */
export interface Delayed<T> {
  readonly delayMs: number;
  readonly outcome: FakeOutcome<T>;
}

/** What a scripting function returns: an answer, a failure, or either after a delay. */
export type FakeOutcome<T> = T | FakeFailure | Delayed<T>;

/** One step of a streamed chat answer. */
export type ChatStep =
  /** One content delta. */
  | { readonly text: string }
  /** A function call, streamed as OpenAI does: name first, then the arguments in two pieces. */
  | { readonly toolCall: { readonly id: string; readonly name: string; readonly arguments: string } }
  /** A pause before the next step. */
  | { readonly delayMs: number }
  /** Nothing more, ever: the stream stays open until the client aborts. */
  | { readonly stall: true };

export type ChatScript = readonly ChatStep[];

/** The PCM a speech request answers with (16-bit mono at 24000 Hz, OpenAI's `pcm`). */
export interface SpeechAudio {
  readonly pcm: Int16Array;
  /** Replaces the fake's `speechFirstByteMs` for this answer. */
  readonly firstByteDelayMs?: number;
  /** Bytes per body chunk, default 4800 (100 ms); may be odd, to split samples as a network may. */
  readonly chunkBytes?: number;
  /** The pause between two chunks. Default 0: one timer turn, about a millisecond, which is
   * enough for each chunk to reach the client as a read of its own (queued back to back, the
   * chunks would arrive as one or two reads). 100 with the default chunks: real time. */
  readonly chunkIntervalMs?: number;
}

/** Service latencies applied to every answer of a kind (on top of any scripted {@link Delayed}). */
export interface FakeDelays {
  /** Before a transcription is answered. */
  readonly transcribeMs?: number;
  /** Before a chat answer's first chunk (a non-streamed answer: before the answer). */
  readonly firstTokenMs?: number;
  /** Before the first byte of speech. */
  readonly speechFirstByteMs?: number;
}

type Scripted<A extends unknown[], T> = (...args: A) => FakeOutcome<T> | Promise<FakeOutcome<T>>;

export interface FakeOpenAiOptions {
  /** Default {@link defaultTranscription}: `tone <Hz> Hz`, or "" for silence. */
  readonly transcribe?: Scripted<[audio: MonoAudio, request: RecordedTranscription], string>;
  /** Default {@link defaultChatScript}: repeats the user, or reports the tool result. */
  readonly chat?: Scripted<[body: ChatRequestBody, request: RecordedChat], ChatScript>;
  /** Default {@link defaultSpeech}: a 300 Hz tone, 40 ms a character. */
  readonly speech?: Scripted<[body: SpeechRequestBody, request: RecordedSpeech], SpeechAudio>;
  readonly delays?: FakeDelays;
  /** When set, a request without `Authorization: Bearer <requireKey>` gets a 401; by default
   * any key or none is accepted, as by a local server. */
  readonly requireKey?: string;
}

export interface FakeOpenAi extends AsyncDisposable {
  /** The base URL for the client, `http://127.0.0.1:<port>/v1`. */
  readonly url: string;
  /** Every request, in arrival order, recorded once its body was read. */
  readonly requests: readonly RecordedRequest[];
  /**
   * Resolves with the first request matching `predicate`, already recorded or still to come.
   * The predicate is checked again whenever a request arrives, ends or is aborted, so
   * `waitFor((r) => r.aborted)` works. Rejects if the fake stops first.
   */
  waitFor<R extends RecordedRequest>(predicate: (r: RecordedRequest) => r is R): Promise<R>;
  waitFor(predicate: (r: RecordedRequest) => boolean): Promise<RecordedRequest>;
  /** Changes the given latencies for the requests to come; the others stay. */
  setDelays(delays: FakeDelays): void;
  /** Closes the server and every open request. Idempotent. */
  stop(): Promise<void>;
}

/** OpenAI's sample rate for `pcm` speech. */
export const SPEECH_SAMPLE_RATE_HZ = 24_000;
const SPEECH_CHUNK_BYTES = 4800;
/** Below this a 10 ms frame counts as silence. */
const SILENCE_DBFS = -50;

/** A sine as 16-bit PCM; `dbfs` is its peak level (default -20 dBFS, 3277). */
export function sinePcm(o: { hz: number; ms: number; sampleRateHz?: number; dbfs?: number }): Int16Array {
  const rate = o.sampleRateHz ?? SPEECH_SAMPLE_RATE_HZ;
  const amplitude = 32767 * 10 ** ((o.dbfs ?? -20) / 20);
  const pcm = new Int16Array(Math.round((rate * o.ms) / 1000));
  for (let i = 0; i < pcm.length; i++) pcm[i] = Math.round(amplitude * Math.sin((2 * Math.PI * o.hz * i) / rate));
  return pcm;
}

/**
 * The dominant frequency of `pcm`, by zero crossings over its non-silent part (10 ms frames at
 * or above -50 dBFS), or undefined when all of it is silence. Crossings are counted with a
 * hysteresis (a quarter of the part's RMS), so codec noise around zero does not add any, and
 * the frequency is measured between the first and last crossing of each non-silent run, so a
 * run's edges do not bias it.
 */
export function estimateToneHz(pcm: Int16Array, sampleRateHz: number): number | undefined {
  const frame = Math.max(1, Math.round(sampleRateHz / 100));
  const loud: [start: number, end: number][] = [];
  for (let start = 0; start < pcm.length; start += frame) {
    const end = Math.min(pcm.length, start + frame);
    let energy = 0;
    for (let i = start; i < end; i++) energy += pcm[i]! * pcm[i]!;
    const rms = Math.sqrt(energy / (end - start));
    if (rms === 0 || 20 * Math.log10(rms / 32768) < SILENCE_DBFS) continue;
    const last = loud.at(-1);
    if (last && last[1] === start) last[1] = end;
    else loud.push([start, end]);
  }
  if (loud.length === 0) return undefined;
  let halfPeriods = 0;
  let samples = 0;
  for (const [start, end] of loud) {
    let energy = 0;
    for (let i = start; i < end; i++) energy += pcm[i]! * pcm[i]!;
    const threshold = Math.sqrt(energy / (end - start)) / 4;
    let sign = 0;
    let first = -1;
    let last = -1;
    let count = 0;
    for (let i = start; i < end; i++) {
      const s = pcm[i]!;
      const now = s > threshold ? 1 : s < -threshold ? -1 : sign;
      if (now !== sign && sign !== 0) {
        if (first < 0) first = i;
        else count++;
        last = i;
      }
      sign = now;
    }
    halfPeriods += count;
    samples += last - first;
  }
  return samples > 0 ? (halfPeriods * sampleRateHz) / (2 * samples) : 0;
}

/** `tone <f> Hz` with f the {@link estimateToneHz} rounded to the nearest 50 Hz (halves up:
 * 425 → 450), or "" for silence. A 440 Hz sine is "tone 450 Hz". */
export function defaultTranscription(audio: MonoAudio): string {
  const hz = estimateToneHz(audio.pcm, audio.sampleRateHz);
  return hz === undefined ? "" : `tone ${Math.round(hz / 50) * 50} Hz`;
}

/** The text of a message's content: a string, or the text parts of an array. */
function textOf(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content
    .map((part: unknown) => (typeof part === "object" && part !== null && "text" in part && typeof part.text === "string" ? part.text : ""))
    .join("");
}

/** Splits `text` into content deltas of `size` characters, as a model streams tokens. */
export function textSteps(text: string, size = 4): ChatStep[] {
  const chars = Array.from(text);
  const steps: ChatStep[] = [];
  for (let i = 0; i < chars.length; i += size) steps.push({ text: chars.slice(i, i + size).join("") });
  return steps;
}

/**
 * When the last message is a tool result: `tool said: <its content>`; else `You said: <the last
 * user message's text>. That is all.`, in deltas of 4 characters.
 */
export function defaultChatScript(body: ChatRequestBody): ChatScript {
  const last = body.messages.at(-1);
  if (last?.role === "tool") return textSteps(`tool said: ${textOf(last.content)}`);
  const user = body.messages.findLast((m) => m.role === "user");
  return textSteps(`You said: ${textOf(user?.content)}. That is all.`);
}

/** A 300 Hz tone at -20 dBFS peak, 24000 Hz, 40 ms per character of input (200 ms to 4 s). */
export function defaultSpeech(body: SpeechRequestBody): SpeechAudio {
  const ms = Math.min(4000, Math.max(200, 40 * Array.from(body.input).length));
  return { pcm: sinePcm({ hz: 300, ms, sampleRateHz: SPEECH_SAMPLE_RATE_HZ, dbfs: -20 }) };
}

/** Decodes a 16-bit PCM WAV (RIFF, `fmt `, `data`); throws on anything else. */
function parseWav(bytes: Uint8Array): WavAudio {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (at: number) => String.fromCharCode(...bytes.subarray(at, at + 4));
  if (bytes.length < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") throw new Error("not a RIFF/WAVE file");
  let format: { channels: number; sampleRateHz: number; bits: number; code: number } | undefined;
  for (let at = 12; at + 8 <= bytes.length; ) {
    const id = tag(at);
    const size = view.getUint32(at + 4, true);
    const body = at + 8;
    if (id === "fmt ") {
      if (size < 16) throw new Error("fmt chunk too short");
      let code = view.getUint16(body, true);
      // WAVE_FORMAT_EXTENSIBLE: the real format is the sub-format GUID's first two bytes.
      if (code === 0xfffe && size >= 40) code = view.getUint16(body + 24, true);
      format = { code, channels: view.getUint16(body + 2, true), sampleRateHz: view.getUint32(body + 4, true), bits: view.getUint16(body + 14, true) };
    } else if (id === "data") {
      if (!format) throw new Error("data chunk before fmt chunk");
      if (format.code !== 1 || format.bits !== 16) throw new Error(`only 16-bit PCM is understood (format ${format.code}, ${format.bits} bits)`);
      if (format.channels < 1 || format.sampleRateHz < 1) throw new Error("no channels or no sample rate");
      // Streaming writers leave the size at 0 or 0xffffffff: the data then runs to the end.
      const end = size === 0 || body + size > bytes.length ? bytes.length : body + size;
      const pcm = new Int16Array(Math.floor((end - body) / 2 / format.channels) * format.channels);
      for (let i = 0; i < pcm.length; i++) pcm[i] = view.getInt16(body + 2 * i, true);
      return { sampleRateHz: format.sampleRateHz, channels: format.channels, pcm };
    }
    at = body + size + (size % 2); // chunks are padded to an even size
  }
  throw new Error("no data chunk");
}

function firstChannel(audio: WavAudio): MonoAudio {
  if (audio.channels === 1) return { sampleRateHz: audio.sampleRateHz, pcm: audio.pcm };
  const pcm = new Int16Array(audio.pcm.length / audio.channels);
  for (let i = 0; i < pcm.length; i++) pcm[i] = audio.pcm[i * audio.channels]!;
  return { sampleRateHz: audio.sampleRateHz, pcm };
}

/** Thrown where the fake waits, when the client left (or the fake stopped): there is no one to answer. */
class Gone extends Error {}

/** Waits `ms`; 0 returns at once unless `turn`, which waits for a timer turn all the same. */
function pause(ms: number, signal: AbortSignal, turn = false): Promise<void> {
  if (signal.aborted) return Promise.reject(new Gone());
  if (ms <= 0 && !turn) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(new Gone());
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function stalled(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(new Gone());
    else signal.addEventListener("abort", () => reject(new Gone()), { once: true });
  });
}

/** Follows delays and stalls down to an answer or an HTTP failure. */
async function settle<T>(outcome: FakeOutcome<T>, isAnswer: (o: FakeOutcome<T>) => o is T, signal: AbortSignal): Promise<T | HttpFailure> {
  for (let o = outcome; ; ) {
    if (isAnswer(o)) return o;
    if (typeof o !== "object" || o === null) throw new TypeError(`fake-openai: a script returned ${String(o)}`);
    if ("stall" in o) return stalled(signal);
    if ("status" in o) return o;
    if ("delayMs" in o && "outcome" in o) {
      await pause(o.delayMs, signal);
      o = o.outcome;
      continue;
    }
    throw new TypeError(`fake-openai: a script returned an unknown outcome ${JSON.stringify(o)}`);
  }
}

const isFailure = (o: unknown): o is HttpFailure => typeof o === "object" && o !== null && !Array.isArray(o) && "status" in o && !("pcm" in o);

/** The error type OpenAI answers a status with. */
function errorType(status: number): string {
  if (status === 429) return "requests";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

/** The mutable side of a record: what the fake updates as the exchange goes on. */
interface LiveFields {
  aborted: boolean;
  status: number | undefined;
  endedAt: number | undefined;
}

/** One request in flight: its record, and the signal that ends every wait for it. */
class Exchange {
  readonly #ac = new AbortController();
  readonly signal = this.#ac.signal;
  readonly #live: Set<Exchange>;
  readonly #changed: () => void;
  #record: LiveFields | undefined;
  #ended = false;
  #clientLeft = false;

  constructor(req: Request, live: Set<Exchange>, changed: () => void) {
    this.#live = live;
    this.#changed = changed;
    live.add(this);
    // Bun aborts a request's signal when its client disconnects, whether the handler is still
    // waiting (a delay, a stall) or the body is streaming.
    if (req.signal.aborted) this.clientGone();
    else req.signal.addEventListener("abort", () => this.clientGone(), { once: true });
  }

  /** The record to keep up to date; the client may have left while its body was being read. */
  track(record: LiveFields): void {
    if (this.#clientLeft) {
      record.aborted = true;
      record.endedAt = performance.now();
    }
    this.#record = record;
  }

  /** The client left before the response ended. */
  clientGone(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#clientLeft = true;
    if (this.#record) {
      this.#record.aborted = true;
      this.#record.endedAt = performance.now();
    }
    this.#ac.abort();
    this.#live.delete(this);
    this.#changed();
  }

  /** The fake stops: every wait ends, but the client did not abort anything. */
  shutDown(): void {
    this.#ended = true;
    this.#ac.abort();
  }

  answered(status: number): void {
    if (this.#record) this.#record.status = status;
    this.#changed();
  }

  /** The response's last byte is queued: a disconnect from now on is no abort. */
  ended(): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#record) this.#record.endedAt = performance.now();
    this.#live.delete(this);
    this.#changed();
  }
}

/** Starts the fake on a free loopback port. */
export async function startFakeOpenAi(options: FakeOpenAiOptions = {}): Promise<FakeOpenAi> {
  const requests: RecordedRequest[] = [];
  const live = new Set<Exchange>();
  const waiters = new Set<{ predicate: (r: RecordedRequest) => boolean; resolve: (r: RecordedRequest) => void; reject: (e: unknown) => void }>();
  let delays: FakeDelays = { ...options.delays };
  let sequence = 0;
  let stopped = false;

  const changed = () => {
    for (const w of waiters) {
      try {
        const hit = requests.find(w.predicate);
        if (hit === undefined) continue;
        waiters.delete(w);
        w.resolve(hit);
      } catch (err) {
        waiters.delete(w);
        w.reject(err);
      }
    }
  };

  const encoder = new TextEncoder();
  const errorResponse = (ex: Exchange, f: HttpFailure, headers: Record<string, string>) => {
    ex.answered(f.status);
    ex.ended();
    const error = { message: f.message ?? `fake-openai: HTTP ${f.status}`, type: f.type ?? errorType(f.status), param: null, code: f.code ?? null };
    return Response.json({ error }, { status: f.status, headers });
  };

  const handle = async (req: Request, ex: Exchange, n: number): Promise<Response> => {
    const startedAt = performance.now();
    const url = new URL(req.url);
    const headers = { "x-request-id": `req_fake${n}` };
    const fail = (f: HttpFailure) => errorResponse(ex, f, headers);
    const base = {
      method: req.method,
      path: url.pathname,
      hasAuthorization: req.headers.has("authorization"),
      startedAt,
      aborted: false,
      status: undefined,
      endedAt: undefined,
    };
    const record = <R extends RecordedRequest>(r: R): R => {
      ex.track(r);
      requests.push(r);
      changed();
      return r;
    };
    const recordOther = (body: unknown) => {
      const model = typeof body === "object" && body !== null && "model" in body && typeof body.model === "string" ? body.model : undefined;
      return record<RecordedOther>({ ...base, kind: "other", model, body });
    };
    const authorized = () =>
      options.requireKey === undefined || req.headers.get("authorization") === `Bearer ${options.requireKey}`
        ? undefined
        : fail({ status: 401, message: "Incorrect API key provided.", code: "invalid_api_key" });
    const readJson = async (): Promise<{ ok: true; body: Record<string, unknown> } | { ok: false; response: Response }> => {
      let body: unknown;
      try {
        body = await req.json();
      } catch {
        recordOther(undefined);
        return { ok: false, response: fail({ status: 400, message: "We could not parse the JSON body of your request." }) };
      }
      if (typeof body === "object" && body !== null && !Array.isArray(body)) return { ok: true, body: body as Record<string, unknown> };
      recordOther(body);
      return { ok: false, response: fail({ status: 400, message: "The request body must be a JSON object." }) };
    };

    const route = `${req.method} ${url.pathname}`;
    if (route === "POST /v1/audio/transcriptions") {
      const form = await req.formData().catch(() => undefined);
      if (form === undefined) {
        recordOther(undefined);
        return fail({ status: 400, message: "fake-openai: expected a multipart/form-data body" });
      }
      const fields: Record<string, string> = {};
      for (const [k, v] of form) if (typeof v === "string") fields[k] = v;
      const file = form.get("file");
      let audio: WavAudio;
      try {
        if (typeof file === "string" || file === null) throw new Error("no file");
        audio = parseWav(new Uint8Array(await file.arrayBuffer()));
      } catch (err) {
        recordOther(fields);
        const denied = authorized();
        if (denied) return denied;
        return fail({
          status: 400,
          message: `Invalid file format. fake-openai reads 16-bit PCM WAV only: ${err instanceof Error ? err.message : String(err)}`,
        });
      }
      const fileName = file instanceof File ? file.name : "";
      const rec = record<RecordedTranscription>({ ...base, kind: "transcription", model: fields.model, body: fields, fileName, audio });
      const denied = authorized();
      if (denied) return denied;
      if (!fields.model) return fail({ status: 400, message: "you must provide a model parameter" });
      const format = fields.response_format ?? "json";
      if (!["json", "text", "verbose_json"].includes(format))
        return fail({ status: 400, message: `fake-openai: response_format "${format}" is not supported` });
      if (fields.stream === "true") return fail({ status: 400, message: "fake-openai: streamed transcription is not supported" });
      const mono = firstChannel(audio);
      const outcome = await (options.transcribe ?? defaultTranscription)(mono, rec);
      const text = await settle(outcome, (o): o is string => typeof o === "string", ex.signal);
      await pause(delays.transcribeMs ?? 0, ex.signal);
      if (typeof text !== "string") return fail(text);
      ex.answered(200);
      ex.ended();
      if (format === "text") return new Response(`${text}\n`, { headers: { ...headers, "content-type": "text/plain; charset=utf-8" } });
      const seconds = mono.pcm.length / mono.sampleRateHz;
      if (format === "verbose_json")
        return Response.json({ task: "transcribe", language: fields.language ?? "english", duration: seconds, text, segments: [] }, { headers });
      return Response.json({ text, usage: { type: "duration", seconds: Math.ceil(seconds) } }, { headers });
    }

    if (route === "POST /v1/chat/completions") {
      const parsed = await readJson();
      if (!parsed.ok) return parsed.response;
      const raw = parsed.body;
      if (typeof raw.model !== "string" || !Array.isArray(raw.messages) || raw.messages.length === 0) {
        recordOther(raw);
        const denied = authorized();
        if (denied) return denied;
        return fail({ status: 400, message: typeof raw.model !== "string" ? "you must provide a model parameter" : "[] is too short - 'messages'" });
      }
      const body = raw as unknown as ChatRequestBody;
      const rec = record<RecordedChat>({ ...base, kind: "chat", model: body.model, body });
      const denied = authorized();
      if (denied) return denied;
      const outcome = await (options.chat ?? defaultChatScript)(body, rec);
      const script = await settle(outcome, (o): o is ChatScript => Array.isArray(o), ex.signal);
      if (isFailure(script)) {
        await pause(delays.firstTokenMs ?? 0, ex.signal);
        return fail(script);
      }
      return body.stream === true ? streamChat(ex, body, script, n, headers) : await completeChat(ex, body, script, n, headers);
    }

    if (route === "POST /v1/audio/speech") {
      const parsed = await readJson();
      if (!parsed.ok) return parsed.response;
      const raw = parsed.body;
      const voice =
        typeof raw.voice === "string" ? raw.voice : typeof raw.voice === "object" && raw.voice !== null && "id" in raw.voice ? String(raw.voice.id) : undefined;
      if (typeof raw.model !== "string" || typeof raw.input !== "string" || voice === undefined) {
        recordOther(raw);
        const denied = authorized();
        if (denied) return denied;
        return fail({ status: 400, message: "fake-openai: model, input and voice are required" });
      }
      const body = { ...raw, voice } as unknown as SpeechRequestBody;
      const rec = record<RecordedSpeech>({ ...base, kind: "speech", model: body.model, body });
      const denied = authorized();
      if (denied) return denied;
      if (body.input.length === 0 || body.input.length > 4096) return fail({ status: 400, message: "input must be 1 to 4096 characters long" });
      // OpenAI's default is mp3: a client that forgets to ask for pcm must find out here.
      const format = body.response_format ?? "mp3";
      if (format !== "pcm") return fail({ status: 400, message: `fake-openai speaks only response_format "pcm", not "${format}"`, code: "unsupported_value" });
      if (body.stream_format === "sse") return fail({ status: 400, message: 'fake-openai: stream_format "sse" is not supported', code: "unsupported_value" });
      const outcome = await (options.speech ?? defaultSpeech)(body, rec);
      const audio = await settle(outcome, (o): o is SpeechAudio => typeof o === "object" && o !== null && "pcm" in o, ex.signal);
      if (isFailure(audio)) {
        await pause(delays.speechFirstByteMs ?? 0, ex.signal);
        return fail(audio);
      }
      return streamSpeech(ex, audio, delays.speechFirstByteMs ?? 0, headers);
    }

    recordOther(undefined);
    return fail({ status: 404, message: `Invalid URL (${req.method} ${url.pathname})` });
  };

  /** Chunks carry what OpenAI's do, so the client's accumulation sees the real shapes. */
  const chunkOf = (n: number, body: ChatRequestBody, delta: ChatCompletionChunk.Choice.Delta, finish: ChatCompletionChunk.Choice["finish_reason"] = null) => {
    const chunk: ChatCompletionChunk = {
      id: `chatcmpl-fake${n}`,
      object: "chat.completion.chunk",
      created: Math.floor(Date.now() / 1000),
      model: body.model,
      system_fingerprint: "fp_fake",
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    };
    return body.stream_options?.include_usage ? { ...chunk, usage: null } : chunk;
  };

  const usageOf = (body: ChatRequestBody, completionChars: number) => {
    // About four characters a token, as OpenAI's tokenizers average in English.
    const prompt = Math.ceil(JSON.stringify(body.messages).length / 4);
    const completion = Math.ceil(completionChars / 4);
    return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
  };

  const streamChat = (ex: Exchange, body: ChatRequestBody, script: ChatScript, n: number, headers: Record<string, string>): Response => {
    const send = (controller: ReadableStreamDefaultController<Uint8Array>, data: object | "[DONE]") => {
      if (ex.signal.aborted) throw new Gone();
      controller.enqueue(encoder.encode(`data: ${data === "[DONE]" ? data : JSON.stringify(data)}\n\n`));
    };
    const produce = async (controller: ReadableStreamDefaultController<Uint8Array>) => {
      await pause(delays.firstTokenMs ?? 0, ex.signal);
      let roleSent = false;
      let tools = 0;
      let chars = 0;
      for (const step of script) {
        if ("delayMs" in step) await pause(step.delayMs, ex.signal);
        else if ("stall" in step) await stalled(ex.signal);
        else if ("text" in step) {
          // OpenAI opens a text answer with a role-only delta, its content "".
          if (!roleSent) send(controller, chunkOf(n, body, { role: "assistant", content: "", refusal: null }));
          roleSent = true;
          send(controller, chunkOf(n, body, { content: step.text }));
          chars += step.text.length;
        } else {
          const { id, name, arguments: args } = step.toolCall;
          const index = tools++;
          // ...but puts the role in a tool call's first delta, with content null.
          const opening = roleSent ? {} : { role: "assistant" as const, content: null, refusal: null };
          roleSent = true;
          send(controller, chunkOf(n, body, { ...opening, tool_calls: [{ index, id, type: "function", function: { name, arguments: "" } }] }));
          const half = Math.ceil(args.length / 2);
          for (const piece of [args.slice(0, half), args.slice(half)])
            send(controller, chunkOf(n, body, { tool_calls: [{ index, function: { arguments: piece } }] }));
          chars += name.length + args.length;
        }
      }
      if (!roleSent) send(controller, chunkOf(n, body, { role: "assistant", content: "", refusal: null }));
      send(controller, chunkOf(n, body, {}, tools > 0 ? "tool_calls" : "stop"));
      if (body.stream_options?.include_usage) {
        send(controller, { ...chunkOf(n, body, {}), choices: [], usage: usageOf(body, chars) });
      }
      send(controller, "[DONE]");
      ex.ended();
      controller.close();
    };
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        produce(controller).catch((err: unknown) => {
          if (err instanceof Gone) return; // the client left: no one to tell
          console.error("fake-openai: chat stream failed", err);
          controller.error(err);
        });
      },
      cancel: () => ex.clientGone(),
    });
    ex.answered(200);
    return new Response(stream, { headers: { ...headers, "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" } });
  };

  const completeChat = async (ex: Exchange, body: ChatRequestBody, script: ChatScript, n: number, headers: Record<string, string>): Promise<Response> => {
    await pause(delays.firstTokenMs ?? 0, ex.signal);
    let text = "";
    const calls: ChatCompletionMessageFunctionToolCall[] = [];
    for (const step of script) {
      if ("delayMs" in step) await pause(step.delayMs, ex.signal);
      else if ("stall" in step) await stalled(ex.signal);
      else if ("text" in step) text += step.text;
      else calls.push({ id: step.toolCall.id, type: "function", function: { name: step.toolCall.name, arguments: step.toolCall.arguments } });
    }
    const completion: ChatCompletion = {
      id: `chatcmpl-fake${n}`,
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: body.model,
      system_fingerprint: "fp_fake",
      choices: [
        {
          index: 0,
          message: {
            role: "assistant",
            content: calls.length > 0 && text === "" ? null : text,
            refusal: null,
            annotations: [],
            ...(calls.length > 0 ? { tool_calls: calls } : {}),
          },
          logprobs: null,
          finish_reason: calls.length > 0 ? "tool_calls" : "stop",
        },
      ],
      usage: usageOf(body, text.length + calls.reduce((sum, c) => sum + c.function.name.length + c.function.arguments.length, 0)),
    };
    ex.answered(200);
    ex.ended();
    return Response.json(completion, { headers });
  };

  const streamSpeech = (ex: Exchange, audio: SpeechAudio, defaultDelayMs: number, headers: Record<string, string>): Response => {
    const bytes = new Uint8Array(audio.pcm.length * 2);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < audio.pcm.length; i++) view.setInt16(2 * i, audio.pcm[i]!, true);
    const chunkBytes = Math.max(1, audio.chunkBytes ?? SPEECH_CHUNK_BYTES);
    let offset = 0;
    // Pulled one chunk at a time (no queue ahead) with a pause before each, so the client
    // receives the audio in pieces, the way a synthesiser streams it, rather than in one write.
    const stream = new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          try {
            if (offset === 0) await pause(audio.firstByteDelayMs ?? defaultDelayMs, ex.signal);
            else await pause(audio.chunkIntervalMs ?? 0, ex.signal, true);
          } catch (err) {
            if (err instanceof Gone) return;
            throw err;
          }
          if (ex.signal.aborted) return;
          if (offset >= bytes.length) {
            ex.ended();
            controller.close();
            return;
          }
          controller.enqueue(bytes.slice(offset, offset + chunkBytes));
          offset += chunkBytes;
        },
        cancel: () => ex.clientGone(),
      },
      { highWaterMark: 0 },
    );
    ex.answered(200);
    return new Response(stream, { headers: { ...headers, "content-type": "audio/pcm" } });
  };

  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    // Stalls last until the client gives up, however long that is: Bun must not cut them at its 10 s default.
    idleTimeout: 0,
    async fetch(req) {
      const n = ++sequence;
      const ex = new Exchange(req, live, changed);
      try {
        return await handle(req, ex, n);
      } catch (err) {
        if (err instanceof Gone) return new Response(null, { status: 499 }); // the client left: never read
        ex.ended();
        throw err;
      }
    },
    error(err) {
      // A bug in a script or in the fake: say so in the response, where the failing test looks.
      return Response.json({ error: { message: `fake-openai: ${err.message}`, type: "server_error", param: null, code: null } }, { status: 500 });
    },
  });

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    for (const ex of live) ex.shutDown();
    live.clear();
    for (const w of waiters) w.reject(new Error("fake-openai stopped before a matching request"));
    waiters.clear();
    await server.stop(true);
  };

  return {
    url: `http://127.0.0.1:${server.port}/v1`,
    requests,
    waitFor(predicate: (r: RecordedRequest) => boolean): Promise<RecordedRequest> {
      const hit = requests.find(predicate);
      if (hit !== undefined) return Promise.resolve(hit);
      if (stopped) return Promise.reject(new Error("fake-openai is stopped"));
      return new Promise((resolve, reject) => waiters.add({ predicate, resolve, reject }));
    },
    setDelays(d: FakeDelays) {
      delays = { ...delays, ...d };
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
