// The Godel web console: a single page served by the gateway at /ui/, speaking to the same
// gateway through the TypeScript client (gRPC-Web). Pages by URL hash: #/ (the fleet),
// #/agents/<id> (one agent), #/teams (teams and workflows), #/workflows/<id> (a workflow's DAG),
// #/budgets, #/events (the live event stream).
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { AgentPage } from "./agent.js";
import { Budgets } from "./budgets.js";
import { useConfirm } from "./confirm.js";
import { EventsPage } from "./events.js";
import { Fleet } from "./fleet.js";
import { errorText } from "./format.js";
import { Login } from "./login.js";
import { Orchestration, WorkflowPage } from "./orchestration.js";
import { logout, resume, type Session } from "./session.js";
import "./style.css";

function useHash(): string {
  const [hash, setHash] = useState(window.location.hash);
  useEffect(() => {
    const changed = () => setHash(window.location.hash);
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  return hash;
}

function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [error, setError] = useState("");
  const [ask, dialog] = useConfirm();
  const hash = useHash();
  useEffect(() => {
    resume().then(setSession, (err) => {
      setError(errorText(err));
      setSession(null);
    });
  }, []);
  if (session === undefined) return <p>Loading…</p>;
  if (session === null)
    return (
      <main>
        {error && <p class="error">{error}</p>}
        <Login onLogin={setSession} />
      </main>
    );
  const [, kind, id] = /^#\/(\w+)(?:\/([\w-]+))?/.exec(hash) ?? [];
  const page =
    kind === "agents" && id ? (
      <AgentPage session={session} id={id} ask={ask} />
    ) : kind === "workflows" && id ? (
      <WorkflowPage session={session} id={id} ask={ask} />
    ) : kind === "teams" ? (
      <Orchestration session={session} ask={ask} />
    ) : kind === "budgets" ? (
      <Budgets session={session} ask={ask} />
    ) : kind === "events" ? (
      <EventsPage session={session} />
    ) : (
      <Fleet session={session} ask={ask} />
    );
  return (
    <>
      <header>
        <h1>Godel</h1>
        <nav>
          <a href="#/">Fleet</a>
          <a href="#/teams">Teams &amp; workflows</a>
          <a href="#/budgets">Budgets</a>
          <a href="#/events">Events</a>
        </nav>
        <span class="who" data-role={session.role}>
          {session.username} ({session.role})
        </span>
        <button type="button" onClick={() => logout(session).then(() => setSession(null))}>
          Log out
        </button>
      </header>
      <main>{page}</main>
      {dialog}
    </>
  );
}

render(<App />, document.getElementById("app")!);
