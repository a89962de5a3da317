// Reads one agent's events straight from Kafka, as any Kafka consumer may
// (docs/kafka-topics.md), and decodes their typed payloads.
//
//   GODEL_KAFKA=host:port GODEL_AGENT_ID=<uuid> npm run --silent agent-events
//
// Consumes godel.agent.events from the beginning in a consumer group of its own
// (kafkajs needs one), decodes each record value as a godel.v1.Event, keeps the
// events of GODEL_AGENT_ID and prints one JSON line per event: its type, the
// payload message (the Event.data field its type names, checked against the
// message's godel.v1.event_type option), the agent id and the agent's status after
// the event, all read from the typed payload. Stops after the agent's GODEL_UNTIL
// event (default agent:delete); after GODEL_TIMEOUT seconds (default 60) without
// it, or on any error, it exits 1.
import { randomUUID } from "node:crypto";
import { fromBinary, getOption } from "@bufbuild/protobuf";
import { AgentStatus, AgentStatusSchema } from "@godel/gen/godel/v1/agent_pb";
import { event_type } from "@godel/gen/godel/v1/event_options_pb";
import { type Event, EventSchema } from "@godel/gen/godel/v1/event_pb";
import { Kafka, logLevel } from "kafkajs";

const TOPIC = "godel.agent.events";

type Data = Event["data"];

// The typed payload of an event: the Event.data oneof, when the message set in it
// is the one the event's type names (its godel.v1.event_type option).
function payload(event: Event): { message: string; data: Data } | undefined {
  const data = event.data;
  if (data.case === undefined) {
    return undefined;
  }
  const field = EventSchema.field[data.case];
  if (field?.message === undefined || getOption(field.message, event_type) !== event.type) {
    return undefined;
  }
  return { message: field.message.name, data };
}

function agentOf(data: Data): string {
  switch (data.case) {
    case "agentSpawned":
      return data.value.agent?.id ?? "";
    case "agentDeleted":
    case "agentUsage":
      return data.value.agentId;
  }
  // Every lifecycle event (agent:start, agent:pause, ...) carries its transition.
  return data.case !== undefined && "transition" in data.value ? (data.value.transition?.agentId ?? "") : "";
}

function statusOf(data: Data): AgentStatus {
  switch (data.case) {
    case "agentSpawned":
      return data.value.agent?.status ?? AgentStatus.UNSPECIFIED;
    case "agentDeleted":
      return data.value.status;
  }
  if (data.case !== undefined && "transition" in data.value) {
    return data.value.transition?.toStatus ?? AgentStatus.UNSPECIFIED;
  }
  return AgentStatus.UNSPECIFIED;
}

function statusName(status: AgentStatus): string {
  return AgentStatusSchema.values.find((v) => v.number === status)?.name ?? String(status);
}

async function main(): Promise<void> {
  const bootstrap = process.env["GODEL_KAFKA"];
  const agentId = process.env["GODEL_AGENT_ID"];
  if (!bootstrap || !agentId) {
    throw new Error("GODEL_KAFKA (host:port) and GODEL_AGENT_ID must be set");
  }
  const until = process.env["GODEL_UNTIL"] || "agent:delete";
  const seconds = Number(process.env["GODEL_TIMEOUT"] || "60");
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new Error(`GODEL_TIMEOUT must be a positive number of seconds, not ${process.env["GODEL_TIMEOUT"]}`);
  }

  const kafka = new Kafka({ clientId: "godel-ts-example", brokers: [bootstrap], logLevel: logLevel.ERROR });
  const consumer = kafka.consumer({ groupId: `godel-ts-example-${randomUUID()}` });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic: TOPIC, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no ${until} of agent ${agentId} on ${TOPIC} within ${seconds}s`)),
        seconds * 1000,
      );
      consumer
        .run({
          eachMessage: async ({ message }) => {
            if (message.value === null) {
              return;
            }
            let event: Event;
            try {
              event = fromBinary(EventSchema, message.value);
            } catch {
              return; // not a godel.v1.Event: skip
            }
            const typed = payload(event);
            if (event.metadata?.agentId !== agentId || typed === undefined) {
              return;
            }
            const line = {
              type: event.type,
              message: typed.message,
              agentId: agentOf(typed.data),
              status: statusName(statusOf(typed.data)),
            };
            process.stdout.write(`${JSON.stringify(line)}\n`);
            if (event.type === until) {
              clearTimeout(timer);
              resolve();
            }
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
}

main().catch((err: unknown) => {
  console.error(`agent-events: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
