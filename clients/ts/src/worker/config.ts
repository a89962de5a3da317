/// <reference types="node" />
// Settings of the TypeScript worker: the Python worker's GODEL_* variables (see
// services/godel_server/runtime/config.py), with the label language=typescript always added.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname, homedir } from "node:os";
import { isAbsolute, join, normalize } from "node:path";
import { getOption, hasOption } from "@bufbuild/protobuf";
import { limits } from "../gen/godel/v1/limits_pb.js";
import { WorkerHeartbeatSchema } from "../gen/godel/v1/worker_service_pb.js";

export const LANGUAGE = "typescript";

export interface Config {
  connect: string[];
  workerId: string;
  capacity: number;
  apiKey: string;
  home: string;
  worktreeRoot: string;
  labels: Record<string, string>;
  hostname: string;
  sandbox: "bwrap" | "off";
  bwrap: string;
  sandboxPaths: string[];
  maxMemoryMb: number;
  maxProcesses: number;
  maxCpuSeconds: number;
  tls?: { ca: string; cert: string; key: string };
}

// A repeated field without (godel.v1.limits) max_items may list this many (proto/godel/v1/limits.proto).
const DEFAULT_MAX_ITEMS = 100;

/** The most runs a worker may take: half of what its heartbeat may list (WorkerHeartbeat.runs in
 * the contract), which also lists the runs that ended and wait for their updates' acknowledgement.
 * The agent service cuts a longer list and takes the runs missing from it for lost. */
export function maxWorkerCapacity(): number {
  const runs = WorkerHeartbeatSchema.fields.find((f) => f.name === "runs");
  if (!runs) throw new Error("WorkerHeartbeat has no field runs");
  const maxItems = hasOption(runs, limits) ? getOption(runs, limits).maxItems : 0;
  return Math.floor((maxItems || DEFAULT_MAX_ITEMS) / 2);
}

function nonNegative(env: NodeJS.ProcessEnv, name: string, def: number, max?: number): number {
  const raw = (env[name] ?? "").trim();
  if (!raw) return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || (max !== undefined && n > max)) {
    const range = max === undefined ? ">= 0" : `0..${max}`;
    throw new Error(`${name} must be a whole number ${range}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

export function parseLabels(raw: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const entry of raw.split(",").map((e) => e.trim()).filter(Boolean)) {
    const i = entry.indexOf("=");
    if (i <= 0 || !entry.slice(0, i).trim()) throw new Error(`GODEL_WORKER_LABELS must list key=value pairs, got ${JSON.stringify(entry)}`);
    labels[entry.slice(0, i).trim()] = entry.slice(i + 1).trim();
  }
  return labels;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const home = normalize(env["GODEL_HOME"] || join(homedir(), ".godel"));
  const port = env["GODEL_AGENT_PORT"] || "50051";
  const connect = (env["GODEL_WORKER_CONNECT"] || env["GODEL_AGENT_ADDR"] || `127.0.0.1:${port}`)
    .split(",")
    .map((a) => a.trim())
    .filter(Boolean);
  if (connect.length === 0) throw new Error("GODEL_WORKER_CONNECT must name at least one address");
  const sandbox = (env["GODEL_SANDBOX"] || "bwrap").trim().toLowerCase();
  if (sandbox !== "bwrap" && sandbox !== "off") throw new Error(`GODEL_SANDBOX must be one of bwrap, off, got ${JSON.stringify(sandbox)}`);
  const sandboxPaths = (env["GODEL_SANDBOX_PATHS"] || "").split(",").map((p) => p.trim()).filter(Boolean);
  for (const p of sandboxPaths) if (!isAbsolute(p)) throw new Error(`GODEL_SANDBOX_PATHS must list absolute paths, got ${JSON.stringify(p)}`);
  let apiKey = env["GODEL_API_KEY"] || "";
  const keyFile = env["GODEL_API_KEY_FILE"];
  if (!apiKey && keyFile) apiKey = require_text(keyFile, "GODEL_API_KEY_FILE");
  const tlsFiles = [env["GODEL_TLS_CA_FILE"], env["GODEL_TLS_CERT_FILE"], env["GODEL_TLS_KEY_FILE"]];
  const given = tlsFiles.filter(Boolean).length;
  if (given !== 0 && given !== 3) throw new Error("mutual TLS needs GODEL_TLS_CA_FILE, GODEL_TLS_CERT_FILE and GODEL_TLS_KEY_FILE together");
  const host = hostname();
  return {
    connect,
    workerId: env["GODEL_WORKER_ID"] || `ts-worker-${host}-${process.pid}-${randomBytes(2).toString("hex")}`,
    capacity: nonNegative(env, "GODEL_WORKER_CAPACITY", 16, maxWorkerCapacity()),
    apiKey,
    home,
    worktreeRoot: normalize(env["GODEL_WORKTREE_ROOT"] || `${home}-worktrees`),
    labels: { ...parseLabels(env["GODEL_WORKER_LABELS"] || ""), language: LANGUAGE },
    hostname: host,
    sandbox,
    bwrap: env["GODEL_SANDBOX_BWRAP"] || "bwrap",
    sandboxPaths,
    maxMemoryMb: nonNegative(env, "GODEL_SANDBOX_MAX_MEMORY_MB", 0),
    maxProcesses: nonNegative(env, "GODEL_SANDBOX_MAX_PROCESSES", 512),
    maxCpuSeconds: nonNegative(env, "GODEL_SANDBOX_MAX_CPU_SECONDS", 0),
    tls: given === 3 ? { ca: tlsFiles[0]!, cert: tlsFiles[1]!, key: tlsFiles[2]! } : undefined,
  };
}


function require_text(path: string, name: string): string {
  try {
    return readFileSync(path, "utf8").trim();
  } catch (err) {
    throw new Error(`${name} ${JSON.stringify(path)} cannot be read: ${(err as Error).message}`);
  }
}
