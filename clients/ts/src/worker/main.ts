#!/usr/bin/env node
/// <reference types="node" />
// godel-worker-ts: a Godel worker in TypeScript (Node 20+). It connects to the agent-service
// replicas and runs "command" agents in git worktrees, each in a bubblewrap sandbox, and
// advertises language=typescript (agents ask for it with config.workerSelector). Settings are
// the Python worker's GODEL_* variables. SIGTERM/SIGINT stop it; exit 2 when agents cannot be
// sandboxed here.
import { loadConfig } from "./config.js";
import { Worker } from "./worker.js";

const stop = new AbortController();
process.once("SIGTERM", () => stop.abort());
process.once("SIGINT", () => stop.abort());
try {
  await new Worker(loadConfig()).run(stop.signal);
} catch (err) {
  process.stderr.write(`godel-worker-ts: the worker refuses to start: ${(err as Error).message}\n`);
  process.exit(2);
}
