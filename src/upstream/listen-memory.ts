import type { DeviceEvent } from "../../gen/xiaozhi/ai/v1/ai_pb";
import { ListenState } from "../../gen/xiaozhi/ai/v1/ai_pb";
import type { ForwardedMessage, ListenMessage } from "../device/device-message";
import { forwardedEvent } from "./translate";

/**
 * The microphone state a session is in, for resuming it. A session resumed after an
 * upstream failure may land on another AI process (or a restarted one) that knows nothing
 * of it but its Hello: without the `listen start` in force, a device streaming in realtime
 * mode would get no echo, and one mid-utterance no answer. So the gateway re-sends it
 * right after Hello `resumed=true`, unless what waited to be sent changes it anyway.
 */
export class ListenMemory {
  private started: ListenMessage | undefined;

  /** Notes a message the device sent (only `listen start`/`stop` matter). */
  note(m: ForwardedMessage): void {
    if (m.type !== "listen") return;
    if (m.state === "start") this.started = m;
    else if (m.state === "stop") this.started = undefined;
  }

  /**
   * The event to send after a resumed Hello, or undefined: none is in force, or `waiting`
   * (the events queued for the new stream) holds a start or stop, which is newer.
   */
  resumeEvent(waiting: readonly DeviceEvent[], sessionKey = 0): DeviceEvent | undefined {
    if (this.started === undefined) return undefined;
    for (const ev of waiting) {
      if (ev.event.case === "listen" && (ev.event.value.state === ListenState.START || ev.event.value.state === ListenState.STOP)) return undefined;
    }
    return forwardedEvent(this.started, sessionKey);
  }
}
