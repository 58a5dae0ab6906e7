import type { Subprocess } from "bun";
import { describeError } from "../errors";
import type { Logger } from "../log";

/** The environment a worker is started with: its number, the count, and the ports it shares. */
export const WorkerEnv = {
  index: "XIAOZHI_WORKER",
  count: "XIAOZHI_WORKERS",
  port: "XIAOZHI_WORKER_PORT",
  mqttPort: "XIAOZHI_WORKER_MQTT_PORT",
  mqttTlsPort: "XIAOZHI_WORKER_MQTT_TLS_PORT",
} as const;

/**
 * What carries the workers' messages between them (the fan-out's `WorkerHub`, given by the
 * composition root): the supervisor attaches each worker's IPC channel and hands it every
 * message; it only reads `{t: "ready"}` itself, to know when the box is up.
 */
export interface WorkerRouter<Up, Down> {
  attach(worker: number, send: (message: Down) => void): void;
  detach(worker: number): void;
  receive(worker: number, message: Up): void;
}

/** Options of {@link superviseWorkers}. */
export interface SuperviseOptions<Up, Down> {
  readonly router: WorkerRouter<Up, Down>;
  readonly count: number;
  /** How to start one worker: this program with the same arguments. */
  readonly command: readonly string[];
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly host: string;
  /** The shared port; 0 picks a free one for all. */
  readonly port: number;
  /** The MQTT ports shared too, when the MQTT + UDP transport is on (0 picks one). */
  readonly mqtt?: { readonly host: string; readonly port: number; readonly tlsPort?: number };
  /** How long the workers may drain after SIGTERM before they are killed. */
  readonly drainMs: number;
  readonly logger: Logger;
}

/** Restart delays of a worker that keeps dying: doubling from the first, capped. */
const RESTART_FIRST_MS = 500;
const RESTART_MAX_MS = 10_000;
/** A worker that lived this long before dying is restarted after the first delay again. */
const HEALTHY_AFTER_MS = 10_000;

interface Slot {
  readonly index: number;
  proc: Subprocess | undefined;
  startedAt: number;
  restartDelayMs: number;
  ready: boolean;
}

/**
 * `serve --workers N`: N gateway processes on one port (SO_REUSEPORT: the kernel spreads the
 * connections), and this process as their supervisor and hub (`router`: the fan-out
 * between them). A worker that dies is restarted with a backoff (a device it held reconnects
 * to another); one that dies before all have started means the settings are wrong, so all
 * stop and the command fails. SIGTERM or SIGINT drains every worker and exits 0 once they all
 * exited cleanly. Never returns.
 */
