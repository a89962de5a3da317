// The event stream: every event the caller may read, live, filtered by type patterns
// (`agent:*`, `workflow:step:*`) and an agent id; the newest first, the last 500 kept. Below
// them, earlier events with the same filter (EventService.QueryEvents, newest first), a page more
// at each "more".
import type { Event } from "@godel-ai/client";
import { SortOrder } from "@godel-ai/client/gen/godel/v1/event_service_pb";
import { useEffect, useState } from "preact/hooks";
import { Field } from "./field.js";
import { errorText, time } from "./format.js";
import { useEvents } from "./live.js";
import { More, PAGE_SIZE, usePaged } from "./paging.js";
import type { Session } from "./session.js";

const KEEP = 500;

export function EventsPage(props: { session: Session }) {
  const [patterns, setPatterns] = useState("");
  const [agentId, setAgentId] = useState("");
  const [filter, setFilter] = useState({ pattern: [] as string[], agentId: "" });
  const [events, setEvents] = useState<Event[]>([]);
  const client = props.session.client;
  const earlier = usePaged((pageToken) =>
    client.events
      .queryEvents({ type: filter.pattern, agentId: filter.agentId, order: SortOrder.DESCENDING, pageSize: PAGE_SIZE, pageToken })
      .then((r) => [r.events, r.nextPageToken]),
  );
  const [earlierError, setEarlierError] = useState("");
  useEffect(() => {
    earlier.load().then(() => setEarlierError(""), (err) => setEarlierError(errorText(err)));
  }, [filter, earlier.count]);
  const streamError = useEvents(
    props.session.client,
    filter,
    (event) => setEvents((shown) => [event, ...shown].slice(0, KEEP)),
    [filter],
  );
  const error = streamError || earlierError;
  const live = new Set(events.map((event) => event.id));
  const shown = [...events, ...earlier.items.filter((event) => !live.has(event.id))];
  const apply = (e: SubmitEvent) => {
    e.preventDefault();
    setEvents([]);
    setFilter({ pattern: patterns.split(/[\s,]+/).filter(Boolean), agentId: agentId.trim() });
  };
  return (
    <section>
      <h2>Events</h2>
      <form class="filters" onSubmit={apply}>
        <Field name="pattern" placeholder="types, e.g. agent:* workflow:step:*" value={patterns} set={setPatterns} />
        <Field name="agent" placeholder="agent id" value={agentId} set={setAgentId} />
        <button type="submit">Filter</button>
      </form>
      {error && <p class="error">{error}</p>}
      <table class="events">
        <tbody>
          {shown.map((event) => (
            <tr data-type={event.type} key={event.id}>
              <td>{String(event.sequence)}</td>
              <td>{time(event.timestamp)}</td>
              <td>
                <code>{event.type}</code>
              </td>
              <td>{event.source?.component}</td>
              <td>
                {event.type.startsWith("agent:") && event.partitionKey && <a href={`#/agents/${event.partitionKey}`}>{event.partitionKey.slice(0, 8)}</a>}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <More list="events" paged={earlier} />
      {shown.length === 0 && <p class="empty">Waiting for events…</p>}
    </section>
  );
}
