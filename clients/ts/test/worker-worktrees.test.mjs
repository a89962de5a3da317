// Agents' git worktrees (dist/worker/worktrees.js): a new agent's worktree is written as git's own
// add_worktree writes it (`git worktree add/remove` read every worktree of the repository), git takes
// it for one of its own, and anything but the plain case is left to git's own commands.
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { WorktreeError, Worktrees, gitTimeout, lockTimeout, runGit } from "../dist/worker/worktrees.js";
import { waitFor } from "./waits.mjs";

const IDENTITY = { GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@t", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@t" };

function git(cwd, ...args) {
  const env = { ...process.env, ...IDENTITY };
  for (const key of ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"]) delete env[key];
  return execFileSync("git", args, { cwd, env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
}

/** A temporary directory (its real path: git writes real paths) removed after the test. */
function tempDir(t) {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), "godel-wt-")));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A repository with one commit on branch main. */
function makeRepo(path) {
  mkdirSync(path, { recursive: true });
  git(path, "init", "-q", "-b", "main");
  writeFileSync(join(path, "README.md"), "test repo\n");
  git(path, "add", ".");
  git(path, "commit", "-q", "-m", "initial");
  return path;
}

/** Worktrees whose git commands are recorded in `calls` (their arguments); `fail` may reject one. */
function recorded(root, fail = () => undefined) {
  const calls = [];
  const run = async (cwd, args, env) => {
    calls.push(args);
    const error = fail(args);
    if (error) throw error;
    return runGit(cwd, args, env);
  };
  return { wts: new Worktrees(root, run), calls };
}

test("no more than a few git processes run at once", async (t) => {
  // A thousand runs killed together each read their commits and have their worktree removed; forked
  // all at once, their git processes starved the worker's stream past its run lease.
  const dir = tempDir(t);
  const running = join(dir, "running");
  const seen = join(dir, "seen");
  mkdirSync(running);
  mkdirSync(join(dir, "bin"));
  const fake = join(dir, "bin", "git");
  writeFileSync(
    fake,
    `#!/bin/sh\ntouch "${running}/$$"\nls "${running}" | wc -l >> "${seen}"\nsleep 0.3\nrm "${running}/$$"\necho "$1"\n`,
  );
  chmodSync(fake, 0o755);
  const env = { PATH: `${join(dir, "bin")}:${process.env.PATH}` }; // execFile looks git up in env.PATH
  const calls = 12;
  const outputs = await Promise.all(Array.from({ length: calls }, (_, n) => runGit(dir, [`call-${n}`], env)));
  assert.deepEqual(outputs, Array.from({ length: calls }, (_, n) => `call-${n}`));
  const atOnce = readFileSync(seen, "utf8").split(/\s+/).filter(Boolean).map(Number);
  assert.equal(atOnce.length, calls);
  assert.ok(Math.max(...atOnce) <= 4, JSON.stringify(atOnce));
});

test("a new worktree reads no other worktree, and git takes it for one of its own", async (t) => {
  // `git worktree add` reads every worktree of the repository (~40 ms each at 350 worktrees, so a
  // thousand agents came up at a few a second).
  const dir = tempDir(t);
  const repo = makeRepo(join(dir, "repo"));
  const { wts, calls } = recorded(join(dir, "wt"));
  await Promise.all(Array.from({ length: 20 }, (_, n) => wts.create(repo, `a${n}`, `godel/a${n}`, false)));
  calls.length = 0;
  const last = await wts.create(repo, "last", "godel/last", false);
  // Not even a rev-parse: HEAD's commit is read from its files once git has said where they are.
  assert.deepEqual(
    calls.map((args) => args[0]),
    ["update-ref", "reset"],
    JSON.stringify(calls),
  );
  const entry = git(repo, "worktree", "list", "--porcelain")
    .split("\n\n")
    .find((block) => block.startsWith(`worktree ${last.path}\n`));
  assert.ok(entry, "git lists the worktree");
  assert.match(entry, /^branch refs\/heads\/godel\/last$/m);
  assert.doesNotMatch(entry, /locked/);
  assert.equal(last.admin, join(repo, ".git", "worktrees", "last"));
  assert.equal(last.base, git(repo, "rev-parse", "HEAD"));
  assert.equal(git(last.path, "status", "--porcelain"), "");
  assert.equal(readFileSync(join(last.path, "README.md"), "utf8"), "test repo\n");
  git(last.path, "commit", "-q", "--allow-empty", "-m", "work");
  assert.deepEqual(await wts.commits(last), [git(repo, "rev-parse", "godel/last")]);
  git(repo, "fsck", "--strict");
  git(repo, "worktree", "prune");
  assert.equal(git(repo, "worktree", "list").split("\n").length, 22); // prune keeps them all
});

