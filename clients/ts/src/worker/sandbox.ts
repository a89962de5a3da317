/// <reference types="node" />
// The sandbox of agent processes, as services/godel_server/worker/sandbox.py builds it (the Go
// worker's clients/go/worker/sandbox.go builds the same argv): the worktree read-write at its
// real path; the repository's git directory read-only with objects/, the branch's ref and
// reflog directories and the worktree's admin directory writable; read-only system
// directories with /etc's secret files hidden; a private /tmp (also HOME), /proc and /dev;
// paths granted by GODEL_SANDBOX_PATHS; new namespaces (network unless granted), no
// capabilities, no further user namespaces; only the run's environment; prlimit rlimits.
import { execFile } from "node:child_process";
import { existsSync, lstatSync, readlinkSync, realpathSync, statSync } from "node:fs";
import { delimiter, isAbsolute, join, relative, resolve as resolvePath } from "node:path";
import { promisify } from "node:util";
import type { AgentConfig } from "../gen/godel/v1/agent_pb.js";
import type { Config } from "./config.js";
import { MIB, type Limits } from "./procs.js";
import type { Worktree } from "./worktrees.js";

export const SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin";
const SANDBOX_HOME = "/tmp";
const ADDRESS_SPACE_FACTOR = 4;
export const LOCK_NAME = "godel-worktree.lock";
const SYSTEM_DIRS = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"];
const ETC_SECRETS = ["/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/ssh", "/etc/ssl/private", "/etc/sudoers", "/etc/sudoers.d", "/etc/security/opasswd"];
const NAMESPACES = ["--unshare-all", "--unshare-user", "--disable-userns", "--cap-drop", "ALL"];
const TOOLS = ["shell", "read_file", "write_file", "git_commit", "bash", "file", "git"];

/** The run asks its sandbox for something this worker does not grant. */
export class Refused extends Error {}

export interface Policy {
  network: boolean;
  limits: Limits;
  readPaths: string[];
  writePaths: string[];
  wallSeconds: number;
  notes: string[];
}

export function resolve(p: string): string {
  const abs = resolvePath(p);
  try {
    return realpathSync(abs);
  } catch {
    return abs;
  }
}

function within(path: string, root: string): boolean {
  const rel = relative(root, path);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
}

/** godel_server.runtime.agent_rules.config_problems. */
export function configProblems(c: AgentConfig): string[] {
  const problems: string[] = [];
  const sb = c.sandbox;
  if (sb && !["", "bubblewrap"].includes(sb.kind)) problems.push('config.sandbox.kind: must be "" or "bubblewrap" (every agent runs sandboxed)');
  const l = sb?.limits;
  for (const [name, v] of [["max_memory_mb", l?.maxMemoryMb], ["max_processes", l?.maxProcesses], ["max_cpu_seconds", l?.maxCpuSeconds], ["max_cpu_cores", l?.maxCpuCores]] as const) {
    if (Number(v ?? 0) < 0) problems.push(`config.sandbox.limits.${name}: must not be negative`);
  }
  for (const [name, paths] of [["read_paths", sb?.readPaths ?? []], ["write_paths", sb?.writePaths ?? []]] as const) {
    if (paths.length > 32) problems.push(`config.sandbox.${name}: must list at most 32 paths`);
    for (const p of paths) if (!p.startsWith("/") || p.length > 4096) problems.push(`config.sandbox.${name}: ${JSON.stringify(p.slice(0, 100))} must be an absolute path`);
  }
  for (const t of c.tools) if (!TOOLS.includes(t)) problems.push(`config.tools: unknown tool ${JSON.stringify(t.slice(0, 100))}`);
  const selector = Object.entries(c.workerSelector);
  if (selector.length > 32) problems.push("config.worker_selector: at most 32 labels");
  for (const [k, v] of selector) {
    if (k.length === 0 || k.length > 63 || v.length > 63) problems.push(`config.worker_selector[${JSON.stringify(k.slice(0, 100))}]: keys must be 1-63 characters, values at most 63`);
  }
  return problems;
}

function under(limit: number, asked: number): number {
  if (asked > 0 && limit > 0) return Math.min(asked, limit);
  return asked || limit;
}

