/// <reference types="node" />
// Process groups of runs (services/godel_server/worker/procs.py, limits.py): each run's process
// leads its own group (detached), dies with the worker (setpriv --pdeathsig KILL; what the death
// signal misses, the reaper kills: reaper.ts), is recorded in <worktree root>/.pids/<worker
// pid>/<run id> for a later worker to kill, and is watched against the run's limits by sampling
// its tree in /proc.
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { alive, environHas, processIds, statFields } from "./leftovers.js";

export const MIB = 1024 * 1024;

export interface Limits {
  memoryMb: number;
  processes: number;
  cpuSeconds: number;
}

export function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  if (pgid <= 1) return;
  try {
    process.kill(-pgid, signal);
  } catch {
    // the group is gone
  }
}

export function describeExit(code: number): string {
  if (code < 0) {
    const names: Record<number, string> = { 9: "SIGKILL", 15: "SIGTERM", 2: "SIGINT", 11: "SIGSEGV", 6: "SIGABRT", 1: "SIGHUP", 24: "SIGXCPU" };
    return `killed by ${names[-code] ?? `signal ${-code}`}`;
  }
  return `exited with code ${code}`;
}

export class PidFiles {
  readonly base: string;
  readonly dir: string;

  constructor(root: string) {
    this.base = join(root, ".pids");
    this.dir = join(this.base, String(process.pid));
  }

  write(runId: string, pgids: Iterable<number>): void {
    const list = [...pgids];
    const path = join(this.dir, runId);
    if (list.length === 0) {
      rmSync(path, { force: true });
      return;
    }
    mkdirSync(this.dir, { recursive: true });
    writeFileSync(`${path}.tmp`, list.map((p) => `${p}\n`).join(""));
    renameSync(`${path}.tmp`, path);
  }

  /** Kills the groups dead workers on this root left running (those carrying the run's GODEL_RUN_ID). */
  killLeftovers(): number[] {
    const killed: number[] = [];
    if (!existsSync(this.base)) return killed;
    for (const name of readdirSync(this.base)) {
      const dir = join(this.base, name);
      if (dir === this.dir || alive(Number(name))) continue;
      for (const run of readdirSync(dir)) {
        const file = join(dir, run);
        if (!run.endsWith(".tmp")) {
          const marker = `GODEL_RUN_ID=${run}`;
          for (const line of readFileSync(file, "utf8").split(/\s+/).filter(Boolean)) {
            const pgid = Number(line);
            if (!(pgid > 1)) continue;
            const members = processIds().filter((p) => {
              const f = statFields(p);
              return f.length >= 3 && f[0] !== "Z" && Number(f[2]) === pgid;
            });
            if (members.some((p) => environHas(p, marker))) {
              signalGroup(pgid, "SIGKILL");
              killed.push(pgid);
            }
          }
        }
        rmSync(file, { force: true });
      }
      rmSync(dir, { recursive: true, force: true });
    }
    return killed;
  }
}

function children(pid: number): number[] {
  const found: number[] = [];
  let tasks: string[] = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return found;
  }
  for (const t of tasks) {
    try {
      found.push(...readFileSync(`/proc/${pid}/task/${t}/children`, "latin1").split(/\s+/).filter(Boolean).map(Number));
    } catch {
      // gone
    }
  }
  return found;
}

const TICKS = 100; // USER_HZ
const PAGE = 4096;

export function treeUsage(root: number): { processes: number; rssBytes: number; cpuSeconds: number } {
  const seen = new Set<number>();
  const todo = [root];
  let processes = 0;
  let rss = 0;
  let ticks = 0;
  while (todo.length) {
    const pid = todo.pop()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    const f = statFields(pid);
    if (f.length < 22) continue;
    processes++;
    ticks += f.slice(11, 15).reduce((s, x) => s + Number(x), 0);
    rss += Number(f[21]);
    todo.push(...children(pid));
  }
  return { processes, rssBytes: rss * PAGE, cpuSeconds: ticks / TICKS };
}

export function overLimit(u: ReturnType<typeof treeUsage>, l: Limits, overhead: number): string | undefined {
  if (l.memoryMb && u.rssBytes > l.memoryMb * MIB) {
    return `memory limit exceeded: ${(u.rssBytes / MIB).toFixed(0)} MiB resident, limit ${l.memoryMb} MiB (sandbox.limits.max_memory_mb)`;
  }
  const p = u.processes - overhead;
  if (l.processes && p >= l.processes) return `process limit reached: ${p} processes, limit ${l.processes} (sandbox.limits.max_processes)`;
  if (l.cpuSeconds && u.cpuSeconds > l.cpuSeconds) {
    return `CPU time limit exceeded: ${u.cpuSeconds.toFixed(1)} s, limit ${l.cpuSeconds} s (sandbox.limits.max_cpu_seconds)`;
  }
  return undefined;
}

// One sampler walks every watched tree per pass: a timer per run was ten thousand synchronous /proc
// walks a second on the event loop with a thousand agents, and the worker's heartbeats and answers
// to kills starved until its run lease lapsed. A pass yields to the event loop every TREES_PER_SLICE
// trees, and a pass that took long spaces the passes out, so sampling takes at most SAMPLING_SHARE
// of the time (services/godel_server/worker/limits.py has the same sampler).
const WATCH_MS = 100;
export const SAMPLING_SHARE = 0.25;
const TREES_PER_SLICE = 32;

interface Watched {
  root: number;
  limits: Limits;
  overhead: number;
  stop: (reason: string) => void;
}

const watched = new Set<Watched>();
let nextPass: NodeJS.Timeout | undefined;
let passing = false;

/** How long the sampler waits after a pass that kept the event loop busy for `elapsedMs`. */
export function pauseAfter(elapsedMs: number): number {
  return Math.max(WATCH_MS, elapsedMs * (1 / SAMPLING_SHARE - 1));
}

/** Takes `w` out of the sampler when its tree has no process left or is over a limit (then stops it). */
function sample(w: Watched): void {
  const usage = treeUsage(w.root);
  const reason = usage.processes === 0 ? undefined : overLimit(usage, w.limits, w.overhead);
  if (usage.processes === 0 || reason) watched.delete(w);
  if (reason) w.stop(reason);
}

async function pass(): Promise<void> {
  nextPass = undefined;
  passing = true;
  let busyMs = 0;
  let sliceStart = performance.now();
  let inSlice = 0;
  try {
    for (const w of [...watched]) {
      if (inSlice === TREES_PER_SLICE) {
        busyMs += performance.now() - sliceStart;
        await new Promise((ok) => setImmediate(ok));
        sliceStart = performance.now();
        inSlice = 0;
      }
      if (!watched.has(w)) continue; // unwatched while the pass yielded
      inSlice++;
      sample(w);
    }
  } finally {
    busyMs += performance.now() - sliceStart;
    passing = false;
    if (watched.size) nextPass = setTimeout(pass, pauseAfter(busyMs));
  }
}

/** Samples the tree (with every other watched tree) until it is over a limit (then calls stop) or
 * the returned function is called. */
export function watch(root: number, l: Limits, overhead: number, stop: (reason: string) => void): () => void {
  const w: Watched = { root, limits: l, overhead, stop };
  watched.add(w);
  if (!passing && !nextPass) nextPass = setTimeout(pass, WATCH_MS);
  return () => {
    watched.delete(w);
    if (!watched.size && nextPass) {
      clearTimeout(nextPass); // an empty sampler keeps no timer, so Node can exit
      nextPass = undefined;
    }
  };
}
