// Live data: a subscription to the event service (EventService.SubscribeEvents over gRPC-Web,
// through the client's resuming `events.subscribe`) that calls back on every event and stops
// when the view goes away, and a reload that many events in a burst trigger only once.
import type { Event, GodelClient, SubscribeEventsInit } from "@godel-ai/client";
import { useEffect, useRef, useState } from "preact/hooks";
import { errorText } from "./format.js";

export function useEvents(
  client: GodelClient,
  request: SubscribeEventsInit | null,
  onEvent: (event: Event) => void,
  deps: unknown[],
): string {
  const [error, setError] = useState("");
  const handler = useRef(onEvent);
  handler.current = onEvent;
  useEffect(() => {
    if (request === null) return;
    const stop = new AbortController();
    (async () => {
      try {
        for await (const event of client.events.subscribe(request, { signal: stop.signal })) handler.current(event);
      } catch (err) {
        if (!stop.signal.aborted) setError(errorText(err));
      }
    })();
    return () => stop.abort();
  }, deps);
  return error;
}

export interface Live {
  /** Why the last load or the subscription failed ("" when fine). */
  error: string;
  setError: (message: string) => void;
  reload: () => void;
}

/** A view's data: `load` now, and again after the events `request` matches (bursts coalesced). */
export function useLive(
  client: GodelClient,
  request: SubscribeEventsInit,
  load: () => Promise<void>,
  deps: unknown[],
): Live {
  const [error, setError] = useState("");
  const reload = useReload(async () => {
    try {
      await load();
      setError("");
    } catch (err) {
      setError(errorText(err));
    }
  }, deps);
  const streamError = useEvents(client, request, reload, deps);
  return { error: error || streamError, setError, reload };
}

/** `load` now, then again (once) shortly after each burst of `poke()`s. */
export function useReload(load: () => Promise<void>, deps: unknown[]): () => void {
  const timer = useRef<number | undefined>(undefined);
  const current = useRef(load);
  current.current = load;
  useEffect(() => {
    void current.current();
    return () => window.clearTimeout(timer.current);
  }, deps);
  return () => {
    window.clearTimeout(timer.current);
    timer.current = window.setTimeout(() => void current.current(), 150);
  };
}
