/// <reference types="node" />
// One run (services/godel_server/worker/run.py): worktree, sandbox, the command, pause, resume,
// kill, timeout and limits, log batching and its state updates.
import { spawn } from "node:child_process";
import { accessSync, constants as fsConstants } from "node:fs";
import { constants } from "node:os";
import { isAbsolute, join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { LogLevel } from "../gen/godel/v1/agent_pb.js";
import {
  ConnectRequestSchema,
  RunLogLineSchema,
  RunState,
  type ConnectRequest,
  type RunAssignment,
  type RunLogLine,
  type RunStatus,
} from "../gen/godel/v1/worker_service_pb.js";
import { renderArgv } from "./command.js";
import { OWNER_VARIABLE } from "./leftovers.js";
import { RunOutbox, TERMINAL } from "./outbox.js";
import { describeExit, signalGroup, watch } from "./procs.js";
import { Refused, type Sandbox, which } from "./sandbox.js";
import { gitIdentity, type Worktree } from "./worktrees.js";
import type { Worker } from "./worker.js";

const LOG_FLUSH_MS = 100;
const LOG_FLUSH_LINES = 200;
const RESULT_BYTES = 4096;
const MAX_LINE = 16 * 1024;

interface Outcome {
  success: boolean;
  result: string;
  error: string;
  exitCode?: number;
}

export class Run {
  readonly id: string;
  readonly agentId: string;
  readonly branch: string;
  state = RunState.STARTING;
  pid = 0;
  lastProgress = timestampNow();
  commits: string[] = [];
  wt?: Worktree;
  readonly outbox = new RunOutbox();
  owner?: unknown;
  ownerReplica = "";
  private finalSent = false;
  private paused: boolean;
  private started = false;
  private readonly pgids = new Set<number>();
  private lines: RunLogLine[] = [];
  private flushTimer?: NodeJS.Timeout;
  /** Why the run was stopped ("" while it was not). */
  stopReason = "";
  private stopDetail = "";
  private timedOut = 0;
  readonly done: Promise<void>;
  private resolveDone!: () => void;

  constructor(
    private readonly w: Worker,
    readonly a: RunAssignment,
  ) {
    this.id = a.runId;
    this.agentId = a.agentId;
    this.branch = a.branch || `godel/${a.agentId}`;
    this.paused = a.startPaused;
    this.done = new Promise((ok) => (this.resolveDone = ok));
  }

  get finished(): boolean {
    return TERMINAL.has(this.state);
  }

  status(): RunStatus {
    return { $typeName: "godel.v1.RunStatus", runId: this.id, agentId: this.agentId, state: this.state, pid: this.pid, lastProgress: this.lastProgress };
  }

  updateMessage(state: RunState, error = "", result = "", exitCode?: number): ConnectRequest {
    return create(ConnectRequestSchema, {
      message: {
        case: "update",
        value: { runId: this.id, agentId: this.agentId, state, commits: [...this.commits], error, result, exitCode, time: timestampNow(), worktree: this.wt?.path ?? "", branch: this.wt?.branch ?? "" },
      },
    });
  }

  update(state: RunState, error = "", result = "", exitCode?: number): void {
    if (this.finalSent) return;
    this.flush();
    this.state = state;
    this.lastProgress = timestampNow();
    this.finalSent = TERMINAL.has(state);
    this.w.sendForRun(this, this.updateMessage(state, error, result, exitCode));
    this.w.log("INFO", "run state", { run_id: this.id, agent_id: this.agentId, state: RunState[state], error });
  }

  log(message: string, stream = "runtime", level = LogLevel.INFO): void {
    this.lines.push(create(RunLogLineSchema, { time: timestampNow(), level, stream, message }));
    this.lastProgress = timestampNow();
    if (this.lines.length >= LOG_FLUSH_LINES) this.flush();
    else this.flushTimer ??= setTimeout(() => this.flush(), LOG_FLUSH_MS);
  }

  private flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.lines.length === 0) return;
    const lines = this.lines;
    this.lines = [];
    this.w.sendForRun(this, create(ConnectRequestSchema, { message: { case: "logs", value: { runId: this.id, agentId: this.agentId, lines } } }));
  }

  // ------------------------------------------------------------------ controls

  setPaused(paused: boolean): string {
    if (this.finished) return `run already finished (${RunState[this.state]})`;
    if (this.paused === paused) return "";
    this.paused = paused;
    for (const g of this.pgids) signalGroup(g, paused ? "SIGSTOP" : "SIGCONT");
    if (this.started) this.update(paused ? RunState.PAUSED : RunState.RUNNING);
    return "";
  }

  /** Kills the run's process tree; reason: "kill", "timeout", "limit" (detail: which), "shutdown"
   * or "lease" (detail: the owner the worker lost contact with). */
  stop(reason: string, detail = ""): string {
    if (this.finished) return `run already finished (${RunState[this.state]})`;
    if (!this.stopReason) [this.stopReason, this.stopDetail] = [reason, detail];
    for (const g of this.pgids) {
      signalGroup(g, "SIGCONT");
      signalGroup(g, "SIGKILL");
    }
    return "";
  }

  // ------------------------------------------------------------------ execution

  async execute(): Promise<void> {
    let outcome: Outcome | undefined;
    let error = "";
    try {
      this.update(RunState.STARTING);
      this.wt = await this.w.worktrees.create(this.a.repo, this.agentId, this.branch, this.a.reuseWorktree);
      this.update(RunState.WORKTREE_READY);
      if (!this.stopReason) outcome = await this.runCommand(this.wt);
    } catch (err) {
      if (err instanceof Refused) {
        error = `safety: ${err.message}`;
        this.log(error, "runtime", LogLevel.ERROR);
      } else error = (err as Error).message;
    } finally {
      for (const g of this.pgids) signalGroup(g, "SIGKILL");
      this.pgids.clear();
      this.w.pids.write(this.id, []);
    }
    await this.finish(outcome, error);
    this.resolveDone();
  }

  private async runCommand(wt: Worktree): Promise<Outcome> {
    const sandbox = this.w.sandboxes.forRun(this.id, this.a.config!, wt);
    if (!sandbox.bwrap) this.log("sandbox: OFF on this worker (GODEL_SANDBOX=off): this agent runs with the worker's rights", "runtime", LogLevel.WARN);
    for (const note of sandbox.policy.notes) this.log(note, "runtime", LogLevel.WARN);
    let timer: NodeJS.Timeout | undefined;
    if (sandbox.policy.wallSeconds > 0) {
      let active = 0;
      timer = setInterval(() => {
        if (!this.paused) active += 50;
        if (active >= sandbox.policy.wallSeconds * 1000) {
          clearInterval(timer);
          this.timedOut = sandbox.policy.wallSeconds;
          this.log(`timed out after ${sandbox.policy.wallSeconds}s; killing the run`, "runtime", LogLevel.ERROR);
          this.stop("timeout");
        }
      }, 50);
    }
    try {
      return await this.command(sandbox, wt);
    } finally {
      clearInterval(timer);
    }
  }

  private childEnv(sandbox: Sandbox, wt: Worktree): Record<string, string> {
    return {
      ...sandbox.baseEnv(),
      GIT_TERMINAL_PROMPT: "0",
      ...this.a.config?.env,
      GODEL_AGENT_ID: this.agentId,
      GODEL_RUN_ID: this.id,
      GODEL_TASK: this.a.task,
      GODEL_WORKTREE: wt.path,
      GODEL_SESSION_ID: this.a.sessionId,
      GODEL_MODEL: this.a.model,
      ...gitIdentity(this.agentId),
    };
  }

  private async command(sandbox: Sandbox, wt: Worktree): Promise<Outcome> {
    const template = this.a.config?.command ?? [];
    if (template.length === 0) return { success: false, result: "", error: "config.command is empty" };
    const argv = renderArgv(template, { task: this.a.task, worktree: wt.path, agent_id: this.agentId, model: this.a.model });
    const env = this.childEnv(sandbox, wt);
    if (!executable(argv[0]!, wt.path, env["PATH"] ?? "")) {
      return { success: false, result: "", error: `cannot start '${argv[0]}': command not found or not executable` };
    }
    const [full, procEnv] = sandbox.command(argv, env, wt.path);
    const setpriv = which("setpriv", "/usr/bin:/bin:/usr/sbin:/sbin");
    const launch = setpriv ? [setpriv, "--pdeathsig", "KILL", "--", ...full] : full;
    // The owner mark: the reaper, or the next worker on this root, kills what the worker left.
    const marked = { ...procEnv, [OWNER_VARIABLE]: this.w.owner };
    const child = spawn(launch[0]!, launch.slice(1), { cwd: wt.path, env: marked, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    const spawned = await new Promise<Error | undefined>((ok) => {
      child.once("spawn", () => ok(undefined));
      child.once("error", (err) => ok(err));
    });
    if (spawned) return { success: false, result: "", error: `cannot start '${argv[0]}': ${spawned.message}` };
    const pgid = child.pid!;
    this.addGroup(pgid);
    let tail = Buffer.alloc(0);
    const pump = (stream: NodeJS.ReadableStream, name: string, level: LogLevel, keep: boolean) =>
      new Promise<void>((ok) => {
        let partial = Buffer.alloc(0);
        const emit = (line: Buffer) => this.log(line.subarray(0, MAX_LINE).toString("utf8").replace(/\r$/, ""), name, level);
        stream.on("data", (chunk: Buffer) => {
          if (keep) tail = Buffer.concat([tail, chunk]).subarray(-RESULT_BYTES);
          let data = Buffer.concat([partial, chunk]);
          for (let i = data.indexOf(10); i >= 0; i = data.indexOf(10)) {
            emit(data.subarray(0, i));
            data = data.subarray(i + 1);
          }
          partial = data.length > MAX_LINE ? (emit(data), Buffer.alloc(0)) : data;
        });
        stream.on("close", () => {
          if (partial.length) emit(partial);
          ok();
        });
      });
    const readers = Promise.all([pump(child.stdout!, "stdout", LogLevel.INFO, true), pump(child.stderr!, "stderr", LogLevel.WARN, false)]);
    const limits = sandbox.policy.limits;
    const unwatch =
      limits.memoryMb || limits.processes || limits.cpuSeconds
        ? watch(pgid, limits, sandbox.overhead, (reason) => {
            this.log(`sandbox: ${reason}; stopping the run`, "runtime", LogLevel.ERROR);
            this.stop("limit", reason);
          })
        : () => undefined;
    this.pid = pgid;
    this.started = true;
    this.update(this.paused ? RunState.PAUSED : RunState.RUNNING);
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((ok) => child.once("exit", (c, s) => ok([c, s])));
    unwatch();
    signalGroup(pgid, "SIGKILL"); // what the leader left in its group: the pipes close
    await Promise.race([readers, new Promise((ok) => setTimeout(ok, 1000))]);
    this.pgids.delete(pgid);
    this.w.pids.write(this.id, this.pgids);
    const raw = signal ? -(osSignal(signal)) : (code ?? 0);
    const exit = sandbox.exitCode(raw);
    const result = tail.toString("utf8");
    if (exit === 0) return { success: true, result, error: "", exitCode: 0 };
    return { success: false, result, error: describeExit(exit), exitCode: exit };
  }

  private addGroup(pgid: number): void {
    this.pgids.add(pgid);
    this.w.pids.write(this.id, this.pgids);
    if (this.stopReason) signalGroup(pgid, "SIGKILL");
    else if (this.paused) signalGroup(pgid, "SIGSTOP");
  }

  private async finish(outcome: Outcome | undefined, error: string): Promise<void> {
    if (this.wt) {
      try {
        this.commits = await this.w.worktrees.commits(this.wt);
      } catch (err) {
        this.w.log("WARN", "cannot list commits", { run_id: this.id, error: (err as Error).message });
      }
    }
    let state = RunState.FAILED;
    if (this.stopReason === "kill") [state, error] = [RunState.KILLED, this.stopDetail];
    else if (this.stopReason === "timeout") error = `timed out after ${this.timedOut}s`;
    else if (this.stopReason === "limit") error = `sandbox: ${this.stopDetail}`;
    else if (this.stopReason === "shutdown") [state, error] = [RunState.LOST, "worker shutting down"];
    else if (this.stopReason === "lease") [state, error] = [RunState.LOST, this.stopDetail];
    else if (error) state = RunState.FAILED;
    else if (outcome?.success) state = RunState.SUCCEEDED;
    else error = outcome ? outcome.error : "the runtime ended without an outcome";
    this.update(state, error, outcome?.result ?? "", outcome?.exitCode);
  }
}

function osSignal(name: NodeJS.Signals): number {
  return constants.signals[name] ?? 1;
}

function executable(program: string, cwd: string, path: string): boolean {
  const check = (p: string) => {
    try {
      accessSync(p, fsConstants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  if (program.includes("/")) return check(isAbsolute(program) ? program : join(cwd, program));
  const found = which(program, path);
  return found !== undefined && check(found);
}