export async function superviseWorkers<Up, Down>(o: SuperviseOptions<Up, Down>): Promise<never> {
  const logger = o.logger.child({ component: "supervisor" });
  const router = o.router;
  // Port 0: one free port for all, held with SO_REUSEPORT until the workers have bound it.
  // (Bun.listen honours reusePort; bun-types 1.4 only declare it for connect, hence the spread.)
  const reserve = (host: string, port: number) =>
    Bun.listen({ hostname: host, port, ...{ reusePort: true }, socket: { open: (s) => void s.end(), data: () => {} } });
  const reserved = [
    o.port === 0 ? reserve(o.host, 0) : undefined,
    o.mqtt?.port === 0 ? reserve(o.mqtt.host, 0) : undefined,
    o.mqtt?.tlsPort === 0 ? reserve(o.mqtt.host, 0) : undefined,
  ];
  const port = reserved[0]?.port ?? o.port;
  const mqttPort = reserved[1]?.port ?? o.mqtt?.port;
  const mqttTlsPort = reserved[2]?.port ?? o.mqtt?.tlsPort;
  const slots: Slot[] = Array.from({ length: o.count }, (_, i) => ({
    index: i + 1,
    proc: undefined,
    startedAt: 0,
    restartDelayMs: RESTART_FIRST_MS,
    ready: false,
  }));
  let allStarted = false;
  let stopping = false;
  let failedStops = 0;
  const { promise: finished, resolve: finish } = Promise.withResolvers<number>();

  const spawn = (slot: Slot) => {
    const proc = Bun.spawn([...o.command], {
      env: {
        ...o.env,
        [WorkerEnv.index]: String(slot.index),
        [WorkerEnv.count]: String(o.count),
        [WorkerEnv.port]: String(port),
        ...(mqttPort === undefined ? {} : { [WorkerEnv.mqttPort]: String(mqttPort) }),
        ...(mqttTlsPort === undefined ? {} : { [WorkerEnv.mqttTlsPort]: String(mqttTlsPort) }),
      },
      stdio: ["ignore", "inherit", "inherit"],
      serialization: "advanced",
      ipc: (message) => onMessage(slot, proc, message as Up),
    });
    slot.proc = proc;
    slot.startedAt = performance.now();
    slot.ready = false;
    router.attach(slot.index, (m) => {
      try {
        proc.send(m);
      } catch (err) {
        // It is exiting: its exit handler detaches it.
        logger.debug({ worker: slot.index, err: describeError(err) }, "message to a worker not sent");
      }
    });
    logger.info({ worker: slot.index, pid: proc.pid }, "worker started");
    void proc.exited.then((code) => onExit(slot, proc, code));
  };

  const onMessage = (slot: Slot, proc: Subprocess, m: Up) => {
    if (slot.proc !== proc) return;
    const ready = m as { t?: unknown; instanceId?: unknown };
    if (ready.t === "ready") {
      slot.ready = true;
      if (allStarted) logger.info({ worker: slot.index, pid: proc.pid, instanceId: ready.instanceId }, "worker restarted");
      else if (slots.every((s) => s.ready)) {
        allStarted = true;
        for (const r of reserved) r?.stop(true);
        logger.info(
          {
            port,
            workers: o.count,
            pids: slots.map((s) => s.proc?.pid),
            ...(mqttPort === undefined ? {} : { mqttPort }),
            ...(mqttTlsPort === undefined ? {} : { mqttTlsPort }),
          },
          "workers listening",
        );
      }
    }
    router.receive(slot.index, m);
  };

  const onExit = (slot: Slot, proc: Subprocess, code: number) => {
    if (slot.proc !== proc) return;
    router.detach(slot.index);
    slot.proc = undefined;
    if (stopping) {
      if (code !== 0) failedStops++;
      logger.info({ worker: slot.index, code }, "worker stopped");
      if (slots.every((s) => s.proc === undefined)) finish(0);
      return;
    }
    if (!allStarted) {
      logger.error({ worker: slot.index, code, signal: proc.signalCode }, "a worker exited while starting: stopping all");
      for (const s of slots) s.proc?.kill("SIGKILL");
      finish(2);
      return;
    }
    const lived = performance.now() - slot.startedAt;
    if (lived >= HEALTHY_AFTER_MS) slot.restartDelayMs = RESTART_FIRST_MS;
    const delayMs = slot.restartDelayMs;
    slot.restartDelayMs = Math.min(delayMs * 2, RESTART_MAX_MS);
    logger.error({ worker: slot.index, code, signal: proc.signalCode, restartInMs: delayMs }, "worker exited: restarting it");
    setTimeout(() => {
      if (!stopping) spawn(slot);
    }, delayMs);
  };

  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, "second signal: killing the workers");
      for (const s of slots) s.proc?.kill("SIGKILL");
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal, workers: slots.filter((s) => s.proc !== undefined).length }, "shutting down: draining every worker");
    for (const s of slots) {
      s.proc?.kill("SIGTERM");
    }
    if (slots.every((s) => s.proc === undefined)) finish(0);
    // Each worker bounds its own drain; this only catches one that hangs.
    setTimeout(() => {
      logger.error({ timeoutMs: o.drainMs }, "workers did not stop in time: killing them");
      for (const s of slots) s.proc?.kill("SIGKILL");
      finish(1);
    }, o.drainMs).unref();
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));

  for (const slot of slots) spawn(slot);
  const finishedWith = await finished;
  const code = finishedWith === 0 && failedStops > 0 ? 1 : finishedWith;
  logger.info({ code }, "supervisor done");
  process.exit(code);
}
