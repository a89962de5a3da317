/// <reference types="node" />
// The TypeScript worker: one WorkerService.Connect stream per agent-service replica
// (services/godel_server/worker/connection.py, worker.py), reconnected with jittered backoff.
//
// Ownership: messages about a run go on the connection that assigned it (or that last sent ADOPT
// for it), while that connection is live and still talks to the same replica (same replica_id).
// Otherwise they wait in the run's outbox, flushed when that replica reconnects or another stream
// ADOPTs the run.
//
// Delivery: a run's updates and usage carry the run's next seq and stay in its outbox until the
// owner acknowledges them (RunAck); they are sent again on the owner's welcome, on ADOPT or
// re-assignment, and when in flight for RESEND_MS on a live stream. A finished run leaves the
// worker's table once all of them are acknowledged. Unlike the Python worker, this one has no
// state directory and no journal: the outboxes live in memory only. A restarted TypeScript worker
// comes back without the runs of its previous process and what they left unacknowledged (its
// hello does not list them, or its old connection falls silent past the lease: the replica runs
// them again).
//
// Lease: a run whose owner has acknowledged no heartbeat for the owner's run lease
// (WorkerWelcome.run_lease_ms) is stopped and reported LOST, so that when the owner declares it
// lost and runs it elsewhere, it no longer runs here.
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  ConnectRequestSchema,
  ControlAction,
  RejectReason,
  RunState,
  WorkerService,
  type ConnectRequest,
  type ConnectResponse,
  type RunAck,
  type RunAssignment,
  type RunControl,
} from "../gen/godel/v1/worker_service_pb.js";
import { backoff, sleep } from "../retry.js";
import type { Config } from "./config.js";
import { killMarkedLeftovers, ownerMark } from "./leftovers.js";
import type { Taken } from "./outbox.js";
import { PidFiles } from "./procs.js";
import { Reaper } from "./reaper.js";
import { Run } from "./run.js";
import { Sandboxes } from "./sandbox.js";
import { Worktrees } from "./worktrees.js";

export const RUNTIMES = ["command"];
const WELCOME_TIMEOUT_MS = 10_000;
// How often run leases and overdue acknowledgements are checked.
const TICK_MS = 250;
// A message in flight this long without acknowledgement on a live stream is sent again.
const RESEND_MS = 10_000;
// Heartbeats whose send time is remembered for their acknowledgement.
const HEARTBEATS_KEPT = 64;
// Replica ids (one per restart of a replica with a generated id) whose last contact is remembered.
const REPLICAS_KEPT = 16;

/** A message queued on a stream: its run ("" for none), its order in the run's outbox, itself. */
type Queued = [runId: string, order: number, request: ConnectRequest];

/** Contact: the replica acknowledges each heartbeat. `silence(replicaId)` is how long ago the newest
 * heartbeat that replica acknowledged on this connection was written (the hello, until one is).
 * Heartbeats go ahead of the run messages queued on the stream, and count from their write, not
 * from their queueing: behind a burst of run messages the wait would pass for silence, and past the
 * run lease the worker would stop every run of a live replica. A newer heartbeat replaces one not
 * yet written (it says all the older said). A replica restarted under a new id at the same address
 * is another replica: its acknowledgements renew nothing of the old one's. */
class Connection {
  live = false;
  replicaId = "";
  // The replica's run lease (0: none).
  runLeaseMs = 0;
  private readonly contact = new Map<string, number>();
  private heartbeatSeq = 0n;
  private readonly heartbeatsSent = new Map<bigint, number>();
  private queue: Queued[] = [];
  // The newest heartbeat not yet written (it goes ahead of `queue`).
  private pendingHeartbeat?: ConnectRequest;
  private wake?: () => void;
  private refused = false;

  constructor(
    readonly address: string,
    private readonly w: Worker,
    private readonly client: Client<typeof WorkerService>,
    private readonly headers: Record<string, string>,
  ) {}

  /** Queues a message on the live stream; false (nothing queued) when the stream is down. */
  send(runId: string, req: ConnectRequest, order = 0): boolean {
    if (!this.live) return false;
    this.queue.push([runId, order, req]);
    this.wake?.();
    return true;
  }

