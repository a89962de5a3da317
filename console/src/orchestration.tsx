// Teams and workflows: every team with its strategy, status, progress and cost (start, pause,
// resume, scale); every workflow with its status and progress (start, pause, resume, cancel); forms that
// create a team and a workflow (from its YAML or JSON definition); and a workflow's DAG, its steps
// laid out by depth with their live states. Live: refreshed on team:* and workflow:* events.
import type { Team } from "@godel-ai/client/gen/godel/v1/team_pb";
import { ExecutionStrategy, TeamStatus } from "@godel-ai/client/gen/godel/v1/team_pb";
import type { Workflow, WorkflowStep } from "@godel-ai/client/gen/godel/v1/workflow_pb";
import { StepStatus, WorkflowStatus } from "@godel-ai/client/gen/godel/v1/workflow_pb";
import { useState } from "preact/hooks";
import { ConfirmedForm, confirmed, type Ask } from "./confirm.js";
import { Choice, Field } from "./field.js";
import { capital, enumName, time, usd } from "./format.js";
import { useLive } from "./live.js";
import { More, PAGE_SIZE, usePaged } from "./paging.js";
import { can, type Session } from "./session.js";
import { StatusBadge } from "./status.js";

interface Act {
  label: string;
  question: string;
  run: () => Promise<unknown>;
}

function Actions(props: { acts: Act[]; ask: Ask; onDone: () => void; onError: (m: string) => void }) {
  return (
    <span class="actions">
      {props.acts.map((act) => (
        <button
          type="button"
          class={act.label === "cancel" ? "danger" : ""}
          data-action={act.label}
          onClick={() => confirmed(props.ask, act.question, act.label, act.run, props.onDone, props.onError)}
        >
          {act.label}
        </button>
      ))}
    </span>
  );
}

/** StartTeam starts the team, answers with it, then streams its progress until it ends: the
 * console takes the first answer (started) and leaves; the live list shows the rest. */
async function startTeam(session: Session, id: string): Promise<void> {
  const stop = new AbortController();
  try {
    for await (const started of session.client.teams.startTeam({ id }, { signal: stop.signal })) {
      if (started.team) return;
    }
  } finally {
    stop.abort();
  }
}

function teamActs(session: Session, team: Team): Act[] {
  if (!can(session, "team", "update")) return [];
  const teams = session.client.teams;
  const acts: Act[] = [];
  const name = team.name || team.id.slice(0, 8);
  if (team.status === TeamStatus.CREATING) acts.push({ label: "start", question: `Start team ${name}?`, run: () => startTeam(session, team.id) });
  if (team.status === TeamStatus.ACTIVE) acts.push({ label: "pause", question: `Pause team ${name}?`, run: () => teams.pauseTeam({ id: team.id }) });
  if (team.status === TeamStatus.PAUSED) acts.push({ label: "resume", question: `Resume team ${name}?`, run: () => teams.resumeTeam({ id: team.id }) });
  if (team.status === TeamStatus.ACTIVE) {
    const size = team.agentIds.length;
    acts.push({ label: "scale", question: `Scale team ${name} from ${size} to ${size + 1} agents?`, run: () => teams.scaleTeam({ id: team.id, targetSize: size + 1 }) });
  }
  return acts;
}

function workflowActs(session: Session, workflow: Workflow): Act[] {
  if (!can(session, "workflow", "update")) return [];
  const workflows = session.client.workflows;
  const id = workflow.id;
  const name = workflow.name || id.slice(0, 8);
  const verbs: [string, WorkflowStatus[], () => Promise<unknown>][] = [
    ["start", [WorkflowStatus.PENDING], () => workflows.startWorkflow({ id })],
    ["pause", [WorkflowStatus.RUNNING], () => workflows.pauseWorkflow({ id })],
    ["resume", [WorkflowStatus.PAUSED], () => workflows.resumeWorkflow({ id })],
    ["cancel", [WorkflowStatus.PENDING, WorkflowStatus.RUNNING, WorkflowStatus.PAUSED], () => workflows.cancelWorkflow({ id, reason: `cancelled from the console by ${session.username}` })],
  ];
  return verbs
    .filter(([, when]) => when.includes(workflow.status))
    .map(([label, , run]) => ({ label, question: `${capital(label)} workflow ${name}?`, run }));
}

