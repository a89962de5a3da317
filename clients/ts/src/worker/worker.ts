/// <reference types="node" />
// The TypeScript worker: one WorkerService.Connect stream per agent-service replica
// (services/godel_server/worker/connection.py, worker.py), reconnected with jittered backoff;
// runs routed to the stream that assigned (or last adopted) them, with per-run outboxes while
// that stream is down.
import { readFileSync } from "node:fs";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  ConnectRequestSchema,
  ControlAction,
  RunState,
  WorkerService,
  type ConnectRequest,
  type ConnectResponse,
  type RunAssignment,
  type RunControl,
} from "../gen/godel/v1/worker_service_pb.js";
import { backoff, sleep } from "../retry.js";
import type { Config } from "./config.js";
import { PidFiles } from "./procs.js";
import { Run } from "./run.js";
import { Sandboxes } from "./sandbox.js";
import { Worktrees } from "./worktrees.js";

export const RUNTIMES = ["command"];
const WELCOME_TIMEOUT_MS = 10_000;
const OUTBOX_LIMIT = 10_000;

class Connection {
  live = false;
  replicaId = "";
  private queue: [string, ConnectRequest][] = [];
  private wake?: () => void;
  private refused = false;

  constructor(
    readonly address: string,
    private readonly w: Worker,
    private readonly client: Client<typeof WorkerService>,
    private readonly headers: Record<string, string>,
  ) {}

  send(runId: string, req: ConnectRequest): boolean {
    if (!this.live) return false;
    this.queue.push([runId, req]);
    this.wake?.();
    return true;
  }

  async runForever(signal: AbortSignal): Promise<void> {
    let attempt = 0;
    while (!signal.aborted) {
      let welcomed = false;
      let refused = false;
      try {
        welcomed = await this.session(signal);
      } catch (err) {
        if (signal.aborted) break;
        const ce = ConnectError.from(err);
        refused = ce.code === Code.Unauthenticated || ce.code === Code.PermissionDenied;
        if (refused && !this.refused) {
          this.w.log("ERROR", "the agent service refuses this worker's API key: no agent can run here until the worker has a valid key of role worker (GODEL_API_KEY)", { address: this.address, error: ce.rawMessage });
        } else if (!refused) {
          this.w.log("INFO", "worker stream failed", { address: this.address, error: ce.message });
        }
        this.refused = refused;
      } finally {
        this.down();
      }
      if (welcomed) attempt = 0;
      await sleep(backoff(attempt++, 200, refused ? 60_000 : 2000), signal).catch(() => undefined);
    }
  }

  private async *requests(hello: ConnectRequest, signal: AbortSignal): AsyncGenerator<ConnectRequest> {
    // One listener for the whole stream (one per wait would pile up on a long-lived stream).
    const stop = () => this.wake?.();
    signal.addEventListener("abort", stop, { once: true });
    try {
      yield hello;
      while (!signal.aborted) {
        const next = this.queue.shift();
        if (next === undefined) {
          await new Promise<void>((ok) => (this.wake = ok));
          this.wake = undefined;
          continue;
        }
        yield next[1];
        if (next[0]) this.w.delivered(next[0], next[1]);
      }
    } finally {
      signal.removeEventListener("abort", stop);
    }
  }

  /** One stream; true when the replica welcomed the worker. */
  private async session(outer: AbortSignal): Promise<boolean> {
    const controller = new AbortController();
    const abort = () => controller.abort();
    outer.addEventListener("abort", abort, { once: true });
    const hello = create(ConnectRequestSchema, { message: { case: "hello", value: this.w.hello() } });
    const welcomeTimer = setTimeout(() => controller.abort(), WELCOME_TIMEOUT_MS);
    let welcomed = false;
    let heartbeat: NodeJS.Timeout | undefined;
    try {
      const responses = this.client.connect(this.requests(hello, controller.signal), { signal: controller.signal, headers: this.headers });
      for await (const response of responses) {
        if (!welcomed) {
          clearTimeout(welcomeTimer);
          if (response.message.case !== "welcome") throw new Error("the replica did not send WorkerWelcome first");
          welcomed = true;
          this.live = true;
          this.replicaId = response.message.value.replicaId;
          if (this.refused) this.w.log("INFO", "the agent service accepts this worker's API key again", { address: this.address });
          this.refused = false;
          this.w.log("INFO", "worker connected", { address: this.address, replica: this.replicaId });
          const interval = Math.max(response.message.value.heartbeatIntervalMs || 5000, 10);
          heartbeat = setInterval(() => this.send("", create(ConnectRequestSchema, { message: { case: "heartbeat", value: this.w.heartbeat() } })), interval);
          this.w.onWelcome(this);
          continue;
        }
        this.w.onResponse(this, response);
      }
      return welcomed;
    } finally {
      clearTimeout(welcomeTimer);
      clearInterval(heartbeat);
      this.live = false;
      controller.abort();
      outer.removeEventListener("abort", abort);
    }
  }