test("removing a worktree deletes it and git's record of it, and keeps its branch", async (t) => {
  const dir = tempDir(t);
  const repo = makeRepo(join(dir, "repo"));
  const { wts, calls } = recorded(join(dir, "wt"));
  const first = await wts.create(repo, "a1", "godel/a1", false);
  const second = await wts.create(repo, "a2", "godel/a2", false);
  git(first.path, "commit", "-q", "--allow-empty", "-m", "kept");
  writeFileSync(join(first.path, "untracked.txt"), "scratch");
  calls.length = 0;
  await wts.remove(repo, first.path);
  assert.ok(!calls.some((args) => args[0] === "worktree" && args[1] === "remove"), JSON.stringify(calls));
  assert.ok(!existsSync(first.path) && !existsSync(first.admin));
  assert.ok(!git(repo, "worktree", "list").includes(first.path));
  assert.equal(git(repo, "log", "-1", "--format=%s", "godel/a1"), "kept");
  // The last worktree takes <common>/worktrees with it, as git's own remove does.
  await wts.remove(repo, second.path);
  assert.ok(!existsSync(join(repo, ".git", "worktrees")));
  // A locked worktree is git's to refuse.
  const third = await wts.create(repo, "a3", "godel/a3", false);
  git(repo, "worktree", "lock", third.path);
  await assert.rejects(wts.remove(repo, third.path), (err) => err instanceof WorktreeError && /locked/.test(err.message));
  assert.ok(statSync(third.path).isDirectory());
});

test("a worktree is removed without a git process by the worker that added it, and by a restarted one with one rev-parse", async (t) => {
  // A thousand agents cleaned up at once each asked git where their repository's git directory is.
  const dir = tempDir(t);
  const repo = makeRepo(join(dir, "repo"));
  const { wts, calls } = recorded(join(dir, "wt"));
  const [first, second, third] = await Promise.all(["a1", "a2", "a3"].map((id) => wts.create(repo, id, `godel/${id}`, false)));
  calls.length = 0;
  await wts.remove(repo, first.path);
  assert.ok(!calls.some((args) => args[0] === "rev-parse"), JSON.stringify(calls));
  assert.deepEqual(calls, []);
  assert.ok(!existsSync(first.path) && !existsSync(first.admin));
  assert.ok(!git(repo, "worktree", "list").includes(first.path));
  // A restarted worker knows no repository yet: git says where its git directory is.
  const restarted = recorded(join(dir, "wt"));
  await restarted.wts.remove(repo, second.path);
  assert.deepEqual(restarted.calls, [["rev-parse", "--git-common-dir"]]);
  assert.ok(!existsSync(second.path) && !existsSync(second.admin));
  // A CLEANUP that names no repository: git says which one the worktree belongs to.
  calls.length = 0;
  await wts.remove("", third.path);
  assert.deepEqual(calls, [["rev-parse", "--git-common-dir"]]);
  assert.ok(!existsSync(third.path) && !existsSync(third.admin));
  assert.equal(git(repo, "worktree", "list").split("\n").length, 1);
});

test("a repository replaced since its worktree was added is asked of git, and a worktree of the old one is kept", async (t) => {
  // Cached, the old git directory would have passed the removal's checks of the worktree.
  const dir = tempDir(t);
  const repo = join(dir, "repo");
  const withGitDir = (gitDir) => {
    mkdirSync(repo);
    git(dir, "init", "-q", "-b", "main", "--separate-git-dir", gitDir, repo);
    git(repo, "commit", "-q", "--allow-empty", "-m", "initial");
  };
  withGitDir(join(dir, "old.git"));
  const { wts, calls } = recorded(join(dir, "wt"));
  const wt = await wts.create(repo, "a1", "godel/a1", false);
  assert.equal(wt.common, join(dir, "old.git"));
  rmSync(repo, { recursive: true });
  withGitDir(join(dir, "new.git"));
  calls.length = 0;
  await assert.rejects(wts.remove(repo, wt.path), (err) => err instanceof WorktreeError && /is not a working tree/.test(err.message));
  assert.deepEqual(calls.map((args) => args.slice(0, 2)), [["rev-parse", "--git-common-dir"], ["worktree", "remove"]]);
  assert.ok(statSync(wt.path).isDirectory() && statSync(wt.admin).isDirectory());
});