  /** Milliseconds since the newest heartbeat replica `replicaId` acknowledged here was sent. */
  silence(replicaId: string, now: number): number {
    const contact = this.contact.get(replicaId);
    return contact === undefined ? Infinity : now - contact;
  }

  private contacted(sent: number): void {
    this.contact.set(this.replicaId, Math.max(this.contact.get(this.replicaId) ?? sent, sent));
    for (const replica of this.contact.keys()) {
      if (this.contact.size <= REPLICAS_KEPT) break;
      this.contact.delete(replica);
    }
  }

  private sendHeartbeat(): void {
    if (!this.live) return;
    const seq = ++this.heartbeatSeq;
    this.pendingHeartbeat = create(ConnectRequestSchema, { message: { case: "heartbeat", value: { ...this.w.heartbeat(), seq } } });
    this.wake?.();
  }

  /** The heartbeat to write now, if one waits, stamped as sent. The stream may still buffer it
   * after this, so the stamp is no later than the write: contact is never counted too late. */
  private takeHeartbeat(): ConnectRequest | undefined {
    const beat = this.pendingHeartbeat;
    if (beat?.message.case !== "heartbeat") return undefined;
    this.pendingHeartbeat = undefined;
    this.heartbeatsSent.set(beat.message.value.seq, performance.now());
    for (const old of this.heartbeatsSent.keys()) {
      if (this.heartbeatsSent.size <= HEARTBEATS_KEPT) break;
      this.heartbeatsSent.delete(old);
    }
    return beat;
  }

  private heartbeatAcked(seq: bigint): void {
    const sent = this.heartbeatsSent.get(seq);
    if (sent === undefined) return;
    this.contacted(sent);
    for (const old of this.heartbeatsSent.keys()) if (old <= seq) this.heartbeatsSent.delete(old);
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
        const next = this.takeHeartbeat() ?? this.queue.shift()?.[2];
        if (next === undefined) {
          await new Promise<void>((ok) => (this.wake = ok));
          this.wake = undefined;
          continue;
        }
        yield next;
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
    const helloSent = performance.now();
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
          this.runLeaseMs = Math.max(response.message.value.runLeaseMs, 0);
          this.contacted(helloSent);
          this.heartbeatsSent.clear();
          if (this.refused) this.w.log("INFO", "the agent service accepts this worker's API key again", { address: this.address });
          this.refused = false;
          this.w.log("INFO", "worker connected", { address: this.address, replica: this.replicaId });
          const interval = Math.max(response.message.value.heartbeatIntervalMs || 5000, 10);
          heartbeat = setInterval(() => this.sendHeartbeat(), interval);
          this.w.onWelcome(this);
          continue;
        }
        if (response.message.case === "heartbeatAck") this.heartbeatAcked(response.message.value.seq);
        else this.w.onResponse(this, response);
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

  /** Gives the run messages that were not written back to their runs' outboxes (a heartbeat not
   * written is dropped: it belongs to no run). */
  private down(): void {
    this.live = false;
    this.pendingHeartbeat = undefined;
    const items = this.queue;
    this.queue = [];
    const unsent = new Map<string, Taken[]>();
    for (const [runId, order, req] of items) if (runId) unsent.set(runId, [...(unsent.get(runId) ?? []), [order, req]]);
    for (const [runId, taken] of unsent) this.w.requeue(runId, taken);
  }
}

export class Worker {
  readonly worktrees: Worktrees;
  readonly pids: PidFiles;
  readonly sandboxes: Sandboxes;
  /** The owner mark (GODEL_WORKER) in the environment of the runs' processes (leftovers.ts). */
  readonly owner: string;
  private readonly runs = new Map<string, Run>();
  // The newest run of each agent in `runs`: an agent's run is assigned only once its previous one
  // has finished, so an agent's unfinished run, if any, is this one.
  private readonly newest = new Map<string, Run>();
  private readonly connections: Connection[];
  private accepting = true;

