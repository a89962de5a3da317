// A TypeScript worker process (dist/worker/main.js) killed with SIGKILL leaves none of its runs
// running, with no worker started after it: its reaper (dist/worker/reap.js) kills what the death
// signal misses (unsandboxed, a run's grandchildren; sandboxed, the inner bwrap of a sandbox still
// being set up). A worker that stops ends its reaper, which kills nothing.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, closeSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, constants } from "node:fs";
import http2 from "node:http2";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { ConnectResponseSchema, RunState, WorkerService } from "../dist/gen/godel/v1/worker_service_pb.js";
import { waitFor } from "./waits.mjs";

const DIST = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "worker");
const BWRAP = "/usr/bin/bwrap";

/** A fake agent-service replica: welcomes the worker, acknowledges its heartbeats, keeps the run
 * updates it sends, and assigns runs. */
class Replica {
  updates = [];
  #out = [];
  #wake;
  #server;
  #sessions = new Set();

  async start() {
    const handler = connectNodeAdapter({ routes: (router) => router.service(WorkerService, { connect: (requests) => this.#connect(requests) }) });
    this.#server = http2.createServer(handler);
    this.#server.on("session", (s) => this.#sessions.add(s));
    await new Promise((ok) => this.#server.listen(0, "127.0.0.1", ok));
    this.address = `127.0.0.1:${this.#server.address().port}`;
    return this;
  }

  async stop() {
    this.closed = true;
    this.#wake?.();
    for (const s of this.#sessions) s.destroy();
    await new Promise((ok) => this.#server.close(ok));
  }

  #push(message) {
    this.#out.push(create(ConnectResponseSchema, { message }));
    this.#wake?.();
  }

  assign(runId, argv, repo) {
    this.#push({ case: "assign", value: { runId, agentId: `agent-${runId}`, sessionId: runId, task: "test", config: { runtime: "command", command: argv }, repo, branch: `godel/agent-${runId}` } });
  }

  #connect(requests) {
    void (async () => {
      try {
        for await (const { message } of requests) {
          if (message.case === "hello") {
            this.#push({ case: "welcome", value: { replicaId: "replica-reaper", heartbeatIntervalMs: 200, runLeaseMs: 0 } });
            this.welcomed = true;
          }
          else if (message.case === "heartbeat") this.#push({ case: "heartbeatAck", value: { seq: message.value.seq } });
          else if (message.case === "update") this.updates.push(message.value);
        }
      } catch {
        // the stream ended
      }
    })();
    const self = this;
    return (async function* () {
      while (!self.closed) {
        const next = self.#out.shift();
        if (next) yield next;
        else await new Promise((ok) => (self.#wake = ok));
      }
    })();
  }
}

function stat(pid) {
  try {
    const raw = readFileSync(`/proc/${pid}/stat`, "latin1");
    return { comm: raw.slice(raw.indexOf("(") + 1, raw.lastIndexOf(")")), fields: raw.slice(raw.lastIndexOf(")") + 1).trim().split(/\s+/) };
  } catch {
    return undefined;
  }
}

const alive = (pid) => (stat(pid)?.fields[0] ?? "Z") !== "Z";
const pids = () => readdirSync("/proc").filter((n) => /^\d+$/.test(n)).map(Number);

/** Live processes carrying a worker's owner mark for worktree root `root`. */
function markedFor(root) {
  return pids().filter((pid) => {
    try {
      const env = readFileSync(`/proc/${pid}/environ`, "latin1").split("\0");
      return env.some((e) => e.startsWith("GODEL_WORKER=") && e.endsWith(`:${root}`)) && alive(pid);
    } catch {
      return false;
    }
  });
}

/** The reapers of the worker `worker` (live processes running reap.js with its pid). */
function reapersOf(worker) {
  const script = join(DIST, "reap.js");
  return pids().filter((pid) => {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, "latin1").split("\0");
      return argv[1] === script && argv[2] === String(worker) && alive(pid);
    } catch {
      return false;
    }
  });
}

function kill(pid, signal = "SIGKILL") {
  try {
    process.kill(pid, signal);
  } catch {
    // gone
  }
}

/** A worker process on `replica` with worktrees under a temp dir, and its cleanup: whatever is
 * left marked for its root, its reapers and its process group are killed after the test. */
async function startWorker(t, replica, env = {}) {
  const dir = mkdtempSync(join(tmpdir(), "godel-ts-reaper-"));
  const root = join(dir, "worktrees");
  const repo = join(dir, "repo");
  execFileSync("git", ["init", "-q", repo]);
  execFileSync("git", ["-C", repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init"]);
  const log = openSync(join(dir, "worker.log"), "w");
  const worker = spawn(process.execPath, [join(DIST, "main.js")], {
    env: { ...process.env, GODEL_WORKER_CONNECT: replica.address, GODEL_WORKER_ID: "ts-reaper-test", GODEL_HOME: join(dir, "home"), GODEL_WORKTREE_ROOT: root, ...env },
    stdio: ["ignore", "ignore", log],
    detached: true,
  });
  closeSync(log);
  const exited = new Promise((ok) => worker.once("exit", (code, signal) => ok({ code, signal })));
  const reapers = new Set();
  t.after(async () => {
    for (const pid of reapersOf(worker.pid)) reapers.add(pid);
    kill(-worker.pid);
    await exited;
    for (const pid of [...reapers, ...markedFor(root)]) kill(pid);
    await replica.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await waitFor(() => replica.welcomed, "the worker's hello");
  const reaper = await waitFor(() => reapersOf(worker.pid)[0], "the worker's reaper");
  reapers.add(reaper);
  const running = (runId) => waitFor(() => replica.updates.some((u) => u.runId === runId && u.state === RunState.RUNNING), `${runId} to run`);
  return { worker, exited, reaper, root, repo, dir, running, log: () => readFileSync(join(dir, "worker.log"), "utf8") };
}

test("a worker killed with SIGKILL leaves none of its unsandboxed run's processes running", async (t) => {
  const replica = await new Replica().start();
  const w = await startWorker(t, replica, { GODEL_SANDBOX: "off" });
  replica.assign("run-1", ["sh", "-c", "sleep 600 & sleep 600"], w.repo);
  await w.running("run-1");
  // sh and its two sleeps; the sleeps have no death signal of their own.
  const members = await waitFor(() => (markedFor(w.root).length >= 3 ? markedFor(w.root) : undefined), "the run's three processes");
  w.worker.kill("SIGKILL");
  await w.exited;
  await waitFor(() => !members.some(alive), "the run's processes to die with their worker");
  assert.deepEqual(markedFor(w.root), []);
});

test("a worker killed while bwrap sets a sandbox up leaves nothing of it running", async (t) => {
  const replica = await new Replica().start();
  const dir = mkdtempSync(join(tmpdir(), "godel-ts-held-bwrap-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const fifo = join(dir, "release");
  const held = join(dir, "held-bwrap");
  execFileSync("mkfifo", [fifo]);
  // Holds the sandbox of a `sleep 600` in its setup (--block-fd: after the namespaces, before the
  // command), where the inner bwrap has not asked for its death signal yet, until a byte comes
  // through the FIFO; the worker's start-up probe goes straight through.
  writeFileSync(held, `#!/bin/sh\ncase "$*" in\n  *"sleep 600"*) exec 9<>"${fifo}"; exec ${BWRAP} --block-fd 9 "$@" ;;\n  *) exec ${BWRAP} "$@" ;;\nesac\n`);
  chmodSync(held, 0o755);
  const w = await startWorker(t, replica, { GODEL_SANDBOX: "bwrap", GODEL_SANDBOX_BWRAP: held });
  replica.assign("run-1", ["sleep", "600"], w.repo);
  // The outer bwrap and the inner one, waiting in the sandbox's setup.
  const bwraps = () => markedFor(w.root).filter((pid) => stat(pid)?.comm === "bwrap");
  await waitFor(() => bwraps().length >= 2, "the inner bwrap");
  const outer = Math.min(...bwraps());
  w.worker.kill("SIGKILL");
  await w.exited;
  await waitFor(() => !alive(outer), "the outer bwrap to die with the worker");
  try {
    const release = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
    writeFileSync(release, "x");
    closeSync(release);
  } catch (err) {
    if (err.code !== "ENXIO") throw err; // ENXIO: no reader, the inner bwrap is gone already
  }
  await waitFor(() => markedFor(w.root).length === 0, "the sandbox to die with its worker");
});

test("a worker that stops ends its reaper, which kills nothing", async (t) => {
  const replica = await new Replica().start();
  const w = await startWorker(t, replica, { GODEL_SANDBOX: "off" });
  replica.assign("run-1", ["sleep", "600"], w.repo);
  await w.running("run-1");
  // A process marked as the worker's that the worker does not know of: a reaper that swept after
  // the worker's end would kill it.
  const [mark] = readFileSync(`/proc/${markedFor(w.root)[0]}/environ`, "latin1").split("\0").filter((e) => e.startsWith("GODEL_WORKER="));
  const decoy = spawn("sleep", ["600"], { env: { ...process.env, GODEL_WORKER: mark.slice("GODEL_WORKER=".length) }, detached: true, stdio: "ignore" });
  t.after(() => kill(decoy.pid));
  w.worker.kill("SIGTERM");
  assert.deepEqual(await w.exited, { code: 0, signal: null }, w.log());
  await waitFor(() => !alive(w.reaper), "the reaper to end with its worker");
  assert.ok(alive(decoy.pid), "the reaper of a worker that stopped killed nothing");
  assert.deepEqual(markedFor(w.root), [decoy.pid]);
});