/** The worker's flock(1) processes (`flock -x FILE -c ...`) on `file` still running. */
function workerFlocks(file) {
  const found = [];
  for (const pid of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    let args = [];
    try {
      args = readFileSync(join("/proc", pid, "cmdline"), "utf8").split("\0");
    } catch {
      continue; // exited meanwhile
    }
    if (args[0].endsWith("flock") && args.includes(file) && args.includes("-c")) found.push(`${pid}: ${args.join(" ")}`);
  }
  return found;
}

test("a worktree lock another process holds for ever is given up after the lock timeout, and no flock is left waiting", { timeout: 30_000 }, async (t) => {
  const dir = tempDir(t);
  const repo = makeRepo(join(dir, "repo"));
  const lock = join(repo, ".git", "godel-worktree.lock");
  writeFileSync(lock, "");
  // Its own process group: flock's child `sleep` holds the lock too, and is killed with it.
  const other = spawn("flock", ["-x", lock, "sleep", "30"], { detached: true, stdio: "ignore" });
  const stopOther = () => {
    try {
      process.kill(-other.pid, "SIGKILL");
    } catch {
      // gone
    }
  };
  t.after(stopOther);
  await waitFor(() => spawnSync("flock", ["-n", lock, "true"]).status === 1, "the other process to hold the lock");
  const saved = lockTimeout.seconds;
  lockTimeout.seconds = 0.5;
  t.after(() => (lockTimeout.seconds = saved));
  const wts = new Worktrees(join(dir, "wt"));
  const started = performance.now();
  const stillWaiting = new Promise((_, fail) => setTimeout(() => fail(new Error("still waiting for the lock after 5 s")), 5000).unref());
  await assert.rejects(
    Promise.race([wts.create(repo, "a1", "godel/a1", false), stillWaiting]),
    (err) => err instanceof WorktreeError && err.message === `could not take the worktree lock ${lock} within 0.5s`,
  );
  assert.ok(performance.now() - started < 5000, `${Math.round(performance.now() - started)} ms`);
  assert.deepEqual(workerFlocks(lock), []);
  assert.ok(!existsSync(join(dir, "wt", "a1")));
  // Once the other process lets go, the lock is the worker's again.
  stopOther();
  const wt = await wts.create(repo, "a1", "godel/a1", false);
  assert.equal(git(wt.path, "status", "--porcelain"), "");
  assert.deepEqual(workerFlocks(lock), []);
});

test("a repository with sparse checkout gets git's own add", async (t) => {
  // git copies the sparse-checkout patterns into a new worktree; anything but the plain case is
  // left to `git worktree add`.
  const dir = tempDir(t);
  const repo = makeRepo(join(dir, "repo"));
  git(repo, "sparse-checkout", "set", "--no-cone", "/README.md");
  const { wts, calls } = recorded(join(dir, "wt"));
  const wt = await wts.create(repo, "a1", "godel/a1", false);
  assert.ok(
    calls.some((args) => JSON.stringify(args) === JSON.stringify(["worktree", "add", "-b", "godel/a1", wt.path, wt.base])),
    JSON.stringify(calls),
  );
  assert.equal(readFileSync(join(wt.admin, "info", "sparse-checkout"), "utf8"), "/README.md\n");
});

test("a checkout that fails leaves nothing behind, and the next create succeeds", async (t) => {
  const dir = tempDir(t);
  const repo = makeRepo(join(dir, "repo"));
  const root = join(dir, "wt");
  const { wts } = recorded(root, (args) => (args[0] === "reset" ? new WorktreeError("git reset failed: disk full") : undefined));
  await assert.rejects(wts.create(repo, "a1", "godel/a1", false), /disk full/);
  assert.ok(!existsSync(join(root, "a1")) && !existsSync(join(repo, ".git", "worktrees", "a1")));
  // The branch stays (as after a failed `git worktree add -b`): the next run checks it out.
  const again = await new Worktrees(root).create(repo, "a1", "godel/a1", false);
  assert.equal(git(again.path, "status", "--porcelain"), "");
});