  /** Gives the run messages that were not written back to their runs' outboxes. */
  private down(): void {
    this.live = false;
    const items = this.queue;
    this.queue = [];
    const unsent = new Map<string, ConnectRequest[]>();
    for (const [runId, req] of items) if (runId) unsent.set(runId, [...(unsent.get(runId) ?? []), req]);
    for (const [runId, reqs] of unsent) this.w.requeue(runId, reqs);
  }
}

export class Worker {
  readonly worktrees: Worktrees;
  readonly pids: PidFiles;
  readonly sandboxes: Sandboxes;
  private readonly runs = new Map<string, Run>();
  private readonly connections: Connection[];
  private accepting = true;

  constructor(readonly cfg: Config) {
    this.worktrees = new Worktrees(cfg.worktreeRoot);
    this.pids = new PidFiles(cfg.worktreeRoot);
    this.sandboxes = new Sandboxes(cfg);
    const headers: Record<string, string> = cfg.apiKey ? { "x-api-key": cfg.apiKey } : {};
    const tls = cfg.tls ? { ca: readFileSync(cfg.tls.ca), cert: readFileSync(cfg.tls.cert), key: readFileSync(cfg.tls.key) } : undefined;
    this.connections = cfg.connect.map((address) => {
      const transport = createGrpcTransport({ baseUrl: `${tls ? "https" : "http"}://${address}`, nodeOptions: tls });
      return new Connection(address, this, createClient(WorkerService, transport), headers);
    });
  }

