/// <reference types="node" />
// Git worktrees of agents, as services/godel_server/worker/worktrees.py keeps them:
// <root>/<agent id> on branch godel/<agent id> from the repository's HEAD, base commit in
// <root>/<agent id>.base. Worktree changes on a repository are serialized in this process and,
// across processes (Python and Go workers too), by flock(1) on <git dir>/godel-worktree.lock.
import { execFile, spawn } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, isAbsolute, join } from "node:path";
import { LOCK_NAME, resolve } from "./sandbox.js";

const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const GIT_ENV_DROP = new Set(["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY"]);

export class WorktreeError extends Error {}

export function gitIdentity(agentId: string): Record<string, string> {
  const name = `Godel agent ${agentId}`;
  const email = `agent-${agentId}@godel.local`;
  return { GIT_AUTHOR_NAME: name, GIT_AUTHOR_EMAIL: email, GIT_COMMITTER_NAME: name, GIT_COMMITTER_EMAIL: email };
}

export function git(cwd: string, ...args: string[]): Promise<string> {
  const env: Record<string, string> = { GIT_TERMINAL_PROMPT: "0" };
  for (const [k, v] of Object.entries(process.env)) if (!GIT_ENV_DROP.has(k) && v !== undefined) env[k] = v;
  env["GIT_TERMINAL_PROMPT"] = "0";
  return new Promise((ok, fail) => {
    execFile("git", args, { cwd, env, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        const message = String(stderr).trim() || String(stdout).trim() || err.message;
        fail(new WorktreeError(`git ${args.slice(0, 2).join(" ")} failed: ${message}`));
      } else ok(String(stdout).trim());
    });
  });
}

export class Worktree {
  constructor(
    readonly path: string,
    readonly branch: string,
    readonly base: string,
    readonly repo: string,
    readonly common: string,
    readonly admin: string,
  ) {}

  writable(): string[] {
    const refDir = dirname(join("refs/heads", this.branch));
    const dirs = [join(this.common, "objects"), join(this.common, refDir), join(this.common, "logs", refDir), this.admin];
    for (const d of dirs) mkdirSync(d, { recursive: true });
    return dirs;
  }

  alternates(): string[] {
    let lines: string[] = [];
    try {
      lines = readFileSync(join(this.common, "objects", "info", "alternates"), "utf8").split("\n");
    } catch {
      return [];
    }
    return lines
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#"))
      .map((l) => (isAbsolute(l) ? l : resolve(join(this.common, "objects", l))));
  }
}

/** The admin directory git keeps for the worktree, checked against its own gitdir file. */
function adminDir(path: string, common: string): string {
  const dotGit = join(path, ".git");
  let text = "";
  try {
    if (lstatSync(dotGit).isSymbolicLink()) throw new Error("a symlink");
    text = readFileSync(dotGit, "utf8");
  } catch {
    throw new WorktreeError(`${dotGit} is not a worktree's .git file`);
  }
  if (!text.startsWith("gitdir:")) throw new WorktreeError(`${dotGit} is not a worktree's .git file`);
  let admin = text.slice("gitdir:".length).trim();
  admin = resolve(isAbsolute(admin) ? admin : join(path, admin));
  let back = "";
  try {
    back = resolve(readFileSync(join(admin, "gitdir"), "utf8").trim());
  } catch {
    // none
  }
  if (dirname(admin) !== join(common, "worktrees") || back !== resolve(dotGit)) {
    throw new WorktreeError(`${dotGit} does not point at its own directory in ${join(common, "worktrees")}`);
  }
  return admin;
}

const readBase = (file: string) => {
  try {
    return readFileSync(file, "utf8").trim();
  } catch {
    return "";
  }
};

export class Worktrees {
  private readonly chains = new Map<string, Promise<unknown>>();

  constructor(readonly root: string) {}

  pathFor(agentId: string): string {
    if (!SAFE_ID.test(agentId)) throw new WorktreeError(`agent id ${JSON.stringify(agentId)} cannot name a worktree directory`);
    return join(this.root, agentId);
  }