/** A worktree with a commit, then locked "initializing" as a killed `git worktree add` leaves it. */
async function halfAdded(t) {
  const dir = tempDir(t);
  const repo = makeRepo(join(dir, "repo"));
  const wts = new Worktrees(join(dir, "wt"));
  const first = await wts.create(repo, "a1", "godel/a1", false);
  git(first.path, "commit", "-q", "--allow-empty", "-m", "kept");
  git(repo, "worktree", "lock", "--reason", "initializing", first.path);
  return { dir, repo, wts, first };
}

test("a worktree whose add never finished is added again", async (t) => {
  // A worker killed during `git worktree add` leaves it locked "initializing": never reused as is
  // (nothing could remove it), but removed and added again, on the same branch.
  const { dir, repo, wts, first } = await halfAdded(t);
  const again = await wts.create(repo, "a1", "godel/a1", true);
  assert.doesNotMatch(git(repo, "worktree", "list", "--porcelain"), /locked/);
  assert.equal(git(again.path, "log", "-1", "--format=%s"), "kept");
  await wts.remove(repo, again.path);
  assert.ok(!existsSync(again.path));
  mkdirSync(join(dir, "wt", "a2")); // an add that died before git registered anything
  assert.ok(statSync((await wts.create(repo, "a2", "godel/a2", false)).path).isDirectory());
});

for (const [name, dotGit] of [["an empty .git", ""], ["no .git", null]]) {
  test(`a worktree whose add died before its .git file is added again (${name})`, async (t) => {
    // Killed before `git worktree add` wrote the worktree's .git file: `git worktree remove`
    // refuses it ("validation failed"), and the run must not fail for that.
    const { repo, wts, first } = await halfAdded(t);
    rmSync(join(first.path, ".git"));
    if (dotGit !== null) writeFileSync(join(first.path, ".git"), dotGit);
    const again = await wts.create(repo, "a1", "godel/a1", true);
    assert.doesNotMatch(git(repo, "worktree", "list", "--porcelain"), /locked/);
    assert.equal(git(again.path, "log", "-1", "--format=%s"), "kept");
  });
}

for (const killedAfter of ["locked", "gitdir"]) {
  test(`a plain add killed half way is added again (after ${killedAfter})`, async (t) => {
    // The worker killed while it wrote a new worktree's files: the next run of the agent gets a
    // whole worktree, and no directory of the dead add is left in <common>/worktrees.
    const dir = tempDir(t);
    const repo = makeRepo(join(dir, "repo"));
    const wts = new Worktrees(join(dir, "wt"));
    const path = join(dir, "wt", "a1");
    const admin = join(repo, ".git", "worktrees", "a1");
    git(repo, "branch", "godel/a1");
    mkdirSync(admin, { recursive: true });
    writeFileSync(join(admin, "locked"), "initializing");
    mkdirSync(path, { recursive: true });
    if (killedAfter === "gitdir") {
      writeFileSync(join(admin, "gitdir"), `${join(path, ".git")}\n`);
      writeFileSync(join(admin, "commondir"), "../..\n");
      writeFileSync(join(admin, "HEAD"), "ref: refs/heads/godel/a1\n");
    }
    const again = await wts.create(repo, "a1", "godel/a1", true);
    assert.equal(git(again.path, "status", "--porcelain"), "");
    assert.deepEqual(readdirSync(join(repo, ".git", "worktrees")).sort(), ["a1"]);
    assert.doesNotMatch(git(repo, "worktree", "list", "--porcelain"), /locked/);
  });
}