const seconds = (d?: { seconds: bigint; nanos: number }) => (d ? Number(d.seconds) + d.nanos / 1e9 : 0);

export function policyFor(c: AgentConfig, cfg: Config): Policy {
  const problems = configProblems(c);
  if (problems.length) throw new Refused(problems[0]);
  const l = c.sandbox?.limits;
  const walls = [seconds(c.timeout), seconds(l?.maxDuration)].filter((w) => w > 0);
  const granted = (name: string, raw: string[]) =>
    raw.map((r) => {
      const path = resolve(r);
      if (!cfg.sandboxPaths.some((root) => within(path, resolve(root)))) throw new Refused(`${name}: ${r} is not under the worker's GODEL_SANDBOX_PATHS`);
      for (const secret of [resolve(cfg.home), resolve(cfg.worktreeRoot)]) {
        if (within(path, secret) || within(secret, path)) throw new Refused(`${name}: ${r} would show the worker's data or other agents' worktrees`);
      }
      return path;
    });
  return {
    network: c.sandbox?.network ?? false,
    limits: {
      memoryMb: under(cfg.maxMemoryMb, Number(l?.maxMemoryMb ?? 0)),
      processes: under(cfg.maxProcesses, Number(l?.maxProcesses ?? 0)),
      cpuSeconds: under(cfg.maxCpuSeconds, Number(l?.maxCpuSeconds ?? 0)),
    },
    readPaths: granted("config.sandbox.read_paths", c.sandbox?.readPaths ?? []),
    writePaths: granted("config.sandbox.write_paths", c.sandbox?.writePaths ?? []),
    wallSeconds: walls.length ? Math.min(...walls) : 0,
    notes: (l?.maxCpuCores ?? 0) > 0 ? [`sandbox: max_cpu_cores=${l!.maxCpuCores} is not enforced on this worker (no cgroups v2); max_cpu_seconds bounds CPU time`] : [],
  };
}

export function systemMounts(): string[] {
  const args: string[] = [];
  for (const name of SYSTEM_DIRS) {
    try {
      const st = lstatSync(name);
      if (st.isSymbolicLink()) args.push("--symlink", readlinkSync(name), name);
      else if (st.isDirectory()) args.push("--ro-bind", name, name);
    } catch {
      // missing
    }
  }
  for (const name of ETC_SECRETS) {
    try {
      const st = lstatSync(name);
      if (st.isSymbolicLink()) continue;
      if (st.isDirectory()) args.push("--tmpfs", name, "--remount-ro", name);
      else args.push("--ro-bind", "/dev/null", name);
    } catch {
      // missing
    }
  }
  try {
    if (lstatSync("/etc/resolv.conf").isSymbolicLink()) {
      const target = realpathSync("/etc/resolv.conf");
      if (statSync(target).isFile()) args.push("--ro-bind", target, target);
    }
  } catch {
    // none
  }
  return args;
}

export class Sandbox {
  constructor(
    readonly runId: string,
    readonly policy: Policy,
    readonly bwrap: string | undefined,
    readonly mounts: string[] = [],
    readonly prlimit?: string,
  ) {}

  get overhead(): number {
    return this.bwrap ? 2 : 0;
  }

  baseEnv(): Record<string, string> {
    const env: Record<string, string> = { PATH: SANDBOX_PATH, HOME: SANDBOX_HOME, LANG: "C.UTF-8" };
    if (!this.bwrap) {
      for (const k of ["PATH", "HOME"]) if (process.env[k] !== undefined) env[k] = process.env[k]!;
    }
    return env;
  }

  private rlimits(insideUserns: boolean): string[] {
    if (!this.prlimit) return [];
    const l = this.policy.limits;
    const args = [this.prlimit, "--core=0"];
    if (l.memoryMb) {
      const size = l.memoryMb * MIB * ADDRESS_SPACE_FACTOR;
      args.push(`--as=${size}:${size}`);
    }
    if (l.cpuSeconds) args.push(`--cpu=${l.cpuSeconds + 1}:${l.cpuSeconds + 2}`);
    if (l.processes && insideUserns) args.push(`--nproc=${l.processes + 1}:${l.processes + 1}`);
    return [...args, "--"];
  }

