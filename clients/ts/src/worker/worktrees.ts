/// <reference types="node" />
// Git worktrees of agents, as services/godel_server/worker/worktrees.py keeps them:
// <root>/<agent id> on branch godel/<agent id> from the repository's HEAD, base commit in
// <root>/<agent id>.base. Worktree changes on a repository are serialized in this process and,
// across processes (Python and Go workers too), by flock(1) on <git dir>/godel-worktree.lock.
//
// `git worktree add` and `git worktree remove` read every worktree of the repository (their check
// that the path and the branch are not taken), so with a thousand agents on one repository each add
// read a thousand worktrees' files, ~40 ms at 350 and growing. A new agent's worktree is therefore
// made the way git's own add_worktree (and libgit2) makes it: the branch created by `git update-ref`
// (which refuses a branch that exists), the worktree's directory in <common>/worktrees/<agent id>
// written ("locked initializing" until its checkout is done), then `git reset --hard` in it. A
// removal deletes the worktree and that directory. Both fall back to git's own command whenever the
// repository or the worktree is anything but the plain case: a branch that exists, a name git would
// change or that is taken, sparse checkout, per-worktree config, reftable refs, or a locked
// worktree. The repository's post-checkout hook does not run: the worker runs no repository code
// outside a sandbox. At most GIT_PROCESSES git commands run at once in the worker, one that runs
// longer than gitTimeout.seconds is killed, and the worktree lock is waited for at most
// lockTimeout.seconds.
import { execFile, spawn, type ChildProcessByStdio, type ExecFileException } from "node:child_process";
import { closeSync, constants, existsSync, fstatSync, lstatSync, mkdirSync, openSync, readFileSync, readSync, rmSync, statSync } from "node:fs";
import { mkdir, readFile, realpath, rm, rmdir, stat, unlink, writeFile } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, sep } from "node:path";
import type { Readable, Writable } from "node:stream";
import { LOCK_NAME, resolve } from "./sandbox.js";

const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
// A name git keeps as is for a worktree's directory (sanitize_refname_component changes none of it).
const PLAIN_NAME = /^[A-Za-z0-9_-]+$/;
// Branch names `git check-ref-format --branch` accepts without asking: components of letters,
// digits, '_' and '-', none starting with '-' (anything else is asked of git).
const PLAIN_BRANCH = /^[A-Za-z0-9_][A-Za-z0-9_-]*(?:\/[A-Za-z0-9_][A-Za-z0-9_-]*)*$/;
// What in a repository's git directory makes `git worktree add` do more than write the worktree's
// files and check it out (it copies the first two; the third stores refs differently).
const NOT_PLAIN = ["info/sparse-checkout", "config.worktree", "reftable"];
// What a loose ref or a detached HEAD holds: a SHA-1 or SHA-256 commit id.
const COMMIT_ID = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/;
const GIT_ENV_DROP = new Set(["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY"]);

export class WorktreeError extends Error {}

export function gitIdentity(agentId: string): Record<string, string> {
  const name = `Godel agent ${agentId}`;
  const email = `agent-${agentId}@godel.local`;
  return { GIT_AUTHOR_NAME: name, GIT_AUTHOR_EMAIL: email, GIT_COMMITTER_NAME: name, GIT_COMMITTER_EMAIL: email };
}

/** Runs git in cwd (with `env` over the worker's, less what would point git elsewhere) and
 * returns its stdout; rejects with a WorktreeError carrying git's stderr. */
export type GitRunner = (cwd: string, args: string[], env?: Record<string, string>) => Promise<string>;

/** The git commands the worker runs at once (GIT_PROCESSES of the Python worker): a thousand runs
 * killed or agents brought up together each read or check out their worktree, and a thousand git
 * processes forked at once starved the worker's stream past its run lease. */
export const GIT_PROCESSES = 4;

/** A git still running after `seconds` is killed (SIGKILL) and its call rejects: an agent can write
 * its repository's refs, and a FIFO there makes a git that reads it wait for ever, holding one of
 * the GIT_PROCESSES slots. Tests lower it. */
export const gitTimeout = { seconds: 600 };

