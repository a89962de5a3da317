// Messages of one run on their way to the run's owner replica (services/godel_server/worker/
// outbox.py, without its journal: this worker keeps them in memory only).
//
// Two kinds of message:
// - Acknowledged (RunUpdate, RunUsage): numbered (`seq`), kept until the owner acknowledges them
//   (RunAck), sent again after a reconnect, an ADOPT or a long silence, never dropped. While one
//   has not left the worker yet, a newer usage of the same model is added into it and a newer
//   state supersedes a non-final one. At most WINDOW are in flight at once (later ones wait).
// - Best effort (log lines, session messages): sent once; while waiting, bounded (`limit`), the
//   oldest log batches dropped first, then session messages.
//
// Every message gets the next number of one per-run counter (`order`), so the order in which they
// were produced survives requeues and resends. The `seq` of an acknowledged message is given when
// it is first handed to a stream, and never changes after: the owner sees 1, 2, ... (a superseded
// state never took a number).
import { RunState, type ConnectRequest } from "../gen/godel/v1/worker_service_pb.js";

/** The states after which a run changes no more. */
export const TERMINAL = new Set([RunState.SUCCEEDED, RunState.FAILED, RunState.KILLED, RunState.REJECTED, RunState.LOST]);
export const WINDOW = 64;
export const DEFAULT_LIMIT = 10_000;

interface Item {
  order: number;
  request: ConnectRequest;
  // Given to a stream at least once (seq > 0): the owner may have applied it.
  handed: boolean;
  sentAt: number;
}

/** A message to write and its order number (to give back through `requeue`). */
export type Taken = [order: number, request: ConnectRequest];

export function acknowledged(req: ConnectRequest): boolean {
  return req.message.case === "update" || req.message.case === "usage";
}

function seqOf(req: ConnectRequest): bigint {
  return req.message.case === "update" || req.message.case === "usage" ? req.message.value.seq : 0n;
}

function supersedable(req: ConnectRequest): boolean {
  return req.message.case === "update" && !TERMINAL.has(req.message.value.state);
}

/** Inserts `item` after every item of a lower or equal order. */
function insertInOrder(items: Item[], item: Item): void {
  let i = items.length;
  while (i > 0 && items[i - 1]!.order > item.order) i--;
  items.splice(i, 0, item);
}

export class RunOutbox {
  private nextOrder = 1;
  private nextSeq = 1n;
  // Not handed to a stream (or to be sent again), in order.
  private waiting: Item[] = [];
  // Acknowledged kinds handed to a stream and not yet acknowledged, by order.
  private inFlight = new Map<number, Item>();

  constructor(private readonly limit = DEFAULT_LIMIT) {}

  get length(): number {
    return this.waiting.length + this.inFlight.size;
  }

  get unacknowledged(): number {
    return this.inFlight.size + this.waiting.filter((i) => acknowledged(i.request)).length;
  }

  add(req: ConnectRequest): void {
    if (!acknowledged(req) || !this.merged(req)) {
      this.waiting.push({ order: this.nextOrder++, request: req, handed: false, sentAt: 0 });
    }
    this.bound();
  }

  /** Adds a usage into a waiting one of the same model, or drops the waiting states a newer
   * non-final state supersedes; true when `req` itself needs no place of its own. */
  private merged(req: ConnectRequest): boolean {
    const fresh = this.waiting.filter((i) => acknowledged(i.request) && !i.handed);
    if (req.message.case === "usage") {
      const usage = req.message.value;
      for (const item of fresh.reverse()) {
        const queued = item.request.message;
        if (queued.case === "usage" && queued.value.model === usage.model) {
          queued.value.promptTokens += usage.promptTokens;
          queued.value.completionTokens += usage.completionTokens;
          return true;
        }
      }
    } else if (supersedable(req)) {
      const superseded = new Set(fresh.filter((i) => supersedable(i.request)));
      this.waiting = this.waiting.filter((i) => !superseded.has(i));
    }
    return false;
  }

  private bound(): void {
    while (this.waiting.length > this.limit && this.dropOne()) {
      // dropped one
    }
  }

  private dropOne(): boolean {
    for (const kind of ["logs", "sessionMessage"]) {
      const i = this.waiting.findIndex((item) => item.request.message.case === kind);
      if (i >= 0) {
        this.waiting.splice(i, 1);
        return true;
      }
    }
    return false;
  }

  /** What to write to the owner's stream now, oldest first. */
  take(now: number): Taken[] {
    const out: Taken[] = [];
    let taken = 0;
    for (const item of this.waiting) {
      if (acknowledged(item.request)) {
        if (this.inFlight.size >= WINDOW) break; // everything after it waits too, to keep the order
        if (!item.handed) this.number(item);
        item.sentAt = now;
        this.inFlight.set(item.order, item);
      }
      out.push([item.order, item.request]);
      taken++;
    }
    this.waiting.splice(0, taken);
    return out;
  }

  private number(item: Item): void {
    item.handed = true;
    const m = item.request.message;
    if (m.case === "update" || m.case === "usage") m.value.seq = this.nextSeq++;
  }

  /** Puts back what a broken stream did not write, in its place; what it did write and was not
   * acknowledged goes back too (`rewind`). */
  requeue(items: Taken[]): void {
    for (const [order, request] of items) {
      if (acknowledged(request)) continue; // still in flight: rewind() puts it back
      insertInOrder(this.waiting, { order, request, handed: false, sentAt: 0 });
    }
    this.rewind();
    this.bound();
  }

  /** The stream the in-flight messages went to is gone, or the run has a new owner: they are sent
   * again (the owner ignores what it applied already). */
  rewind(): void {
    for (const item of this.inFlight.values()) insertInOrder(this.waiting, item);
    this.inFlight.clear();
  }

  /** True when a message in flight has waited longer than `afterMs` for its acknowledgement. */
  overdue(now: number, afterMs: number): boolean {
    for (const item of this.inFlight.values()) if (now - item.sentAt > afterMs) return true;
    return false;
  }

  /** Forgets the acknowledged messages up to `seq`; true when something was forgotten. */
  ack(seq: bigint): boolean {
    const before = this.length;
    const done = (i: Item) => i.handed && seqOf(i.request) <= seq;
    for (const [order, item] of this.inFlight) if (done(item)) this.inFlight.delete(order);
    this.waiting = this.waiting.filter((i) => !(acknowledged(i.request) && done(i)));
    return this.length !== before;
  }
}