test("a new agent starts from the repository's HEAD as it is now, read from HEAD's files", async (t) => {
  const dir = tempDir(t);
  const repo = makeRepo(join(dir, "repo"));
  const { wts, calls } = recorded(join(dir, "wt"));
  const ranRevParse = () => calls.some((args) => args[0] === "rev-parse");
  const first = await wts.create(repo, "a1", "godel/a1", false);
  assert.equal(first.base, git(repo, "rev-parse", "HEAD"));
  assert.ok(ranRevParse(), JSON.stringify(calls));
  calls.length = 0;
  const same = await wts.create(repo, "a2", "godel/a2", false);
  assert.equal(same.base, first.base);
  assert.deepEqual(calls.map((args) => args[0]), ["update-ref", "reset"], JSON.stringify(calls));

  git(repo, "commit", "-q", "--allow-empty", "-m", "moved on");
  calls.length = 0;
  const moved = await wts.create(repo, "a3", "godel/a3", false);
  assert.equal(moved.base, git(repo, "rev-parse", "HEAD"));
  assert.notEqual(moved.base, first.base);
  assert.ok(!ranRevParse(), JSON.stringify(calls));
  assert.equal(git(moved.path, "log", "-1", "--format=%s"), "moved on");

  // A detached HEAD is read as well; a packed branch is git's to read.
  git(repo, "checkout", "-q", "--detach", first.base);
  calls.length = 0;
  const detached = await wts.create(repo, "a4", "godel/a4", false);
  assert.equal(detached.base, first.base);
  assert.ok(!ranRevParse(), JSON.stringify(calls));
  git(repo, "checkout", "-q", "-");
  git(repo, "pack-refs", "--all");
  assert.ok(!existsSync(join(repo, ".git", "refs", "heads", git(repo, "branch", "--show-current"))));
  calls.length = 0;
  const packed = await wts.create(repo, "a5", "godel/a5", false);
  assert.equal(packed.base, moved.base);
  assert.ok(ranRevParse(), JSON.stringify(calls));

  // A repository path that is itself a linked worktree: its own HEAD, not the main one's.
  const side = join(dir, "side");
  git(repo, "worktree", "add", "-q", "-b", "side", side, first.base);
  await wts.create(side, "a6", "godel/a6", false);
  git(side, "commit", "-q", "--allow-empty", "-m", "on the side");
  calls.length = 0;
  const fromSide = await wts.create(side, "a7", "godel/a7", false);
  assert.equal(fromSide.base, git(side, "rev-parse", "HEAD"));
  assert.notEqual(fromSide.base, git(repo, "rev-parse", "HEAD"));
  assert.ok(!ranRevParse(), JSON.stringify(calls));
  git(repo, "fsck", "--strict");
});

test("the commits of a branch that did not move cost no git process; a commit on it is listed", async (t) => {
  // A thousand runs end at once: each lists its branch's commits, most of them none.
  const dir = tempDir(t);
  const repo = makeRepo(join(dir, "repo"));
  const { wts, calls } = recorded(join(dir, "wt"));
  const wt = await wts.create(repo, "a1", "godel/a1", false);
  calls.length = 0;
  assert.deepEqual(await wts.commits(wt), []);
  assert.deepEqual(calls, []);
  git(wt.path, "commit", "-q", "--allow-empty", "-m", "work");
  assert.deepEqual(await wts.commits(wt), [git(repo, "rev-parse", "godel/a1")]);
  assert.deepEqual(calls.map((args) => args[0]), ["rev-list"]);
});

/** A worktree on godel/a1 whose branch ref the agent replaced: `replace(ref, dir, wt)`. */
async function refReplaced(t, replace) {
  const dir = tempDir(t);
  const repo = makeRepo(join(dir, "repo"));
  const { wts, calls } = recorded(join(dir, "wt"));
  const wt = await wts.create(repo, "a1", "godel/a1", false);
  const ref = join(repo, ".git", "refs", "heads", "godel", "a1");
  rmSync(ref);
  replace(ref, dir, wt);
  calls.length = 0;
  return { wts, calls, wt };
}

test("a git that hangs on a FIFO at the branch's ref is killed after the git timeout, and its slot is freed", { timeout: 30_000 }, async (t) => {
  // The agent can write its branch's ref: a FIFO there makes git's open of it wait for ever.
  const { wts, calls, wt } = await refReplaced(t, (ref) => execFileSync("mkfifo", [ref]));
  const saved = gitTimeout.seconds;
  gitTimeout.seconds = 1;
  t.after(() => (gitTimeout.seconds = saved));
  const started = performance.now();
  await assert.rejects(
    wts.commits(wt),
    (err) => err instanceof WorktreeError && err.message === "git rev-list --reverse did not finish within 1s and was stopped",
  );
  assert.ok(performance.now() - started < 5000, `${Math.round(performance.now() - started)} ms`);
  assert.deepEqual(calls.map((args) => args[0]), ["rev-list"]);
  // Four more hung gits, and the next one still gets a slot.
  await Promise.all(Array.from({ length: 4 }, () => assert.rejects(wts.commits(wt), /did not finish within 1s/)));
  assert.equal(await runGit(wt.common, ["rev-parse", "--git-common-dir"]), ".");
});

