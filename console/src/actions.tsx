// The actions on one agent that the caller's role allows (agent:update): pause, resume, restart
// and kill, each only where the agent's status permits it, each confirmed first.
import { AgentStatus, type Agent } from "@godel-ai/client";
import { confirmed, type Ask } from "./confirm.js";
import { capital } from "./format.js";
import { can, type Session } from "./session.js";

type Verb = "pause" | "resume" | "restart" | "kill";

const ALLOWED: Record<Verb, AgentStatus[]> = {
  pause: [AgentStatus.RUNNING],
  resume: [AgentStatus.PAUSED],
  restart: [AgentStatus.FAILED, AgentStatus.KILLED, AgentStatus.COMPLETED],
  kill: [AgentStatus.PENDING, AgentStatus.INITIALIZING, AgentStatus.RUNNING, AgentStatus.PAUSED],
};

async function perform(session: Session, verb: Verb, id: string): Promise<void> {
  const agents = session.client.agents;
  if (verb === "pause") await agents.pauseAgent({ id, pausedBy: session.username });
  else if (verb === "resume") await agents.resumeAgent({ id });
  else if (verb === "restart") await agents.restartAgent({ id, reason: "restarted from the console" });
  else await agents.killAgent({ id, reason: `killed from the console by ${session.username}` });
}

export function AgentActions(props: {
  session: Session;
  agent: Agent;
  ask: Ask;
  onDone: () => void;
  onError: (message: string) => void;
}) {
  const { session, agent, ask } = props;
  if (!can(session, "agent", "update")) return null;
  const verbs = (Object.keys(ALLOWED) as Verb[]).filter((verb) => ALLOWED[verb].includes(agent.status));
  const name = agent.label || agent.id.slice(0, 8);
  const run = (verb: Verb) =>
    confirmed(ask, `${capital(verb)} agent ${name}?`, verb, () => perform(session, verb, agent.id), props.onDone, props.onError);
  return (
    <span class="actions">
      {verbs.map((verb) => (
        <button type="button" class={verb === "kill" ? "danger" : ""} data-action={verb} onClick={() => run(verb)}>
          {verb}
        </button>
      ))}
    </span>
  );
}
