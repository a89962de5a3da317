// One agent: its status and cost, its state history (transitions), its commits, its live logs
// (AgentService.StreamAgentLogs) and the actions its status and the caller's role allow. The
// page follows the agent's events, so a change shows without a reload.
import { AgentStatus } from "@godel-ai/client";
import type { Agent, AgentTransition, LogEntry } from "@godel-ai/client/gen/godel/v1/agent_pb";
import { useEffect, useState } from "preact/hooks";
import { AgentActions } from "./actions.js";
import type { Ask } from "./confirm.js";
import { errorText, stateName, time, usd } from "./format.js";
import { useLive } from "./live.js";
import type { Session } from "./session.js";
import { StatusBadge } from "./status.js";

export function AgentPage(props: { session: Session; id: string; ask: Ask }) {
  const { session, id, ask } = props;
  const client = session.client;
  const [agent, setAgent] = useState<Agent | null>(null);
  const [transitions, setTransitions] = useState<AgentTransition[]>([]);
  const load = async () => {
    const [found, history] = await Promise.all([
      client.agents.getAgent({ id }),
      client.agents.listAgentTransitions({ id, pageSize: 100 }),
    ]);
    setAgent(found);
    setTransitions(history.transitions);
  };
  const { error, setError, reload } = useLive(client, { agentId: id }, load, [id]);
  if (!agent) return <section>{error ? <p class="error">{error}</p> : <p>Loading…</p>}</section>;
  return (
    <section class="agent-page" data-agent={agent.id}>
      <h2>
        Agent {agent.label || agent.id}{" "}
        <StatusBadge values={AgentStatus} value={agent.status} />
      </h2>
      {error && <p class="error">{error}</p>}
      <AgentActions session={session} agent={agent} ask={ask} onDone={reload} onError={setError} />
      <dl class="facts">
        <dt>id</dt>
        <dd>{agent.id}</dd>
        <dt>task</dt>
        <dd>{agent.task}</dd>
        <dt>state</dt>
        <dd>{stateName(agent.lifecycleState)}</dd>
        <dt>runtime</dt>
        <dd>{agent.config?.runtime || "default"}</dd>
        <dt>cost</dt>
        <dd data-figure="cost">
          {usd(agent.budgetConsumed)}
          {agent.budgetLimit !== undefined && ` of ${usd(agent.budgetLimit)}`} ({String(agent.promptTokens)} +{" "}
          {String(agent.completionTokens)} tokens)
        </dd>
        <dt>worker</dt>
        <dd>{agent.workerId || "—"}</dd>
        {agent.lastError && (
          <>
            <dt>last error</dt>
            <dd class="error">{agent.lastError}</dd>
          </>
        )}
        {agent.result && (
          <>
            <dt>result</dt>
            <dd>{agent.result}</dd>
          </>
        )}
        <dt>commits</dt>
        <dd>{agent.commits.length ? agent.commits.map((c) => <code>{c.slice(0, 12)} </code>) : "—"}</dd>
      </dl>
      <h3>State history</h3>
      <table class="transitions">
        <tbody>
          {transitions.map((t) => (
            <tr data-to={stateName(t.toState)}>
              <td>{time(t.time)}</td>
              <td>
                {stateName(t.fromState)} → {stateName(t.toState)}
              </td>
              <td>{t.trigger}</td>
              <td>{t.reason}</td>
              <td>{t.actor}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3>Logs</h3>
      <Logs session={session} id={agent.id} />
    </section>
  );
}

function Logs(props: { session: Session; id: string }) {
  const [entries, setEntries] = useState<LogEntry[]>([]);
  const [error, setError] = useState("");
  useEffect(() => {
    setEntries([]);
    const stop = new AbortController();
    (async () => {
      try {
        const stream = props.session.client.agents.streamAgentLogs(
          { id: props.id, afterSequence: 0n },
          { signal: stop.signal },
        );
        for await (const item of stream) {
          if (item.item.case === "entry") {
            const entry = item.item.value;
            setEntries((shown) => [...shown, entry]);
          } else if (item.item.case === "end" && item.item.value.code !== 0) {
            setError(item.item.value.message);
          }
        }
      } catch (err) {
        if (!stop.signal.aborted) setError(errorText(err));
      }
    })();
    return () => stop.abort();
  }, [props.id]);
  return (
    <div>
      {error && <p class="error">{error}</p>}
      <pre class="logs" data-lines={entries.length}>
        {entries.map((e) => (
          <div class={`log ${e.stream}`}>
            <span class="when">{time(e.time)}</span> {e.message}
          </div>
        ))}
      </pre>
    </div>
  );
}