  constructor(readonly cfg: Config) {
    this.worktrees = new Worktrees(cfg.worktreeRoot);
    this.pids = new PidFiles(cfg.worktreeRoot);
    this.sandboxes = new Sandboxes(cfg);
    this.owner = ownerMark(cfg.worktreeRoot);
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
    const killed = [...this.pids.killLeftovers(), ...killMarkedLeftovers(this.cfg.worktreeRoot)];
    if (killed.length) this.log("WARN", "killed process groups left by a previous worker", { pgids: killed });
    // What the runs' death signal misses when this process dies, the reaper kills (reaper.ts).
    const reaper = new Reaper(this.cfg.worktreeRoot, (msg, fields) => this.log("WARN", msg, fields));
    this.log("INFO", "worker starting", { worker_id: this.cfg.workerId, connect: this.cfg.connect, capacity: this.cfg.capacity, labels: this.cfg.labels, sandbox: this.cfg.sandbox });
    const connections = new AbortController();
    const loops = this.connections.map((c) => c.runForever(connections.signal));
    const ticks = setInterval(() => this.tick(), TICK_MS);
    await new Promise<void>((ok) => signal.addEventListener("abort", () => ok(), { once: true }));
    this.accepting = false;
    const active = this.active();
    for (const r of active) r.stop("shutdown");
    await Promise.race([Promise.all(active.map((r) => r.done)), sleep(5000)]);
    await this.awaitAcknowledgements(2000);
    clearInterval(ticks);
    connections.abort();
    await Promise.allSettled(loops);
    reaper.stopped();
    this.log("INFO", "worker stopped", { worker_id: this.cfg.workerId });
  }

  /** Gives the owners a moment to acknowledge what is in flight (the rest is lost with this
   * process: there is no journal). */
  private async awaitAcknowledgements(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while ([...this.runs.values()].some((r) => r.outbox.unacknowledged > 0) && performance.now() < deadline) {
      if (!this.connections.some((c) => c.live)) return;
      await sleep(20);
    }
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
    for (const r of this.runs.values()) {
      if (r.owner === c && r.ownerReplica === c.replicaId) {
        r.outbox.rewind();
        this.flush(r);
      }
    }
  }

  onResponse(c: Connection, response: ConnectResponse): void {
    if (response.message.case === "assign") this.assign(c, response.message.value);
    else if (response.message.case === "control") this.control(c, response.message.value);
    else if (response.message.case === "runAck") this.acked(response.message.value);
    else this.log("WARN", "unexpected message from the replica", { kind: response.message.case, address: c.address });
  }

  requeue(runId: string, taken: Taken[]): void {
    const r = this.runs.get(runId);
    if (!r) return;
    r.outbox.requeue(taken);
    if (this.reachable(r)) this.flush(r);
  }

  private acked(ack: RunAck): void {
    const r = this.runs.get(ack.runId);
    if (!r || !r.outbox.ack(ack.seq)) return;
    this.flush(r);
    this.forgetIfDone(r);
  }

  private forgetIfDone(r: Run): void {
    if (!(r.finished && r.outbox.length === 0 && this.runs.get(r.id) === r)) return;
    this.runs.delete(r.id);
    if (this.newest.get(r.agentId) === r) this.newest.delete(r.agentId);
  }

  /** The agent's run that has not finished, if the worker holds one. */
  private unfinished(agentId: string): Run | undefined {
    const r = this.newest.get(agentId);
    return r && !r.finished ? r : undefined;
  }

  private reachable(r: Run): r is Run & { owner: Connection } {
    return r.owner instanceof Connection && r.owner.live && r.owner.replicaId === r.ownerReplica;
  }

  sendForRun(r: Run, req: ConnectRequest): void {
    r.outbox.add(req);
    this.flush(r);
  }

  private flush(r: Run): void {
    if (!this.reachable(r)) return;
    const taken = r.outbox.take(performance.now());
    for (let i = 0; i < taken.length; i++) {
      const [order, req] = taken[i]!;
      if (!r.owner.send(r.id, req, order)) return r.outbox.requeue(taken.slice(i));
    }
    this.forgetIfDone(r);
  }