/** The worktree lock (flock(1) on <common>/godel-worktree.lock) is waited for as long as a git
 * command: a process of any worker that holds it for ever (a hung git of a worker without this
 * bound) would stop every add and removal on the repository. Tests lower it. */
export const lockTimeout = { seconds: gitTimeout.seconds };

/** A counting semaphore: at most `free` (as constructed) of the functions given to run() run at
 * once; the others start in the order they came. */
class Slots {
  private readonly waiting: (() => void)[] = [];

  constructor(private free: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((ok) => this.waiting.push(ok));
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next(); // the slot passes on as it is
      else this.free++;
    }
  }
}

const gitSlots = new Slots(GIT_PROCESSES);

export const runGit: GitRunner = (cwd, args, extra) => gitSlots.run(() => gitProcess(cwd, args, extra));

function gitProcess(cwd: string, args: string[], extra?: Record<string, string>): Promise<string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!GIT_ENV_DROP.has(k) && v !== undefined) env[k] = v;
  env["GIT_TERMINAL_PROMPT"] = "0";
  Object.assign(env, extra);
  const seconds = gitTimeout.seconds;
  // On timeout execFile closes git's pipes and kills git, and only then sets err.killed; the callback
  // comes once git has exited.
  const options = { cwd, env, maxBuffer: 64 * 1024 * 1024, timeout: Math.ceil(seconds * 1000), killSignal: "SIGKILL" as const };
  return new Promise((ok, fail) => {
    execFile("git", args, options, (err: ExecFileException | null, stdout, stderr) => {
      if (err?.killed) {
        fail(new WorktreeError(`git ${args.slice(0, 2).join(" ")} did not finish within ${seconds}s and was stopped`));
      } else if (err) {
        const message = String(stderr).trim() || String(stdout).trim() || err.message;
        fail(new WorktreeError(`git ${args.slice(0, 2).join(" ")} failed: ${message}`));
      } else ok(String(stdout).trim());
    });
  });
}

