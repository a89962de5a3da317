// The TypeScript worker (dist/worker/worker.js) against in-process fake agent-service replicas
// (gRPC servers on 127.0.0.1): its run updates carry seqs and are sent again until acknowledged
// (RunAck), a run whose owner stops acknowledging heartbeats is stopped and reported LOST after
// the owner's run lease, heartbeats go ahead of a burst of run messages, and acknowledgements are
// no "unexpected message" (worker_service.proto).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { ConnectResponseSchema, ControlAction, RejectReason, RunState, WorkerService } from "../dist/gen/godel/v1/worker_service_pb.js";
import { loadConfig } from "../dist/worker/config.js";
import { Worker } from "../dist/worker/worker.js";
import { waitFor } from "./waits.mjs";


/** One worker stream as the fake replica sees it: what came in, and what to send. */
class Stream {
  received = [];
  controlAcks = 0;
  closed = false;
  #out = [];
  #wake;

  push(message) {
    if (this.closed) return;
    this.#out.push(create(ConnectResponseSchema, { message }));
    this.#wake?.();
  }

  close() {
    this.closed = true;
    this.#wake?.();
  }

  async *responses() {
    while (!this.closed) {
      const next = this.#out.shift();
      if (next) yield next;
      else await new Promise((ok) => (this.#wake = ok));
    }
  }

  of(kind) {
    return this.received.filter((m) => m.message.case === kind).map((m) => m.message.value);
  }

  updates(runId) {
    return this.of("update").filter((u) => u.runId === runId);
  }

  /** Sends a control about a run the worker does not hold (answered "unknown run", no side effect)
   * and waits for the answer: what the worker sent before it has arrived by then (its messages are
   * written in order), and the replica's earlier messages were handled. */
  async roundTrip() {
    const before = this.controlAcks;
    this.push({ case: "control", value: { runId: "no-such-run", agentId: "x", action: ControlAction.PAUSE } });
    await waitFor(() => this.controlAcks > before, "the worker's answer to a control");
  }
}

/** A fake agent-service replica: welcomes the worker, acknowledges heartbeats (unless told not to)
 * and, when `ackRun(update)` says so, the worker's numbered updates. */
class Replica {
  streams = [];
  ackHeartbeats = true;
  ackRun = () => false;
  #server;
  #sessions = new Set();
  // Set while the replica does not read its streams (what the worker writes then waits).
  #paused;
  #resume;

  constructor(id, { leaseMs = 0 } = {}) {
    this.id = id;
    this.leaseMs = leaseMs;
  }

  async start() {
    const handler = connectNodeAdapter({ routes: (router) => router.service(WorkerService, { connect: (requests) => this.#connect(requests) }) });
    this.#server = http2.createServer(handler);
    this.#server.on("session", (s) => this.#sessions.add(s));
    await new Promise((ok) => this.#server.listen(0, "127.0.0.1", ok));
    this.address = `127.0.0.1:${this.#server.address().port}`;
    return this;
  }

  pauseReading() {
    this.#paused ??= new Promise((ok) => (this.#resume = ok));
  }

  resumeReading() {
    this.#resume?.();
    this.#paused = undefined;
  }

  async stop() {
    this.resumeReading();
    for (const s of this.streams) s.close();
    for (const s of this.#sessions) s.destroy();
    await new Promise((ok) => this.#server.close(ok));
  }

  get current() {
    return this.streams.at(-1);
  }

  /** Waits for the worker's n-th stream (from 1) to be welcomed. */
  stream(n) {
    return waitFor(() => this.streams.length >= n && this.streams[n - 1], `stream ${n} to ${this.id}`);
  }

  #connect(requests) {
    const stream = new Stream();
    this.streams.push(stream);
    void (async () => {
      try {
        for await (const request of requests) {
          await this.#paused;
          if (stream.closed) return;
          stream.received.push(request);
          this.#handle(stream, request.message);
        }
      } catch {
        // the stream ended
      }
    })();
    return stream.responses();
  }

  #handle(stream, message) {
    if (message.case === "hello") {
      stream.push({ case: "welcome", value: { replicaId: this.id, heartbeatIntervalMs: 50, runLeaseMs: this.leaseMs } });
    } else if (message.case === "heartbeat" && this.ackHeartbeats) {
      stream.push({ case: "heartbeatAck", value: { seq: message.value.seq } });
    } else if (message.case === "ack") {
      stream.controlAcks++;
    } else if (message.case === "update" && message.value.seq > 0n && this.ackRun(message.value)) {
      stream.push({ case: "runAck", value: { runId: message.value.runId, seq: message.value.seq } });
    }
  }
}

/** A worker on `replicas`, sandbox off, worktrees in a temp dir; `logs` collects what it logs. */
async function startWorker(t, replicas, env = {}) {
  const dir = mkdtempSync(join(tmpdir(), "godel-ts-worker-"));
  const repo = join(dir, "repo");
  execFileSync("git", ["init", "-q", repo]);
  execFileSync("git", ["-C", repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init"]);
  const cfg = loadConfig({
    GODEL_WORKER_CONNECT: replicas.map((r) => r.address).join(","),
    GODEL_WORKER_ID: "ts-test",
    GODEL_HOME: join(dir, "home"),
    GODEL_WORKTREE_ROOT: join(dir, "worktrees"),
    GODEL_SANDBOX: "off",
    ...env,
  });
  const worker = new Worker(cfg);
  const logs = [];
  worker.log = (level, msg, fields = {}) => logs.push({ level, msg, ...fields });
  const stop = new AbortController();
  const running = worker.run(stop.signal);
  t.after(async () => {
    stop.abort();
    await running;
    await Promise.all(replicas.map((r) => r.stop()));
    rmSync(dir, { recursive: true, force: true });
  });
  const assign = (stream, runId, agentId, script, runtime = "command") =>
    stream.push({
      case: "assign",
      value: { runId, agentId, sessionId: runId, task: "test", config: { runtime, command: ["sh", "-c", script] }, repo, branch: `godel/${agentId}` },
    });
  /** Stops the worker as SIGTERM does; resolves once its run() has. */
  const shutdown = async () => {
    stop.abort();
    await running;
  };
  return { worker, logs, assign, shutdown, repo };
}

const lists = (heartbeatOrHello, runId) => heartbeatOrHello.runs.some((r) => r.runId === runId);
const terminal = (u) => u.state === RunState.SUCCEEDED;

test("updates carry seqs 1..n; the unacknowledged terminal update is sent again after a reconnect, an acknowledged one is not", async (t) => {
  const replica = await new Replica("replica-1").start();
  replica.ackRun = (u) => !terminal(u); // the terminal update is "in flight when the replica dies"
  const { logs, assign } = await startWorker(t, [replica]);

  const first = await replica.stream(1);
  await waitFor(() => first.of("hello").length, "the hello");
  assign(first, "run-a", "agent-a", "echo hi");
  await waitFor(() => first.updates("run-a").some(terminal), "run-a's terminal update");
  await first.roundTrip(); // the worker has handled the acks of the updates before it
  const sent = first.updates("run-a");
  assert.deepEqual(sent.map((u) => u.state), [RunState.STARTING, RunState.WORKTREE_READY, RunState.RUNNING, RunState.SUCCEEDED]);
  assert.deepEqual(sent.map((u) => u.seq), [1n, 2n, 3n, 4n]);
  const heartbeats = first.of("heartbeat").length;
  await waitFor(() => first.of("heartbeat").length > heartbeats, "a heartbeat after the run ended");
  assert.ok(lists(first.of("heartbeat").at(-1), "run-a"), "an ended run with an unacknowledged update is still held");

  first.close(); // the replica's stream breaks before it committed the terminal update
  const second = await replica.stream(2);
  await waitFor(() => second.of("hello").length, "the hello after the reconnect");
  assert.ok(lists(second.of("hello")[0], "run-a"), "the hello lists the run the worker still holds");
  await waitFor(() => second.updates("run-a").length, "run-a's terminal update, sent again");
  await second.roundTrip();
  assert.deepEqual(second.updates("run-a").map((u) => [u.state, u.seq]), [[RunState.SUCCEEDED, 4n]], "only the unacknowledged update is sent again, with its seq");

  second.push({ case: "runAck", value: { runId: "run-a", seq: 4n } });
  const acked = second.of("heartbeat").length;
  await waitFor(() => second.of("heartbeat").length > acked + 1 && !lists(second.of("heartbeat").at(-1), "run-a"), "the acknowledged run to leave the worker");

  second.close();
  const third = await replica.stream(3);
  await waitFor(() => third.of("hello").length, "the hello after the second reconnect");
  assert.deepEqual(third.of("hello")[0].runs, []);
  await third.roundTrip();
  assert.deepEqual(third.updates("run-a"), [], "an acknowledged update is not sent again");
  assert.deepEqual(logs.filter((l) => l.level === "WARN"), []);
});

test("a run whose owner stops acknowledging heartbeats is stopped and reported LOST after the lease; one whose owner acknowledges keeps running", async (t) => {
  const alive = await new Replica("replica-alive", { leaseMs: 1000 }).start();
  const silent = await new Replica("replica-silent", { leaseMs: 1000 }).start();
  alive.ackRun = silent.ackRun = () => true;
  const { logs, assign } = await startWorker(t, [alive, silent]);

  const [a, s] = [await alive.stream(1), await silent.stream(1)];
  assign(a, "run-kept", "agent-kept", "sleep 60");
  await waitFor(() => a.updates("run-kept").some((u) => u.state === RunState.RUNNING), "run-kept to run");
  const running = Date.now();
  silent.ackHeartbeats = false;
  assign(s, "run-lost", "agent-lost", "sleep 60");

  const lost = await waitFor(() => s.updates("run-lost").find((u) => u.state === RunState.LOST), "run-lost to be reported LOST");
  assert.match(lost.error, /^the worker lost contact with agent-service replica replica-silent for \d+s \(its run lease is 1s\)$/);
  await s.roundTrip();
  assert.equal(logs.filter((l) => l.msg === "run lease lapsed; stopping the run").length, 1, "the lapse is logged once");
  assert.equal(logs.find((l) => l.msg === "run lease lapsed; stopping the run").run_id, "run-lost");

  // The other owner acknowledges: its run outlives several of its leases.
  await waitFor(() => Date.now() - running > 3000 && a.of("heartbeat").length, "three leases of run-kept");
  const latest = a.of("heartbeat").at(-1).runs.find((r) => r.runId === "run-kept");
  assert.equal(latest?.state, RunState.RUNNING);
  assert.deepEqual(a.updates("run-kept").filter((u) => u.state === RunState.LOST), []);
});

test("a replica restarted under a new id is another replica: the old one's run is stopped after its lease, and its LOST update goes to the one that adopts it", async (t) => {
  const replica = await new Replica("replica-gen1", { leaseMs: 1000 }).start();
  replica.ackRun = () => true;
  const { logs, assign } = await startWorker(t, [replica]);

  const first = await replica.stream(1);
  assign(first, "run-r", "agent-r", "sleep 60");
  await waitFor(() => first.updates("run-r").some((u) => u.state === RunState.RUNNING), "run-r to run");
  await first.roundTrip(); // its updates are acknowledged

  replica.id = "replica-gen2"; // the replica restarts under a new id, at the same address
  first.close();
  const second = await replica.stream(2);
  await waitFor(() => second.of("hello").length, "the hello to the restarted replica");
  assert.ok(lists(second.of("hello")[0], "run-r"));
  // The new replica acknowledges heartbeats, which renews nothing of the old one's lease.
  const lapse = await waitFor(() => logs.find((l) => l.msg === "run lease lapsed; stopping the run"), "run-r's lease to lapse");
  assert.match(lapse.detail, /replica replica-gen1 for \d+s/);
  await waitFor(() => second.of("heartbeat").at(-1)?.runs.find((r) => r.runId === "run-r")?.state === RunState.LOST, "a heartbeat listing run-r LOST");
  assert.deepEqual(second.updates("run-r"), [], "the run's updates wait for its owner");

  second.push({ case: "control", value: { runId: "run-r", agentId: "agent-r", action: ControlAction.ADOPT } });
  const lost = await waitFor(() => second.updates("run-r")[0], "run-r's LOST update to the adopting replica");
  await second.roundTrip();
  assert.deepEqual(second.updates("run-r").map((u) => [u.state, u.seq]), [[RunState.LOST, 4n]]);
  assert.match(lost.error, /^the worker lost contact with agent-service replica replica-gen1 for \d+s \(its run lease is 1s\)$/);
  await waitFor(() => !lists(second.of("heartbeat").at(-1), "run-r"), "the acknowledged run to leave the worker");
});

test("RunAck and HeartbeatAck are no unexpected message; heartbeats are numbered", async (t) => {
  const replica = await new Replica("replica-1").start();
  const { logs } = await startWorker(t, [replica]);
  const stream = await replica.stream(1);
  await waitFor(() => stream.of("heartbeat").length >= 3, "three heartbeats (and their acks)");
  stream.push({ case: "runAck", value: { runId: "no-such-run", seq: 1n } });
  await stream.roundTrip(); // handled after the acks sent before it
  assert.deepEqual(logs.filter((l) => l.level === "WARN"), []);
  const seqs = stream.of("heartbeat").map((h) => h.seq);
  assert.deepEqual(seqs.slice(0, 3), [1n, 2n, 3n]);
});

test("a run the worker kills because it shuts down is reported LOST (it runs again elsewhere), not FAILED", async (t) => {
  const replica = await new Replica("replica-shutdown").start();
  replica.ackRun = () => true;
  const { assign, shutdown } = await startWorker(t, [replica]);
  const s = await replica.stream(1);
  assign(s, "run-s", "agent-s", "sleep 60");
  await waitFor(() => s.updates("run-s").some((u) => u.state === RunState.RUNNING), "run-s to run");
  await shutdown();
  const final = await waitFor(() => s.updates("run-s").find((u) => [RunState.SUCCEEDED, RunState.FAILED, RunState.KILLED, RunState.LOST].includes(u.state)), "run-s to be reported as it ends");
  assert.deepEqual([RunState[final.state], final.error], ["LOST", "worker shutting down"]);
});

test("a rejection says why: the replica tries a full or busy worker again soon and counts only the other refusals against the run", async (t) => {
  const replica = await new Replica("replica-reject").start();
  const { assign } = await startWorker(t, [replica], { GODEL_WORKER_CAPACITY: "2" });
  const stream = await replica.stream(1);
  const rejected = async (runId, reason) => {
    const update = await waitFor(() => stream.updates(runId).find((u) => u.state === RunState.REJECTED), `${runId}'s rejection`);
    assert.equal(RejectReason[update.rejectReason], RejectReason[reason], `${runId}: ${update.error}`);
    assert.ok(update.error, `${runId} says why in words too`);
  };
  const running = (runId) => waitFor(() => stream.updates(runId).some((u) => u.state === RunState.RUNNING), `${runId} runs`);

  assign(stream, "run-invalid", "", "exec sleep 60");
  await rejected("run-invalid", RejectReason.INVALID);
  assign(stream, "run-runtime", "agent-runtime", "exec sleep 60", "no-such-runtime");
  await rejected("run-runtime", RejectReason.RUNTIME);
  assign(stream, "run-1", "agent-1", "exec sleep 60");
  await running("run-1");
  assign(stream, "run-1b", "agent-1", "exec sleep 60"); // a second run of the agent while its first runs
  await rejected("run-1b", RejectReason.AGENT_BUSY);
  assign(stream, "run-2", "agent-2", "exec sleep 60");
  await running("run-2");
  assign(stream, "run-3", "agent-3", "exec sleep 60"); // the capacity is 2
  await rejected("run-3", RejectReason.CAPACITY);
});

test("a heartbeat goes ahead of a burst of run messages the replica is slow to read, and its acknowledgement renews contact", async (t) => {
  const replica = await new Replica("replica-burst").start();
  const { worker, logs } = await startWorker(t, [replica]);
  let heartbeats = 0; // the worker's heartbeats are numbered 1, 2, ... on its one stream
  const heartbeat = worker.heartbeat.bind(worker);
  worker.heartbeat = () => (heartbeats++, heartbeat());
  const stream = await replica.stream(1);
  await waitFor(() => stream.of("heartbeat").length, "a first heartbeat");

  replica.pauseReading();
  const paused = performance.now();
  // Far more than the stream's flow-control windows hold: most of the answers (a 2 KB rejection
  // each, naming the runtime) wait in the worker's queue.
  const BURST = 2000;
  const runtime = "x".repeat(2000);
  for (let i = 0; i < BURST; i++) {
    stream.push({ case: "assign", value: { runId: `run-${i}`, agentId: `agent-${i}`, config: { runtime, command: ["true"] } } });
  }
  await waitFor(() => logs.filter((l) => l.msg === "run rejected").length === BURST, "the burst's rejections to be queued");
  const queuedBehind = heartbeats; // the heartbeats numbered above this were queued behind the whole burst
  await waitFor(() => heartbeats > queuedBehind + 5, "heartbeats queued behind the burst");
  replica.resumeReading();

  const beat = await waitFor(() => {
    const i = stream.received.findIndex((m) => m.message.case === "heartbeat" && m.message.value.seq > queuedBehind);
    return i >= 0 && i;
  }, "a heartbeat queued behind the burst");
  const overtaken = stream.received.slice(0, beat).filter((m) => m.message.case === "update").length;
  assert.ok(overtaken < BURST / 3, `the heartbeat was written after ${overtaken} of the burst's ${BURST} messages`);
  // Contact counts from the heartbeat's write, not from the pause (Connection is private: read here
  // only to see its contact).
  const connection = worker.connections[0];
  await waitFor(() => connection.silence(replica.id, performance.now()) < performance.now() - paused, "contact renewed");
});

test("CLEANUP of a worktree is refused while its agent's run runs in it, and done once the run has ended", async (t) => {
  const replica = await new Replica("replica-cleanup").start();
  replica.ackRun = (u) => u.state !== RunState.KILLED; // the ended run stays held, unacknowledged
  const { assign, repo } = await startWorker(t, [replica]);
  const stream = await replica.stream(1);
  const worktreeOf = async (runId, agentId) => {
    assign(stream, runId, agentId, "exec sleep 60");
    await waitFor(() => stream.updates(runId).some((u) => u.state === RunState.RUNNING), `${runId} runs`);
    return stream.updates(runId).find((u) => u.worktree).worktree;
  };
  const cleanup = async (id, agentId, worktree) => {
    stream.push({ case: "control", value: { runId: id, agentId, action: ControlAction.CLEANUP, repo, worktree } });
    return waitFor(() => stream.of("ack").find((a) => a.runId === id), `the answer to ${id}`);
  };
  const busy = await worktreeOf("run-c", "agent-c");
  await worktreeOf("run-other", "agent-other");

  const refused = await cleanup("cleanup-1", "agent-c", busy);
  assert.deepEqual([refused.ok, refused.error], [false, `run run-c still runs in ${busy}`]);
  assert.ok(existsSync(busy));

  stream.push({ case: "control", value: { runId: "run-c", agentId: "agent-c", action: ControlAction.KILL, reason: "test" } });
  await waitFor(() => stream.updates("run-c").some((u) => u.state === RunState.KILLED), "run-c to be killed");
  const done = await cleanup("cleanup-2", "agent-c", busy);
  assert.deepEqual([done.ok, done.error], [true, ""]);
  assert.ok(!existsSync(busy));
  // The agent's next run (run-c ended, still held) runs there in turn.
  assert.equal(await worktreeOf("run-c2", "agent-c"), busy);
  const again = await cleanup("cleanup-3", "agent-c", busy);
  assert.deepEqual([again.ok, again.error], [false, `run run-c2 still runs in ${busy}`]);
});
