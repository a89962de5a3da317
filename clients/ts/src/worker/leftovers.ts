/// <reference types="node" />
// What a worker that is gone left running, found by the owner mark in the processes' environment
// (services/godel_server/worker/procs.py kill_leftovers; the Go worker's reaper.go). Every run's
// process carries GODEL_WORKER=<worker pid>:<its start time>:<worktree root> (for a sandbox:
// bwrap's own environment, outside the sandbox). Only node:fs here: the reaper (reap.ts) loads
// this module alone, not the worker's gRPC client.
import { readFileSync, readdirSync } from "node:fs";
import { resolve } from "node:path";

export const OWNER_VARIABLE = "GODEL_WORKER";
const OWNER_PREFIX = `${OWNER_VARIABLE}=`;
const START_TIME = 19; // in statFields: clock ticks after boot; with the pid, names one process for good

/** The fields of /proc/<pid>/stat after "(comm)": state [0], ppid [1], pgrp [2], session [3], ... */
export function statFields(pid: number): string[] {
  try {
    const raw = readFileSync(`/proc/${pid}/stat`, "latin1");
    return raw.slice(raw.lastIndexOf(")") + 1).trim().split(/\s+/);
  } catch {
    return [];
  }
}

export function processIds(): number[] {
  try {
    return readdirSync("/proc").filter((n) => /^\d+$/.test(n)).map(Number);
  } catch {
    return [];
  }
}

/** True when the process exists and is no zombie. */
export function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  const f = statFields(pid);
  return f.length > 0 && f[0] !== "Z";
}

function environ(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/environ`, "latin1").split("\0");
  } catch {
    return [];
  }
}

export function environHas(pid: number, entry: string): boolean {
  return environ(pid).includes(entry);
}

/** The owner mark (the value of GODEL_WORKER) of this process's runs on worktree `root`. */
export function ownerMark(root: string): string {
  return `${process.pid}:${statFields(process.pid)[START_TIME] ?? 0}:${resolve(root)}`;
}

/** True when process `pid`, started at `startTime`, still runs (a zombie has ended). */
export function running(pid: string, startTime: string): boolean {
  if (!/^\d+$/.test(pid)) return false;
  const f = statFields(Number(pid));
  return f.length > START_TIME && f[0] !== "Z" && f[START_TIME] === startTime;
}

function ownerOf(pid: number): string | undefined {
  const entry = environ(pid).find((e) => e.startsWith(OWNER_PREFIX));
  return entry?.slice(OWNER_PREFIX.length);
}

/** Kills what workers on `root` that are gone left running: the process group of each process they
 * marked when that group is a session of its own (as a run's process starts, detached), else that
 * process alone; returns the groups (or processes) killed. Workers sharing a root do not kill each
 * other's runs: a live owner's processes are left alone, and so are this process's own. */
export function killMarkedLeftovers(root: string): number[] {
  const mine = ownerMark(root);
  const rootText = resolve(root);
  const killed: number[] = [];
  for (const pid of processIds()) {
    const owner = ownerOf(pid);
    if (owner === undefined || owner === mine) continue;
    const [ownerPid = "", startTime = ""] = owner.split(":", 2);
    const ownerRoot = owner.slice(ownerPid.length + startTime.length + 2);
    if (ownerRoot !== rootText || running(ownerPid, startTime)) continue;
    const f = statFields(pid);
    if (f.length < 4 || f[0] === "Z") continue;
    const [pgid, session] = [Number(f[2]), Number(f[3])];
    const target = pgid === session && pgid > 1 ? -pgid : pid;
    if (killed.includes(Math.abs(target))) continue;
    try {
      process.kill(target, "SIGKILL");
      killed.push(Math.abs(target));
    } catch {
      // gone already
    }
  }
  return killed;
}