export function Orchestration(props: { session: Session; ask: Ask }) {
  const { session, ask } = props;
  const client = session.client;
  const teams = usePaged((pageToken) =>
    client.teams.listTeams({ pageSize: PAGE_SIZE, pageToken }).then((r) => [r.teams, r.nextPageToken]),
  );
  const workflows = usePaged((pageToken) =>
    client.workflows.listWorkflows({ pageSize: PAGE_SIZE, pageToken }).then((r) => [r.workflows, r.nextPageToken]),
  );
  const load = async () => {
    await Promise.all([teams.load(), workflows.load()]);
  };
  const { error, setError, reload } = useLive(client, { pattern: ["team:*", "workflow:*"] }, load, [teams.count, workflows.count]);
  return (
    <section>
      <h2>Teams</h2>
      {error && <p class="error">{error}</p>}
      {can(session, "team", "create") && <CreateTeam session={session} ask={ask} onDone={reload} />}
      <table class="teams">
        <tbody>
          {teams.items.map((team) => (
            <tr data-team={team.id} key={team.id}>
              <td>{team.name}</td>
              <td>{enumName(ExecutionStrategy, team.effectiveStrategy || team.executionStrategy)}</td>
              <td>
                <StatusBadge values={TeamStatus} value={team.status} />
              </td>
              <td>{team.progress}%</td>
              <td>{team.agentIds.length} agents</td>
              <td>{usd(team.budgetConsumed)}</td>
              <td>
                <Actions acts={teamActs(session, team)} ask={ask} onDone={reload} onError={setError} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <More list="teams" paged={teams} />
      {teams.items.length === 0 && <p class="empty">No teams.</p>}
      <h2>Workflows</h2>
      {can(session, "workflow", "create") && <CreateWorkflow session={session} ask={ask} onDone={reload} />}
      <table class="workflows">
        <tbody>
          {workflows.items.map((workflow) => (
            <tr data-workflow={workflow.id} key={workflow.id}>
              <td>
                <a href={`#/workflows/${workflow.id}`}>{workflow.name || workflow.id.slice(0, 8)}</a>
              </td>
              <td>
                <StatusBadge values={WorkflowStatus} value={workflow.status} />
              </td>
              <td>{workflow.progress}%</td>
              <td>{time(workflow.startedAt)}</td>
              <td>
                <Actions acts={workflowActs(session, workflow)} ask={ask} onDone={reload} onError={setError} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <More list="workflows" paged={workflows} />
      {workflows.items.length === 0 && <p class="empty">No workflows.</p>}
    </section>
  );
}

function CreateTeam(props: { session: Session; ask: Ask; onDone: () => void }) {
  const [name, setName] = useState("");
  const [task, setTask] = useState("");
  const [strategy, setStrategy] = useState<number>(ExecutionStrategy.PARALLEL);
  const [budget, setBudget] = useState("");
  const [command, setCommand] = useState("");
  const create = () =>
    props.session.client.teams.createTeam({
      requestId: crypto.randomUUID(),
      name: name.trim(),
      task: task.trim(),
      executionStrategy: strategy,
      // Members run this shell line on the command runtime; none: the mesh's team runtime.
      config: command.trim() ? { runtime: "command", command: ["sh", "-c", command.trim()] } : undefined,
      budgetAllocated: budget.trim() ? Number(budget) : undefined,
    });
  const created = () => {
    setName("");
    setTask("");
    setCommand("");
    setBudget("");
    props.onDone();
  };
  return (
    <ConfirmedForm
      name="create-team"
      ask={props.ask}
      verb="create"
      label="Create team"
      question={() => (name.trim() ? `Create the ${enumName(ExecutionStrategy, strategy)} team ${name.trim()}?` : "")}
      action={create}
      onDone={created}
    >
      <Field name="name" placeholder="team name" value={name} set={setName} required />
      <Field name="task" placeholder="the team's task" value={task} set={setTask} />
      <Choice name="strategy" values={ExecutionStrategy} value={strategy} set={setStrategy} />
      <Field name="command" placeholder="members' command (sh -c …, optional)" value={command} set={setCommand} />
      <Field name="budget" placeholder="budget in USD (optional)" value={budget} set={setBudget} />
    </ConfirmedForm>
  );
}

function CreateWorkflow(props: { session: Session; ask: Ask; onDone: () => void }) {
  const [definition, setDefinition] = useState("");
  const [teamId, setTeamId] = useState("");
  const [start, setStart] = useState(false);
  const create = () =>
    props.session.client.workflows.createWorkflow({
      requestId: crypto.randomUUID(),
      definitionText: definition,
      teamId: teamId.trim(),
      start,
    });
  const created = () => {
    setDefinition("");
    props.onDone();
  };
  return (
    <ConfirmedForm
      name="create-workflow"
      ask={props.ask}
      verb="create"
      label="Create workflow"
      question={() => (definition.trim() ? `Create ${start ? "and start " : ""}this workflow?` : "")}
      action={create}
      onDone={created}
    >
      <Field name="definition" lines={6} placeholder="definition (YAML or JSON: name, steps…)" value={definition} set={setDefinition} required />
      <Field name="team" placeholder="team id (optional)" value={teamId} set={setTeamId} />
      <label>
        <input type="checkbox" name="start" checked={start} onInput={(e) => setStart(e.currentTarget.checked)} /> start it
      </label>
    </ConfirmedForm>
  );
}

/** Each step's depth in the DAG: 0 without dependencies, else one more than its deepest one. */
function layers(steps: WorkflowStep[]): WorkflowStep[][] {
  const byId = new Map(steps.map((s) => [s.stepId, s]));
  const depth = new Map<string, number>();
  const depthOf = (step: WorkflowStep, seen: Set<string>): number => {
    const known = depth.get(step.stepId);
    if (known !== undefined) return known;
    if (seen.has(step.stepId)) return 0; // a cycle cannot be stored; be safe anyway
    seen.add(step.stepId);
    const parents = step.dependencies.map((d) => byId.get(d)).filter((s): s is WorkflowStep => s !== undefined);
    const found = parents.length ? 1 + Math.max(...parents.map((p) => depthOf(p, seen))) : 0;
    depth.set(step.stepId, found);
    return found;
  };
  const out: WorkflowStep[][] = [];
  for (const step of steps) (out[depthOf(step, new Set())] ??= []).push(step);
  return out;
}

export function WorkflowPage(props: { session: Session; id: string; ask: Ask }) {
  const { session, id, ask } = props;
  const client = session.client;
  const [workflow, setWorkflow] = useState<Workflow | null>(null);
  const [steps, setSteps] = useState<WorkflowStep[]>([]);
  const load = async () => {
    const [found, page] = await Promise.all([client.workflows.getWorkflow({ id }), client.workflows.listWorkflowSteps({ id, pageSize: 500 })]);
    setWorkflow(found);
    setSteps(page.steps);
  };
  const { error, setError, reload } = useLive(client, { workflowId: id }, load, [id]);
  if (!workflow) return <section>{error ? <p class="error">{error}</p> : <p>Loading…</p>}</section>;
  return (
    <section data-workflow={workflow.id}>
      <h2>
        Workflow {workflow.name || workflow.id}{" "}
        <StatusBadge values={WorkflowStatus} value={workflow.status} />{" "}
        {workflow.progress}%
      </h2>
      {error && <p class="error">{error}</p>}
      <Actions acts={workflowActs(session, workflow)} ask={ask} onDone={reload} onError={setError} />
      <div class="dag">
        {layers(steps).map((layer, depth) => (
          <div class="layer" data-depth={depth}>
            {layer.map((step) => (
              <div class={`step ${enumName(StepStatus, step.status)}`} data-step={step.stepId} data-status={enumName(StepStatus, step.status)}>
                <b>{step.name || step.stepId}</b>
                <StatusBadge values={StepStatus} value={step.status} />
                {step.dependencies.length > 0 && <small>after {step.dependencies.join(", ")}</small>}
                {step.agentId && <a href={`#/agents/${step.agentId}`}>agent {step.agentId.slice(0, 8)}</a>}
                {step.error && <small class="error">{step.error}</small>}
              </div>
            ))}
          </div>
        ))}
      </div>
    </section>
  );
}