export function git(cwd: string, ...args: string[]): Promise<string> {
  return runGit(cwd, args);
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

/** The trimmed text of a small regular file, read without following a link or waiting on a FIFO
 * (an agent can write its branch's ref); null for anything else. */
function smallFile(path: string): string | null {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return null;
  }
  try {
    if (!fstatSync(fd).isFile()) return null;
    const buf = Buffer.alloc(256);
    return buf.toString("latin1", 0, readSync(fd, buf, 0, buf.length, 0)).trim();
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

/** The commit id in the branch's loose ref file, or null where git must answer (a packed or
 * symbolic ref, reftable, a name git would read differently, a file that holds no commit id). */
function looseRef(common: string, branch: string): string | null {
  if (!PLAIN_BRANCH.test(branch)) return null;
  const content = smallFile(join(common, "refs", "heads", branch));
  return content !== null && COMMIT_ID.test(content) ? content : null;
}

/** The commit the repository's HEAD names, from its files: a detached HEAD's id, or the loose ref
 * of the branch it is on; null where git must answer (a packed ref, a branch with no commit yet,
 * reftable). */
function headCommit(gitDir: string, common: string): string | null {
  const head = smallFile(join(gitDir, "HEAD"));
  if (head === null) return null;
  if (COMMIT_ID.test(head)) return head;
  const prefix = "ref: refs/heads/";
  return head.startsWith(prefix) ? looseRef(common, head.slice(prefix.length)) : null;
}

const exists = (p: string): Promise<boolean> => stat(p).then(() => true, () => false);

/** git's directory of the worktree at `path` when `git worktree remove --force` would just delete
 * both (registered here, not locked, no per-worktree config); null where git must decide. */
async function plainAdminDir(path: string, common: string): Promise<string | null> {
  let admin: string;
  try {
    admin = adminDir(path, common);
  } catch {
    return null;
  }
  if ((await exists(join(admin, "locked"))) || (await exists(join(admin, "config.worktree")))) return null;
  return admin;
}

async function deleteAdminDir(admin: string): Promise<void> {
  await rm(admin, { recursive: true });
  await rmdir(dirname(admin)).catch(() => undefined); // <common>/worktrees, when it was the last one (as git does)
}

/** The files git's add_worktree writes before its checkout, in its order (the directory of the
 * worktree in <common>/worktrees is "locked initializing" until the checkout is done). Like git,
 * they name the worktree by its real path. */
async function writeWorktree(path: string, admin: string, branch: string): Promise<void> {
  await mkdir(dirname(admin), { recursive: true });
  await mkdir(admin);
  await writeFile(join(admin, "locked"), "initializing");
  await mkdir(path);
  const dotGit = join(await realpath(path), ".git");
  // gitdir before .git, as git writes them: killed in between, git still lists the worktree.
  await writeFile(join(admin, "gitdir"), `${dotGit}\n`);
  await writeFile(dotGit, `gitdir: ${admin}\n`);
  await writeFile(join(admin, "commondir"), "../..\n");
  await writeFile(join(admin, "HEAD"), `ref: refs/heads/${branch}\n`);
}

/** What a failed add leaves: the worktree and git's directory of it (git's remove_junk). */
async function deleteJunk(path: string, admin: string): Promise<void> {
  await rm(path, { recursive: true, force: true }).catch(() => undefined);
  await rm(admin, { recursive: true, force: true }).catch(() => undefined);
}

/** A worktree's directory in <common>/worktrees that is still "locked initializing" and names no
 * worktree: an add killed before it wrote `gitdir` (under the lock no add of ours is that early). */
async function leftByADeadAdd(admin: string): Promise<boolean> {
  try {
    return (await readFile(join(admin, "locked"), "utf8")) === "initializing" && !(await exists(join(admin, "gitdir")));
  } catch {
    return false;
  }
}

/** Deletes what leftByADeadAdd finds (call under the lock), so the agent's next add gets the same
 * name in <common>/worktrees. */
async function clearDeadAdd(admin: string): Promise<void> {
  if (await leftByADeadAdd(admin)) await rm(admin, { recursive: true, force: true });
}

/** Logs a warning as the worker logs (one JSON line on stderr). */
function warn(msg: string, fields: Record<string, unknown>): void {
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level: "WARN", msg, ...fields })}\n`);
}

/** The lock git takes on the branch's ref (<common>/refs/heads/<branch>.lock), for a branch name
 * already validated; one that would lead out of refs/heads is refused all the same. */
function branchLock(common: string, branch: string): string {
  const heads = join(common, "refs", "heads");
  const lock = join(heads, `${branch}.lock`);
  if (!lock.startsWith(heads + sep)) throw new WorktreeError(`branch ${JSON.stringify(branch)} does not name a ref in refs/heads`);
  return lock;
}

/** Deletes git lock files a run killed in git left (call under the lock, with the agent that could
 * hold them not running): its next git would fail with "Unable to create '...lock': File exists". */
async function clearStaleLocks(...locks: string[]): Promise<void> {
  for (const lock of locks) {
    try {
      await unlink(lock);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw err;
    }
    warn("removed a git lock a killed run left", { lock });
  }
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
  /** The git directories of each repository seen: its own (<common> itself, or
   * <common>/worktrees/<name> for a linked worktree) and the common one, whose files a new agent's
   * base is read from instead of asking git. */
  private readonly gitDirs = new Map<string, { gitDir: string; common: string }>();

  /** `run` runs every git command of the module (tests record them). */
  constructor(
    readonly root: string,
    private readonly run: GitRunner = runGit,
  ) {}

  private git(cwd: string, ...args: string[]): Promise<string> {
    return this.run(cwd, args);
  }

  pathFor(agentId: string): string {
    if (!SAFE_ID.test(agentId)) throw new WorktreeError(`agent id ${JSON.stringify(agentId)} cannot name a worktree directory`);
    return join(this.root, agentId);
  }

  async commonDir(repo: string): Promise<string> {
    checkRepoPath(repo);
    let raw: string;
    try {
      raw = await this.git(repo, "rev-parse", "--git-common-dir");
    } catch (err) {
      throw new WorktreeError(`${repo} is not a git repository (${(err as Error).message})`);
    }
    return absolute(repo, raw);
  }

  /** The repository's common git directory as cached when a worktree was added to it, while `repo`
   * still leads to the same git directories (no git process per removal); else asked of git. */
  private async knownCommonDir(repo: string): Promise<string> {
    checkRepoPath(repo);
    const seen = this.gitDirs.get(repo);
    if (seen && leadsTo(repo, seen)) return seen.common;
    this.gitDirs.delete(repo); // moved or replaced: git says where it is now
    return this.commonDir(repo);
  }

  /** The repository's git directory and the commit its HEAD names: read from HEAD's files once git
   * has said where they are (a git process less per agent), else asked of git in one process. */
  private async commonDirAndHead(repo: string): Promise<[string, string]> {
    checkRepoPath(repo);
    const seen = this.gitDirs.get(repo);
    const known = seen && headCommit(seen.gitDir, seen.common);
    if (seen && known) return [seen.common, known];
    const lines = await this.git(repo, "rev-parse", "--git-dir", "--git-common-dir", "--verify", "HEAD^{commit}").then(
      (out) => out.split("\n"),
      () => [],
    );
    const [rawGitDir, raw, head] = lines;
    if (lines.length === 3 && rawGitDir && raw && head) {
      const common = absolute(repo, raw);
      this.gitDirs.set(repo, { gitDir: absolute(repo, rawGitDir), common });
      return [common, head];
    }
    const common = await this.commonDir(repo); // says which of the two is wrong
    try {
      return [common, await this.git(repo, "rev-parse", "--verify", "HEAD^{commit}")];
    } catch (err) {
      throw new WorktreeError(`repository ${repo} has no commit to start from (${(err as Error).message})`);
    }
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
    const [common, head] = await this.commonDirAndHead(repo);
    if (!PLAIN_BRANCH.test(branch) || branch === "HEAD") await this.git(repo, "check-ref-format", "--branch", branch);
    const baseFile = join(this.root, `${agentId}.base`);
    await mkdir(this.root, { recursive: true });
    const added = await this.locked(common, async () => {
      // A run killed during `git commit` or a branch update: creating the branch would fail.
      await clearStaleLocks(branchLock(common, branch));
      // What a worker killed during an add left: never reused as is, removed and added again.
      await clearDeadAdd(join(common, "worktrees", basename(path)));
      if (existsSync(path) && (await this.halfAdded(repo, path))) await this.removeHalfAdded(path, common);
      await rmdir(path).catch(() => undefined); // an empty directory: an add that died before registering anything
      if (existsSync(path)) {
        const listed = await this.git(repo, "worktree", "list", "--porcelain");
        const registered = listed.split("\n").filter((l) => l.startsWith("worktree ")).map((l) => resolve(l.slice(9)));
        if (registered.includes(resolve(path))) {
          if (!reuse) throw new WorktreeError(`worktree ${path} exists already (reuse_worktree is false)`);
          const admin = adminDir(path, common);
          await clearStaleLocks(join(admin, "index.lock"), join(admin, "HEAD.lock"));
          return new Worktree(path, branch, readBase(baseFile) || head, repo, common, admin);
        }
        throw new WorktreeError(`${path} exists and is not a worktree of ${repo}`);
      }
      // The common case, a new agent: one git call under the lock, and the checkout after it.
      const admin = await this.addPlain(repo, common, path, branch, head);
      if (admin === null) {
        const base = await this.addWithGit(repo, path, branch, head, baseFile);
        return new Worktree(path, branch, base, repo, common, adminDir(path, common));
      }
      await writeFile(baseFile, `${head}\n`);
      return admin;
    });
    if (added instanceof Worktree) return added;
    return this.checkOut(added, path, branch, head, repo, common);
  }

  /** Whether git still locks the worktree at `path` as "initializing" (call under the lock). */
  private async halfAdded(repo: string, path: string): Promise<boolean> {
    const listed = await this.git(repo, "worktree", "list", "--porcelain");
    let current = "";
    for (const line of listed.split("\n")) {
      if (line.startsWith("worktree ")) current = resolve(line.slice("worktree ".length));
      else if (current === resolve(path) && line === "locked initializing") return true;
    }
    return false;
  }

  /** Removes a worktree git lists as "locked initializing"; when git refuses (its .git file was
   * never written), deletes it and has git forget it. */
  private async removeHalfAdded(path: string, common: string): Promise<void> {
    try {
      await this.git(common, "worktree", "remove", "--force", "--force", path);
    } catch (err) {
      warn("deleting a worktree git cannot remove", { worktree: path, error: (err as Error).message });
      await rm(path, { recursive: true, force: true });
      await this.git(common, "worktree", "unlock", path);
      await this.git(common, "worktree", "prune");
    }
  }

  /** `git worktree add` (under the lock) and returns the base; stale entries are pruned only when
   * they get in the way. */
  private async addWithGit(repo: string, path: string, branch: string, head: string, baseFile: string): Promise<string> {
    let base = head;
    let add = ["worktree", "add", "-b", branch, path, head];
    if (await this.branchExists(repo, branch)) {
      base = readBase(baseFile) || (await this.git(repo, "merge-base", head, branch));
      add = ["worktree", "add", path, branch];
    }
    try {
      await this.git(repo, ...add);
    } catch {
      await this.git(repo, "worktree", "prune");
      await this.git(repo, ...add);
    }
    await writeFile(baseFile, `${base}\n`);
    return base;
  }

  private branchExists(repo: string, branch: string): Promise<boolean> {
    return this.git(repo, "rev-parse", "--verify", "--quiet", `refs/heads/${branch}`).then(
      () => true,
      () => false,
    );
  }

  /** Creates the branch at `head` and writes the files of a worktree on it at `path`, as git's
   * add_worktree does, and returns the worktree's directory in <common>/worktrees, still locked
   * "initializing"; null (nothing changed) where git's own add must do it. Call under the lock,
   * with `path` absent. */
  private async addPlain(repo: string, common: string, path: string, branch: string, head: string): Promise<string | null> {
    if (!PLAIN_NAME.test(basename(path))) return null;
    for (const p of NOT_PLAIN) if (await exists(join(common, p))) return null;
    const admin = join(common, "worktrees", basename(path));
    if (await exists(admin)) return null;
    try {
      // The empty old value makes update-ref refuse a branch that exists.
      await this.git(repo, "update-ref", "-m", "branch: Created from HEAD", `refs/heads/${branch}`, head, "");
    } catch (err) {
      if (await this.branchExists(repo, branch)) return null;
      throw err;
    }
    try {
      await writeWorktree(path, admin, branch);
    } catch (err) {
      await deleteJunk(path, admin);
      throw new WorktreeError(`cannot write the worktree ${path}: ${(err as Error).message}`);
    }
    return admin;
  }

  /** Checks out the worktree addPlain wrote and unlocks it; deletes it when that fails. */
  private async checkOut(admin: string, path: string, branch: string, head: string, repo: string, common: string): Promise<Worktree> {
    const env = { GIT_DIR: join(path, ".git"), GIT_WORK_TREE: path };
    try {
      await this.run(path, ["reset", "--hard", "--no-recurse-submodules", "--quiet"], env);
    } catch (err) {
      await this.locked(common, () => deleteJunk(path, admin));
      throw err;
    }
    await unlink(join(admin, "locked"));
    return new Worktree(path, branch, head, repo, common, admin);
  }

  /** Commits on the agent's branch that are not on its base, oldest first (asked of the
   * repository, not of the worktree, whose `.git` file the agent controls). */
  async commits(wt: Worktree): Promise<string[]> {
    if (looseRef(wt.common, wt.branch) === wt.base) return []; // the branch has not moved: no git process (a thousand runs end at once)
    const out = await this.git(wt.common, "rev-list", "--reverse", `${wt.base}..${wt.branch}`);
    return out.split(/\s+/).filter(Boolean);
  }

  /** Removes a worktree (the branch is kept) and prunes stale entries. */
  async remove(repo: string, path: string): Promise<void> {
    if (!path) throw new WorktreeError("CLEANUP names no worktree");
    const isDir = () => existsSync(path) && statSync(path).isDirectory();
    let common: string;
    if (repo) common = await this.knownCommonDir(repo);
    else if (!isDir()) return;
    else common = await this.commonDir(path); // git says which repository the worktree belongs to
    const admin = isDir() ? await plainAdminDir(path, common) : null;
    if (admin !== null) {
      // Only a registered, unlocked worktree of this repository gets here: the worktree first,
      // then git's directory of it, as `git worktree remove` does.
      await rm(path, { recursive: true });
      await this.locked(common, () => deleteAdminDir(admin));
    } else {
      await this.locked(common, async () => {
        // git refuses paths that are not its worktrees, so nothing else is ever deleted.
        if (isDir()) await this.git(common, "worktree", "remove", "--force", path);
        else await this.git(common, "worktree", "prune");
      });
    }
    if (resolve(dirname(path)) === resolve(this.root)) rmSync(join(this.root, `${basename(path)}.base`), { force: true });
  }
}

function checkRepoPath(repo: string): void {
  if (!isAbsolute(repo)) throw new WorktreeError(`repository path ${JSON.stringify(repo)} must be absolute`);
  if (!existsSync(repo) || !statSync(repo).isDirectory()) throw new WorktreeError(`repository ${repo} does not exist or is not a directory`);
}

function absolute(repo: string, raw: string): string {
  return resolve(isAbsolute(raw) ? raw : join(repo, raw));
}

/** Whether `repo`'s files still lead to these git directories: its .git directory, or the gitdir its
 * .git file names, with that directory's commondir. Anything else (a symlink, a bare repository, a
 * subdirectory of a worktree, a file that cannot be read) is false: git is asked. */
function leadsTo(repo: string, seen: { gitDir: string; common: string }): boolean {
  try {
    const gitDir = gitDirOf(repo);
    if (gitDir !== seen.gitDir) return false;
    const file = join(gitDir, "commondir");
    if (lstatSync(file, { throwIfNoEntry: false }) === undefined) return gitDir === seen.common;
    const commondir = smallFile(file);
    return commondir !== null && absolute(gitDir, commondir) === seen.common;
  } catch {
    return false;
  }
}

/** The git directory `repo`'s .git (a directory, or a file naming one) leads to; null for anything else. */
function gitDirOf(repo: string): string | null {
  const dotGit = join(repo, ".git");
  if (lstatSync(dotGit).isDirectory()) return resolve(dotGit);
  const text = smallFile(dotGit);
  return text !== null && text.startsWith("gitdir:") ? absolute(repo, text.slice("gitdir:".length).trim()) : null;
}

/** Holds flock(1) on `file` while fn runs: `flock -x FILE -c 'echo; cat'` prints once it holds
 * the lock and keeps it until its stdin closes. */
async function withFlock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  const holder = spawn("flock", ["-x", file, "-c", "echo locked; cat >/dev/null"], { stdio: ["pipe", "pipe", "inherit"] });
  await lockTaken(holder, file);
  try {
    return await fn();
  } finally {
    holder.stdin.end();
  }
}

/** Resolves once `holder` says it holds the lock. One still waiting after lockTimeout.seconds is
 * killed, and the call rejects once it has exited. */
function lockTaken(holder: ChildProcessByStdio<Writable, Readable, null>, file: string): Promise<void> {
  const seconds = lockTimeout.seconds;
  let timedOut = false;
  return new Promise<void>((ok, fail) => {
    const timer = setTimeout(() => {
      timedOut = true;
      holder.stdin.destroy(); // had it just taken the lock, its `cat` lets go of it
      holder.kill("SIGKILL");
    }, Math.ceil(seconds * 1000));
    holder.stdout.once("data", () => {
      if (timedOut) return;
      clearTimeout(timer);
      ok();
    });
    holder.once("error", (err) => {
      clearTimeout(timer);
      fail(err);
    });
    holder.once("exit", (code) => {
      clearTimeout(timer);
      fail(new WorktreeError(timedOut ? `could not take the worktree lock ${file} within ${seconds}s` : `flock on ${file} ended (${code})`));
    });
  });
}
