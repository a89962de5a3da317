// A user's first program with the TypeScript client, compiled with tsc against the .d.ts of the
// npm tarball installed in a fresh directory, run by Node over gRPC-Web through the gateway: it
// creates an agent that commits, pages through the agents until it finds it, follows its
// events to the end, and meets a 400 and a 401. It prints one JSON object (what it saw).
import { GodelClient, GodelError, InvalidArgumentError, UnauthenticatedError } from "@godel-ai/client";
import { AgentStatus } from "@godel-ai/client/gen/godel/v1/agent_pb";

const baseUrl = `http://${process.env["GODEL_ADDR"]}`;
const godel = new GodelClient({ baseUrl, apiKey: process.env["GODEL_API_KEY"] });

const agent = await godel.agents.create({
  task: "hello from the ts client",
  label: "ts-first-agent",
  config: { command: ["sh", "-c", "echo ts > ts.txt && git add ts.txt && git commit -qm ts"] },
});

let paged = 0;
let found = false;
for await (const a of godel.agents.list({ pageSize: 2, label: "ts-first-agent" })) {
  paged++;
  found ||= a.id === agent.id;
}

const events: string[] = [];
const sequences: number[] = [];
for await (const event of godel.agents.follow(agent.id)) {
  events.push(event.type);
  sequences.push(Number(event.sequence));
}
const done = await godel.agents.get(agent.id);

let invalidArgument = false;
let violations: string[] = [];
try {
  await godel.agents.create({ task: "" });
} catch (err) {
  invalidArgument = err instanceof InvalidArgumentError;
  if (err instanceof GodelError) violations = err.fieldViolations.map((v) => v.field);
}

let unauthenticated = false;
const stranger = new GodelClient({ baseUrl, apiKey: "godel_sk_not-a-real-key-000000000000" });
try {
  await stranger.agents.get(agent.id);
} catch (err) {
  unauthenticated = err instanceof UnauthenticatedError;
}

console.log(
  JSON.stringify({
    agentId: agent.id,
    paged,
    found,
    events,
    sequences,
    status: `AGENT_STATUS_${AgentStatus[done.status]}`,
    commits: done.commits,
    invalidArgument,
    violations,
    unauthenticated,
  }),
);
