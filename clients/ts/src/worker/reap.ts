/// <reference types="node" />
// The reaper process of a worker (reaper.ts starts it): argv is the worker's pid, its start time
// and its worktree root; its stdin is a pipe that only the worker holds open for writing. "stopped"
// there, then end of file: the worker stopped its runs, nothing to do. End of file without it: the
// worker is gone, whatever killed it; once it has exited, kill what it left running.
import { killMarkedLeftovers, running } from "./leftovers.js";
import { EXIT_WAIT_MS, STOPPED } from "./reaper.js";

const PASSES = 10; // a group killed whole forks no more: a second pass finds nothing, as a rule
const [worker = "", started = "", root = ""] = process.argv.slice(2);

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

const chunks: Buffer[] = [];
for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
if (Buffer.concat(chunks).toString("utf8") !== STOPPED && root) {
  const deadline = performance.now() + EXIT_WAIT_MS;
  while (running(worker, started) && performance.now() < deadline) await sleep(5);
  const killed: number[] = [];
  for (let pass = 0; pass < PASSES; pass++) {
    const now = killMarkedLeftovers(root);
    if (now.length === 0) break;
    killed.push(...now.filter((p) => !killed.includes(p)));
    await sleep(10);
  }
  if (killed.length) {
    const line = { time: new Date().toISOString(), level: "WARN", msg: "the worker is gone: its reaper killed what its runs left running", worker_pid: Number(worker), pgids: killed };
    process.stderr.write(`${JSON.stringify(line)}\n`);
  }
}
