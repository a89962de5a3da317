// The EventService client with helpers: query pages as an async iterator, and subscriptions that
// reconnect after a broken stream and resume after the last event they delivered.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, type Client } from "@connectrpc/connect";
import type { Event } from "./gen/godel/v1/event_pb.js";
import {
  EventService,
  QueryEventsRequestSchema,
  SubscribeEventsRequestSchema,
} from "./gen/godel/v1/event_service_pb.js";
import { GodelError, errorOf } from "./errors.js";
import { pages } from "./paging.js";
import { backoff, sleep } from "./retry.js";

export type QueryEventsInit = MessageInitShape<typeof QueryEventsRequestSchema>;
export type SubscribeEventsInit = MessageInitShape<typeof SubscribeEventsRequestSchema>;

/** Errors after which a new stream may succeed. */
const RESUMABLE = new Set([Code.Unavailable, Code.Internal, Code.Unknown, Code.Aborted, Code.ResourceExhausted]);

export interface EventHelpers {
  /** Stored events matching `request`, oldest first, fetched page by page as you iterate. */
  query(request?: QueryEventsInit, options?: { signal?: AbortSignal }): AsyncIterable<Event>;
  /**
   * Events matching `request` as they are published (heartbeats are skipped). When the stream
   * breaks it reconnects with backoff and resumes after the last event it delivered
   * (from_sequence = that event's sequence), so none is lost or repeated; a durable
   * subscription (subscriptionName) resumes from the server's cursor. It ends when the server
   * ends the stream, when `signal` aborts, or by throwing a GodelError a reconnect cannot help.
   * Leave the loop (break) to cancel the call.
   */
  subscribe(request?: SubscribeEventsInit, options?: { signal?: AbortSignal }): AsyncIterable<Event>;
}

export type Events = Client<typeof EventService> & EventHelpers;

export function eventHelpers(service: Client<typeof EventService>): EventHelpers {
  return {
    query(request = {}, options = {}) {
      return pages(async (pageToken) => {
        const page = await service.queryEvents({ ...request, pageToken }, options);
        return [page.events, page.nextPageToken];
      });
    },
    subscribe(request = {}, options = {}) {
      return subscribe(service, create(SubscribeEventsRequestSchema, request), options.signal);
    },
  };
}

async function* subscribe(
  service: Client<typeof EventService>,
  request: ReturnType<typeof create<typeof SubscribeEventsRequestSchema>>,
  outer?: AbortSignal,
): AsyncGenerator<Event> {
  const controller = new AbortController();
  const abort = () => controller.abort(outer?.reason);
  outer?.addEventListener("abort", abort, { once: true });
  let attempt = 0;
  try {
    for (;;) {
      let ended = false;
      try {
        for await (const item of service.subscribeEvents(request, { signal: controller.signal })) {
          if (item.item.case === "event") {
            request.fromSequence = item.item.value.sequence;
            attempt = 0;
            yield item.item.value;
          } else if (item.item.case === "end") {
            if (item.item.value.code === 0) return;
            throw errorOf(item.item.value.code as Code, item.item.value.message);
          }
        }
        ended = true; // no StreamEnd: a proxy cut the stream; go on from where it was
      } catch (err) {
        if (controller.signal.aborted || !(err instanceof GodelError) || !RESUMABLE.has(err.code)) throw err;
      }
      if (ended && controller.signal.aborted) return;
      await sleep(backoff(attempt++, 100, 5000), controller.signal);
    }
  } finally {
    outer?.removeEventListener("abort", abort);
    controller.abort();
  }
}
