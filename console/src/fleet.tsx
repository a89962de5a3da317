// The fleet: agents by status, running cost, workers and their slots, every agent with its
// status (live: refreshed on each agent event), a form to spawn one, and the row actions.
import type { Agent, Worker } from "@godel-ai/client/gen/godel/v1/agent_pb";
import type { GetAgentMetricsResponse } from "@godel-ai/client/gen/godel/v1/system_service_pb";
import { useState } from "preact/hooks";
import { AgentActions } from "./actions.js";
import { confirmed, type Ask } from "./confirm.js";
import { Field } from "./field.js";
import { statusName, time, usd } from "./format.js";
import { useLive } from "./live.js";
import { can, type Session } from "./session.js";

export function Fleet(props: { session: Session; ask: Ask }) {
  const { session, ask } = props;
  const client = session.client;
  const [agents, setAgents] = useState<Agent[]>([]);
  const [metrics, setMetrics] = useState<GetAgentMetricsResponse | null>(null);
  const [workers, setWorkers] = useState<Worker[]>([]);
  const load = async () => {
    // Workers are not essential: a failure to list them shows none.
    client.agents.listWorkers({}).then((w) => setWorkers(w.workers), () => setWorkers([]));
    const [page, figures] = await Promise.all([
      client.agents.listAgents({ pageSize: 100 }),
      client.system.getAgentMetrics({}),
    ]);
    setAgents(page.agents);
    setMetrics(figures);
  };
  const { error, setError, reload } = useLive(client, { pattern: ["agent:*"] }, load, []);
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
      {can(session, "agent", "create") && <Spawn session={session} ask={ask} onSpawned={reload} onError={setError} />}
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
          {agents.map((agent) => (
            <tr data-agent={agent.id} key={agent.id}>
              <td>
                <a href={`#/agents/${agent.id}`}>{agent.label || agent.id.slice(0, 8)}</a>
              </td>
              <td class="task">{agent.task}</td>
              <td>
                <span class={`status ${statusName(agent.status)}`} data-status={statusName(agent.status)}>
                  {statusName(agent.status)}
                </span>
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
      {agents.length === 0 && !error && <p class="empty">No agents yet.</p>}
    </section>
  );
}

function Spawn(props: { session: Session; ask: Ask; onSpawned: () => void; onError: (m: string) => void }) {
  const [task, setTask] = useState("");
  const [command, setCommand] = useState("");
  const [label, setLabel] = useState("");
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!task.trim()) return;
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
    await confirmed(props.ask, `Spawn an agent on "${task.trim()}"?`, "spawn", spawn, spawned, props.onError);
  };
  return (
    <form class="spawn" onSubmit={submit}>
      <Field name="task" placeholder="task" value={task} set={setTask} required />
      <Field name="command" placeholder="command (sh -c …, optional)" value={command} set={setCommand} />
      <Field name="label" placeholder="label (optional)" value={label} set={setLabel} />
      <button type="submit" data-action="spawn">
        Spawn
      </button>
    </form>
  );
}
