import type { VouchEventEmitter, VouchEventName, VouchEvents } from '../../src/core/events.js';

/** Every event name, checked against VouchEvents so that a new event cannot be missed here. */
const EVENT_NAMES = Object.keys({
  'job:completed': true,
  'job:retry': true,
  'job:failed': true,
  'job:released': true,
  'attempt:abandoned': true,
  'lease:lost': true,
  'effect:in-doubt': true,
  'payload:rejected': true,
  'worker:error': true,
} satisfies Record<VouchEventName, true>) as VouchEventName[];

export type RecordedEvent = { [K in VouchEventName]: { event: K; data: VouchEvents[K][0] } }[VouchEventName];

/** Everything a worker emitted, in order. */
export class EventLog {
  readonly all: RecordedEvent[] = [];

  constructor(emitter: VouchEventEmitter) {
    for (const event of EVENT_NAMES) {
      const record = (data: unknown) => void this.all.push({ event, data } as RecordedEvent);
      (emitter as unknown as { on(name: string, listener: (data: unknown) => void): void }).on(event, record);
    }
  }

  of<K extends VouchEventName>(event: K): VouchEvents[K][0][] {
    return this.all.filter((entry) => entry.event === event).map((entry) => entry.data as VouchEvents[K][0]);
  }
}