  log(level: string, msg: string, fields: Record<string, unknown> = {}): void {
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`);
  }

  /** Checks the sandbox, kills leftovers, connects, and runs until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    await this.sandboxes.check();
    const killed = this.pids.killLeftovers();
    if (killed.length) this.log("WARN", "killed process groups left by a previous worker", { pgids: killed });
    this.log("INFO", "worker starting", { worker_id: this.cfg.workerId, connect: this.cfg.connect, capacity: this.cfg.capacity, labels: this.cfg.labels, sandbox: this.cfg.sandbox });
    const connections = new AbortController();
    const loops = this.connections.map((c) => c.runForever(connections.signal));
    await new Promise<void>((ok) => signal.addEventListener("abort", () => ok(), { once: true }));
    this.accepting = false;
    const active = this.active();
    for (const r of active) r.stop("shutdown");
    await Promise.race([Promise.all(active.map((r) => r.done)), sleep(5000)]);
    await sleep(500); // the last updates go out
    connections.abort();
    await Promise.allSettled(loops);
    this.log("INFO", "worker stopped", { worker_id: this.cfg.workerId });
  }

  private active(): Run[] {
    return [...this.runs.values()].filter((r) => !r.finished);
  }

  hello() {
    return { workerId: this.cfg.workerId, runtimes: RUNTIMES, capacity: this.cfg.capacity, runs: [...this.runs.values()].map((r) => r.status()), hostname: this.cfg.hostname, labels: this.cfg.labels };
  }

  heartbeat() {
    return { runs: [...this.runs.values()].map((r) => r.status()), freeCapacity: Math.max(this.cfg.capacity - this.active().length, 0) };
  }

  onWelcome(c: Connection): void {
    for (const r of this.runs.values()) if (r.owner === c && r.ownerReplica === c.replicaId) this.flush(r);
  }

  onResponse(c: Connection, response: ConnectResponse): void {
    if (response.message.case === "assign") this.assign(c, response.message.value);
    else if (response.message.case === "control") this.control(c, response.message.value);
    else this.log("WARN", "unexpected message from the replica", { address: c.address });
  }

  requeue(runId: string, reqs: ConnectRequest[]): void {
    const r = this.runs.get(runId);
    if (!r) return;
    r.outbox.unshift(...reqs);
    this.trim(r);
    if (this.reachable(r)) this.flush(r);
  }

  delivered(runId: string, req: ConnectRequest): void {
    if (req.message.case !== "update" || !TERMINAL_STATES.has(req.message.value.state)) return;
    const r = this.runs.get(runId);
    if (r && r.outbox.length === 0) this.runs.delete(runId);
  }

  private reachable(r: Run): r is Run & { owner: Connection } {
    return r.owner instanceof Connection && r.owner.live && r.owner.replicaId === r.ownerReplica;
  }

  sendForRun(r: Run, req: ConnectRequest): void {
    if (this.reachable(r)) {
      this.flush(r);
      if (r.owner.send(r.id, req)) return;
    }
    r.outbox.push(req);
    this.trim(r);
  }

  private flush(r: Run): void {
    const pending = r.outbox;
    r.outbox = [];
    for (let i = 0; i < pending.length; i++) {
      if (!(r.owner instanceof Connection) || !r.owner.send(r.id, pending[i]!)) {
        r.outbox = [...pending.slice(i), ...r.outbox];
        return;
      }
    }
  }

  /** Drops the oldest log batches past the limit (updates are never dropped). */
  private trim(r: Run): void {
    while (r.outbox.length > OUTBOX_LIMIT) {
      const i = r.outbox.findIndex((m) => m.message.case === "logs" || m.message.case === "sessionMessage");
      if (i < 0) return;
      r.outbox.splice(i, 1);
    }
  }

  private takeOwnership(r: Run, c: Connection): void {
    r.owner = c;
    r.ownerReplica = c.replicaId;
    this.flush(r);
    if (!r.finished) c.send(r.id, r.updateMessage(r.state));
  }

  private reject(c: Connection, a: RunAssignment, error: string): void {
    this.log("INFO", "run rejected", { run_id: a.runId, agent_id: a.agentId, error });
    c.send("", create(ConnectRequestSchema, { message: { case: "update", value: { runId: a.runId, agentId: a.agentId, state: RunState.REJECTED, error, time: timestampNow() } } }));
  }

  private assign(c: Connection, a: RunAssignment): void {
    const existing = this.runs.get(a.runId);
    if (existing) return this.takeOwnership(existing, c);
    if (!a.runId || !a.agentId) return this.reject(c, a, "the assignment needs a run_id and an agent_id");
    if (!this.accepting) return this.reject(c, a, "worker shutting down");
    const runtime = (a.config?.runtime ?? "").trim().toLowerCase() || "command";
    if (!RUNTIMES.includes(runtime)) return this.reject(c, a, `unknown runtime ${JSON.stringify(runtime)}; this worker hosts ${RUNTIMES.join(", ")}`);
    const active = this.active();
    if (active.length >= this.cfg.capacity) return this.reject(c, a, `worker at capacity (${this.cfg.capacity} runs)`);
    const same = active.find((r) => r.agentId === a.agentId);
    if (same) return this.reject(c, a, `agent ${a.agentId} already has run ${same.id} on this worker`);
    const r = new Run(this, a);
    r.owner = c;
    r.ownerReplica = c.replicaId;
    this.runs.set(r.id, r);
    this.log("INFO", "run assigned", { run_id: r.id, agent_id: r.agentId });
    void r.execute();
  }

  private ack(c: Connection, ctl: RunControl, error: string): void {
    c.send("", create(ConnectRequestSchema, { message: { case: "ack", value: { runId: ctl.runId, action: ctl.action, ok: !error, error } } }));
  }

  private control(c: Connection, ctl: RunControl): void {
    if (ctl.action === ControlAction.CLEANUP) return void this.cleanup(c, ctl);
    const r = this.runs.get(ctl.runId);
    if (!r) return this.ack(c, ctl, "unknown run");
    switch (ctl.action) {
      case ControlAction.PAUSE:
        return this.ack(c, ctl, r.setPaused(true));
      case ControlAction.RESUME:
        return this.ack(c, ctl, r.setPaused(false));
      case ControlAction.KILL:
        return this.ack(c, ctl, r.stop("kill", ctl.reason));
      case ControlAction.ADOPT:
        this.ack(c, ctl, "");
        return this.takeOwnership(r, c);
      default:
        return this.ack(c, ctl, `unknown control action ${ctl.action}`);
    }
  }

  private async cleanup(c: Connection, ctl: RunControl): Promise<void> {
    const busy = this.active().find((r) => r.wt?.path === ctl.worktree);
    if (busy) return this.ack(c, ctl, `run ${busy.id} still runs in ${ctl.worktree}`);
    try {
      await this.worktrees.remove(ctl.repo, ctl.worktree);
    } catch (err) {
      return this.ack(c, ctl, (err as Error).message);
    }
    this.log("INFO", "worktree removed", { worktree: ctl.worktree, repo: ctl.repo });
    this.ack(c, ctl, "");
  }
}

const TERMINAL_STATES = new Set([RunState.SUCCEEDED, RunState.FAILED, RunState.KILLED, RunState.REJECTED]);