test("a symlink at the branch's ref is not followed to read it: git is asked", async (t) => {
  const { wts, calls, wt } = await refReplaced(t, (ref, dir, wt) => {
    writeFileSync(join(dir, "elsewhere"), `${wt.base}\n`);
    symlinkSync(join(dir, "elsewhere"), ref);
  });
  assert.deepEqual(await wts.commits(wt), []);
  assert.deepEqual(calls.map((args) => args[0]), ["rev-list"]);
});

/** Runs fn with the worker's stderr lines collected (its warnings), and returns them parsed. */
async function warnings(fn) {
  const lines = [];
  const write = process.stderr.write;
  process.stderr.write = (chunk, ...rest) => {
    const text = String(chunk);
    if (text.startsWith("{")) lines.push(JSON.parse(text));
    else return write.call(process.stderr, chunk, ...rest);
    return true;
  };
  try {
    await fn();
  } finally {
    process.stderr.write = write;
  }
  return lines;
}

test("a branch lock a killed run left does not stop a new agent's worktree", async (t) => {
  // A run killed during `git commit` or a branch update leaves <common>/refs/heads/<branch>.lock:
  // creating the branch failed with "Unable to create '...lock': File exists".
  const dir = tempDir(t);
  const repo = makeRepo(join(dir, "repo"));
  const wts = new Worktrees(join(dir, "wt"));
  const lock = join(repo, ".git", "refs", "heads", "godel", "a1.lock");
  mkdirSync(join(lock, ".."), { recursive: true });
  writeFileSync(lock, "");
  let wt;
  const logged = await warnings(async () => (wt = await wts.create(repo, "a1", "godel/a1", false)));
  assert.ok(!existsSync(lock));
  assert.deepEqual(logged.map((l) => [l.level, l.msg, l.lock]), [["WARN", "removed a git lock a killed run left", lock]]);
  assert.equal(git(repo, "rev-parse", "godel/a1"), git(repo, "rev-parse", "main"));
  git(wt.path, "commit", "-q", "--allow-empty", "-m", "work");
  assert.equal(git(repo, "log", "-1", "--format=%s", "godel/a1"), "work");
});

test("a reused worktree's index and HEAD locks a killed run left are removed, and git works in it", async (t) => {
  // The agent's run killed inside git (`git add`, `git commit`): its restarted run's commit failed.
  const dir = tempDir(t);
  const repo = makeRepo(join(dir, "repo"));
  const wts = new Worktrees(join(dir, "wt"));
  const first = await wts.create(repo, "a1", "godel/a1", false);
  const locks = [join(first.admin, "index.lock"), join(first.admin, "HEAD.lock")];
  for (const lock of locks) writeFileSync(lock, "");
  let again;
  const logged = await warnings(async () => (again = await wts.create(repo, "a1", "godel/a1", true)));
  assert.equal(again.admin, first.admin);
  for (const lock of locks) assert.ok(!existsSync(lock), lock);
  assert.deepEqual(logged.map((l) => l.lock), locks);
  writeFileSync(join(again.path, "new.txt"), "work\n");
  git(again.path, "add", "new.txt");
  git(again.path, "commit", "-q", "-m", "work");
  assert.equal(git(again.path, "status", "--porcelain"), "");
  assert.equal(git(repo, "log", "-1", "--format=%s", "godel/a1"), "work");
  // Nothing to remove: no warning.
  assert.deepEqual(await warnings(() => wts.create(repo, "a1", "godel/a1", true)), []);
});

test("no branch name leads the lock removal out of refs/heads", async (t) => {
  const dir = tempDir(t);
  const repo = makeRepo(join(dir, "repo"));
  const outside = join(repo, ".git", "refs", "x.lock");
  writeFileSync(outside, "");
  // git refuses the name before any lock is looked at...
  await assert.rejects(new Worktrees(join(dir, "wt")).create(repo, "a1", "../x", false), /check-ref-format/);
  // ...and were git to take it, the worker refuses it all the same.
  const lenient = async (cwd, args, env) => (args[0] === "check-ref-format" ? "" : runGit(cwd, args, env));
  await assert.rejects(new Worktrees(join(dir, "wt"), lenient).create(repo, "a1", "../x", false), /does not name a ref in refs\/heads/);
  assert.ok(existsSync(outside));
});