  private takeOwnership(r: Run, c: Connection): void {
    r.owner = c;
    r.ownerReplica = c.replicaId;
    r.outbox.rewind();
    // The new owner learns the current state first thing.
    if (!r.finished) r.outbox.add(r.updateMessage(r.state));
    this.flush(r);
  }

  /** Stops the runs whose owner's lease lapsed; sends again what waits too long for its ack. */
  private tick(): void {
    const now = performance.now();
    for (const r of [...this.runs.values()]) {
      if (!(r.owner instanceof Connection)) continue;
      const silence = r.owner.silence(r.ownerReplica, now);
      if (!r.finished && r.owner.runLeaseMs > 0 && silence > r.owner.runLeaseMs) this.leaseLapsed(r, r.owner, silence);
      else if (this.reachable(r) && r.outbox.overdue(now, RESEND_MS)) {
        r.outbox.rewind();
        this.flush(r);
      }
    }
  }

  private leaseLapsed(r: Run, c: Connection, silenceMs: number): void {
    const howLong = silenceMs === Infinity ? "since it restarted" : `for ${Math.round(silenceMs / 1000)}s`;
    const detail = `the worker lost contact with agent-service replica ${r.ownerReplica} ${howLong} (its run lease is ${c.runLeaseMs / 1000}s)`;
    if (!r.stopReason) this.log("WARN", "run lease lapsed; stopping the run", { run_id: r.id, detail });
    r.stop("lease", detail);
  }

  /** Refuses an assignment. The reason tells the replica whether to try the run again soon (a full,
   * stopping or busy worker) or to count the refusal against the run (runtime, invalid). */
  private reject(c: Connection, a: RunAssignment, rejectReason: RejectReason, error: string): void {
    this.log("INFO", "run rejected", { run_id: a.runId, agent_id: a.agentId, reason: RejectReason[rejectReason], error });
    c.send("", create(ConnectRequestSchema, { message: { case: "update", value: { runId: a.runId, agentId: a.agentId, state: RunState.REJECTED, rejectReason, error, time: timestampNow() } } }));
  }

  private assign(c: Connection, a: RunAssignment): void {
    const existing = this.runs.get(a.runId);
    if (existing) return this.takeOwnership(existing, c);
    if (!a.runId || !a.agentId) return this.reject(c, a, RejectReason.INVALID, "the assignment needs a run_id and an agent_id");
    if (!this.accepting) return this.reject(c, a, RejectReason.SHUTTING_DOWN, "worker shutting down");
    const runtime = (a.config?.runtime ?? "").trim().toLowerCase() || "command";
    if (!RUNTIMES.includes(runtime)) return this.reject(c, a, RejectReason.RUNTIME, `unknown runtime ${JSON.stringify(runtime)}; this worker hosts ${RUNTIMES.join(", ")}`);
    const active = this.active();
    if (active.length >= this.cfg.capacity) return this.reject(c, a, RejectReason.CAPACITY, `worker at capacity (${this.cfg.capacity} runs)`);
    const same = this.unfinished(a.agentId);
    if (same) return this.reject(c, a, RejectReason.AGENT_BUSY, `agent ${a.agentId} already has run ${same.id} on this worker`);
    const r = new Run(this, a);
    r.owner = c;
    r.ownerReplica = c.replicaId;
    this.runs.set(r.id, r);
    this.newest.set(r.agentId, r);
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
    // A worktree is named after its agent (Worktrees.pathFor): no walk over every run (a thousand
    // agents killed at once each have their worktree cleaned up).
    const busy = this.unfinished(basename(ctl.worktree));
    if (busy?.wt?.path === ctl.worktree) return this.ack(c, ctl, `run ${busy.id} still runs in ${ctl.worktree}`);
    try {
      await this.worktrees.remove(ctl.repo, ctl.worktree);
    } catch (err) {
      return this.ack(c, ctl, (err as Error).message);
    }
    this.log("INFO", "worktree removed", { worktree: ctl.worktree, repo: ctl.repo });
    this.ack(c, ctl, "");
  }
}