  async commonDir(repo: string): Promise<string> {
    if (!isAbsolute(repo)) throw new WorktreeError(`repository path ${JSON.stringify(repo)} must be absolute`);
    if (!existsSync(repo) || !statSync(repo).isDirectory()) throw new WorktreeError(`repository ${repo} does not exist or is not a directory`);
    let raw: string;
    try {
      raw = await git(repo, "rev-parse", "--git-common-dir");
    } catch (err) {
      throw new WorktreeError(`${repo} is not a git repository (${(err as Error).message})`);
    }
    return resolve(isAbsolute(raw) ? raw : join(repo, raw));
  }

  /** Runs fn holding the repository's worktree lock (in this process, then flock(1)). */
  async locked<T>(common: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.chains.get(common) ?? Promise.resolve();
    const result = previous.catch(() => undefined).then(() => withFlock(join(common, LOCK_NAME), fn));
    this.chains.set(common, result);
    return result;
  }

  async create(repo: string, agentId: string, branch: string, reuse: boolean): Promise<Worktree> {
    if (!repo) throw new WorktreeError("the assignment names no repository");
    const path = this.pathFor(agentId);
    const common = await this.commonDir(repo);
    let head: string;
    try {
      head = await git(repo, "rev-parse", "--verify", "HEAD^{commit}");
    } catch (err) {
      throw new WorktreeError(`repository ${repo} has no commit to start from (${(err as Error).message})`);
    }
    await git(repo, "check-ref-format", "--branch", branch);
    const baseFile = join(this.root, `${agentId}.base`);
    mkdirSync(this.root, { recursive: true });
    const base = await this.locked(common, async () => {
      if (existsSync(path)) {
        const listed = await git(repo, "worktree", "list", "--porcelain");
        const registered = listed.split("\n").filter((l) => l.startsWith("worktree ")).map((l) => resolve(l.slice(9)));
        if (registered.includes(resolve(path))) {
          if (!reuse) throw new WorktreeError(`worktree ${path} exists already (reuse_worktree is false)`);
          return readBase(baseFile) || head;
        }
        throw new WorktreeError(`${path} exists and is not a worktree of ${repo}`);
      }
      let base = head;
      let add = ["worktree", "add", "-b", branch, path, head];
      const exists = await git(repo, "rev-parse", "--verify", "--quiet", `refs/heads/${branch}`).then(() => true, () => false);
      if (exists) {
        base = readBase(baseFile) || (await git(repo, "merge-base", head, branch));
        add = ["worktree", "add", path, branch];
      }
      try {
        await git(repo, ...add);
      } catch {
        await git(repo, "worktree", "prune");
        await git(repo, ...add);
      }
      writeFileSync(baseFile, `${base}\n`);
      return base;
    });
    return new Worktree(path, branch, base, repo, common, adminDir(path, common));
  }

  async commits(wt: Worktree): Promise<string[]> {
    const out = await git(wt.common, "rev-list", "--reverse", `${wt.base}..${wt.branch}`);
    return out.split(/\s+/).filter(Boolean);
  }

  async remove(repo: string, path: string): Promise<void> {
    if (!path) throw new WorktreeError("CLEANUP names no worktree");
    const isDir = () => existsSync(path) && statSync(path).isDirectory();
    if (!repo) {
      if (!isDir()) return;
      repo = path;
    }
    const common = await this.commonDir(repo);
    await this.locked(common, async () => {
      if (isDir()) await git(common, "worktree", "remove", "--force", path);
      else await git(common, "worktree", "prune");
    });
    if (resolve(dirname(path)) === resolve(this.root)) rmSync(join(this.root, `${basename(path)}.base`), { force: true });
  }
}

/** Holds flock(1) on `file` while fn runs: `flock -x FILE -c 'echo; cat'` prints once it holds
 * the lock and keeps it until its stdin closes. */
async function withFlock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  const holder = spawn("flock", ["-x", file, "-c", "echo locked; cat >/dev/null"], { stdio: ["pipe", "pipe", "inherit"] });
  await new Promise<void>((ok, fail) => {
    holder.stdout.once("data", () => ok());
    holder.once("error", fail);
    holder.once("exit", (code) => fail(new WorktreeError(`flock on ${file} ended (${code})`)));
  });
  try {
    return await fn();
  } finally {
    holder.stdin.end();
  }
}
