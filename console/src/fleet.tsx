// The fleet: agents by status, running cost, workers and their slots, every agent with its
// status (live: refreshed on each agent event), a form to spawn one, and the row actions.
import { AgentStatus } from "@godel-ai/client";
import type { Worker } from "@godel-ai/client/gen/godel/v1/agent_pb";
import type { GetAgentMetricsResponse } from "@godel-ai/client/gen/godel/v1/system_service_pb";
import { useState } from "preact/hooks";
import { AgentActions } from "./actions.js";
import { ConfirmedForm, type Ask } from "./confirm.js";
import { Field } from "./field.js";
import { time, usd } from "./format.js";
import { useLive } from "./live.js";
import { More, PAGE_SIZE, usePaged } from "./paging.js";
import { can, type Session } from "./session.js";
import { StatusBadge } from "./status.js";

export function Fleet(props: { session: Session; ask: Ask }) {
  const { session, ask } = props;
  const client = session.client;
  const agents = usePaged((pageToken) =>
    client.agents.listAgents({ pageSize: PAGE_SIZE, pageToken }).then((r) => [r.agents, r.nextPageToken]),
  );
  const [metrics, setMetrics] = useState<GetAgentMetricsResponse | null>(null);
  const [workers, setWorkers] = useState<Worker[]>([]);
  const load = async () => {
    // Workers are not essential: a failure to list them shows none.
    client.agents.listWorkers({}).then((w) => setWorkers(w.workers), () => setWorkers([]));
    const [, figures] = await Promise.all([agents.load(), client.system.getAgentMetrics({})]);
    setMetrics(figures);
  };
  const { error, setError, reload } = useLive(client, { pattern: ["agent:*"] }, load, [agents.count]);
  return (
    <section>
      <h2>Fleet</h2>
      {error && <p class="error">{error}</p>}
      <div class="cards">
        <div class="card">
          <b data-figure="total">{metrics ? String(metrics.total) : "…"}</b> agents
        </div>
        <div class="card">
          <b data-figure="active">{metrics ? String(metrics.active) : "…"}</b> active
        </div>
        <div class="card">
          <b data-figure="cost">{metrics ? usd(metrics.totalCostUsd) : "…"}</b> spent
        </div>
        {metrics &&
          Object.entries(metrics.byStatus).map(([status, count]) => (
            <div class="card" data-status-count={status}>
              <b>{String(count)}</b> {status}
            </div>
          ))}
      </div>
      {workers.length > 0 && (
        <p class="workers">
          Workers:{" "}
          {workers.map((w) => (
            <span class="worker">
              {w.hostname || w.id} {w.activeRuns}/{w.capacity} busy
            </span>
          ))}
        </p>
      )}
      {can(session, "agent", "create") && <Spawn session={session} ask={ask} onSpawned={reload} />}
      <table class="agents">
        <thead>
          <tr>
            <th>agent</th>
            <th>task</th>
            <th>status</th>
            <th>spawned</th>
            <th>cost</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {agents.items.map((agent) => (
            <tr data-agent={agent.id} key={agent.id}>
              <td>
                <a href={`#/agents/${agent.id}`}>{agent.label || agent.id.slice(0, 8)}</a>
              </td>
              <td class="task">{agent.task}</td>
              <td>
                <StatusBadge values={AgentStatus} value={agent.status} />
              </td>
              <td>{time(agent.spawnedAt)}</td>
              <td>{usd(agent.budgetConsumed)}</td>
              <td>
                <AgentActions session={session} agent={agent} ask={ask} onDone={reload} onError={setError} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <More list="agents" paged={agents} />
      {agents.items.length === 0 && !error && <p class="empty">No agents yet.</p>}
    </section>
  );
}

function Spawn(props: { session: Session; ask: Ask; onSpawned: () => void }) {
  const [task, setTask] = useState("");
  const [command, setCommand] = useState("");
  const [label, setLabel] = useState("");
  const spawn = () =>
    props.session.client.agents.create({
      task: task.trim(),
      label: label.trim(),
      // A shell line runs on the command runtime ({task} is replaced by the task); none: the
      // mesh's default runtime.
      config: command.trim() ? { command: ["sh", "-c", command.trim()] } : undefined,
    });
  const spawned = () => {
    setTask("");
    setLabel("");
    props.onSpawned();
  };
  return (
    <ConfirmedForm
      name="spawn"
      ask={props.ask}
      verb="spawn"
      label="Spawn"
      question={() => (task.trim() ? `Spawn an agent on "${task.trim()}"?` : "")}
      action={spawn}
      onDone={spawned}
    >
      <Field name="task" placeholder="task" value={task} set={setTask} required />
      <Field name="command" placeholder="command (sh -c …, optional)" value={command} set={setCommand} />
      <Field name="label" placeholder="label (optional)" value={label} set={setLabel} />
    </ConfirmedForm>
  );
}
