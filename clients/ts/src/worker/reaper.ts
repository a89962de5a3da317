/// <reference types="node" />
// The reaper: a worker's runs die with it, however it dies (services/godel_server/worker/
// reaper.py, clients/go/worker/reaper.go). A run's process gets the death signal (setpriv
// --pdeathsig KILL) and bwrap --die-with-parent passes it on, but not at every instant: the
// sandbox's inner bwrap (PID 1 of the sandbox) asks for its own death signal only once it has set
// the sandbox up, so a worker killed in those milliseconds killed the outer bwrap only, and the
// agent ran on with no worker (unsandboxed, a run's grandchildren have no death signal at all).
// So the worker starts a small Node process (reap.ts, which loads leftovers.ts alone, not the
// gRPC client) in a session of its own, so that a signal to the worker's process group spares it,
// and holds alone the write end of its stdin: libuv opens it close-on-exec, so git, bwrap and the
// runs do not inherit it. At end of file (the worker is gone) the reaper kills the process groups
// carrying the worker's owner mark; a worker that stops says so first, and the reaper just ends.
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { ownerMark } from "./leftovers.js";

export const STOPPED = "stopped\n";
// How long the reaper waits for a worker that closed the pipe to exit before it sweeps anyway (a
// live owner's processes are left alone then).
export const EXIT_WAIT_MS = 10_000;
export const REAPER_SCRIPT = fileURLToPath(new URL("./reap.js", import.meta.url));

export class Reaper {
  private readonly child: ChildProcess;
  private ended = false;

  /** Starts the reaper of this process's runs on `root`; `warn` hears of its unexpected end. */
  constructor(root: string, warn: (msg: string, fields: Record<string, unknown>) => void) {
    const [worker = "", started = ""] = ownerMark(root).split(":", 2);
    this.child = spawn(process.execPath, [REAPER_SCRIPT, worker, started, root], { stdio: ["pipe", "ignore", "inherit"], detached: true });
    const lost = "a worker killed now may leave its runs running until the next worker starts on its worktree root";
    this.child.once("error", (err) => warn(`cannot start the reaper of runs: ${lost}`, { error: err.message }));
    this.child.once("exit", (code, signal) => {
      if (!this.ended) warn(`the reaper of runs ended: ${lost}`, { code, signal });
    });
    this.child.stdin!.on("error", () => undefined); // EPIPE: the reaper is gone (warned on its exit)
    this.child.unref();
    (this.child.stdin as unknown as { unref(): void }).unref();
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** The worker stopped its runs: the reaper ends without killing anything. */
  stopped(): void {
    if (this.ended) return;
    this.ended = true;
    this.child.stdin!.end(STOPPED);
  }
}