  /** The argv to execute and that process's environment. */
  command(argv: string[], env: Record<string, string>, cwd: string): [string[], Record<string, string>] {
    if (!this.bwrap) return [[...this.rlimits(false), ...argv], env];
    const wrapped = [this.bwrap, ...NAMESPACES, "--die-with-parent"];
    if (this.policy.network) wrapped.push("--share-net");
    wrapped.push(...this.mounts, "--chdir", cwd, "--clearenv");
    for (const k of Object.keys(env).sort()) wrapped.push("--setenv", k, env[k]!);
    wrapped.push("--", ...this.rlimits(true), ...argv);
    // bwrap runs outside the sandbox: none of the agent's variables.
    return [wrapped, { PATH: SANDBOX_PATH, GODEL_RUN_ID: this.runId }];
  }

  exitCode(code: number): number {
    return this.bwrap && code > 128 && code < 160 ? 128 - code : code;
  }
}

export function which(program: string, path: string): string | undefined {
  for (const dir of path.split(delimiter)) {
    const candidate = join(dir, program);
    try {
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export class Sandboxes {
  private bwrap?: string;
  private readonly prlimit = which("prlimit", process.env["PATH"] ?? SANDBOX_PATH);
  private readonly system = systemMounts();

  constructor(private readonly cfg: Config) {}

  async check(): Promise<void> {
    if (this.cfg.sandbox === "off") {
      console.error(JSON.stringify({ level: "WARN", msg: "UNSAFE: GODEL_SANDBOX=off: agents run WITHOUT a sandbox, with this worker's rights" }));
      return;
    }
    const path = this.cfg.bwrap.includes("/") ? this.cfg.bwrap : which(this.cfg.bwrap, process.env["PATH"] ?? SANDBOX_PATH);
    if (!path) throw new Error(`bubblewrap (${JSON.stringify(this.cfg.bwrap)}) is not installed: install it (Debian: apt-get install bubblewrap) or set GODEL_SANDBOX=off to run agents unsandboxed (unsafe)`);
    const probe = new Sandbox("probe", { network: false, limits: { memoryMb: 0, processes: 0, cpuSeconds: 0 }, readPaths: [], writePaths: [], wallSeconds: 0, notes: [] }, path, [...this.system, "--proc", "/proc", "--dev", "/dev"]);
    const [argv, env] = probe.command(["sh", "-c", 'test ! -e "$1" || { echo "$1 is visible in the sandbox"; exit 1; }', "sh", this.cfg.home], { PATH: SANDBOX_PATH }, "/");
    try {
      await promisify(execFile)(argv[0]!, argv.slice(1), { env, timeout: 20_000 });
    } catch (err) {
      const e = err as { stdout?: string; message: string };
      throw new Error(`bubblewrap (${path}) does not work here: ${(e.stdout || e.message).trim().slice(0, 500)}`);
    }
    this.bwrap = path;
  }

  /** One run's sandbox (it creates git's writable directories). */
  forRun(runId: string, config: AgentConfig, wt: Worktree): Sandbox {
    const policy = policyFor(config, this.cfg);
    if (this.cfg.sandbox === "off") return new Sandbox(runId, policy, undefined, [], this.prlimit);
    const mounts = [...this.system, "--proc", "/proc", "--dev", "/dev"];
    if (policy.limits.memoryMb) mounts.push("--size", String(policy.limits.memoryMb * MIB));
    mounts.push("--tmpfs", "/tmp", "--ro-bind", wt.common, wt.common);
    for (const d of wt.writable()) mounts.push("--bind", d, d);
    for (const d of wt.alternates()) mounts.push("--ro-bind-try", d, d);
    const lock = join(wt.common, LOCK_NAME);
    if (existsSync(lock) && statSync(lock).isFile()) mounts.push("--ro-bind", "/dev/null", lock);
    for (const d of policy.readPaths) mounts.push("--ro-bind", d, d);
    for (const d of policy.writePaths) mounts.push("--bind", d, d);
    mounts.push("--bind", wt.path, wt.path);
    return new Sandbox(runId, policy, this.bwrap, mounts, this.prlimit);
  }
}
