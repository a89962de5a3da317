package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Git worktrees of agents, as services/godel_server/worker/worktrees.py keeps them:
// <root>/<agent id> on branch godel/<agent id>, created from the repository's HEAD, with the
// base commit in <root>/<agent id>.base. Worktree changes on one repository are serialized by
// a mutex (this process) and flock on <git common dir>/godel-worktree.lock (other workers,
// Python ones included).
//
// `git worktree add` and `git worktree remove` read every worktree of the repository (their
// check that the path and the branch are not taken), so with a thousand agents on one
// repository each add read a thousand worktrees' files, ~40 ms at 350 and growing. A new
// agent's worktree is therefore made the way git's own add_worktree (and libgit2) makes it:
// the branch created by `git update-ref` (which refuses a branch that exists), the worktree's
// directory in <common>/worktrees/<agent id> written ("locked initializing" until its checkout
// is done), then `git reset --hard` in it. A removal deletes the worktree and that directory.
// Both fall back to git's own command whenever the repository or the worktree is anything but
// the plain case: a branch that exists, a name git would change or that is taken, sparse
// checkout, per-worktree config, reftable refs, or a locked worktree. The repository's
// post-checkout hook does not run: the worker runs no repository code outside a sandbox.

var safeID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// plainName: a name git keeps as is for a worktree's directory (sanitize_refname_component
// changes none of it).
var plainName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// plainBranch: branch names `git check-ref-format --branch` accepts without asking: components
// of letters, digits, '_' and '-', none starting with '-' (anything else is asked of git).
var plainBranch = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_-]*(?:/[A-Za-z0-9_][A-Za-z0-9_-]*)*$`)

// notPlain: what in a repository's git directory makes `git worktree add` do more than write
// the worktree's files and check it out (it copies the first two; the third stores refs
// differently).
var notPlain = []string{"info/sparse-checkout", "config.worktree", "reftable"}

var gitEnvDrop = map[string]bool{"GIT_DIR": true, "GIT_WORK_TREE": true, "GIT_INDEX_FILE": true, "GIT_COMMON_DIR": true, "GIT_OBJECT_DIRECTORY": true}

type worktree struct {
	path, branch, base, repo string
	common                   string // the repository's git directory
	admin                    string // <common>/worktrees/<name>
}

// writable: objects/, the directories of the branch's ref and reflog, the admin directory.
func (w *worktree) writable() ([]string, error) {
	refDir := filepath.Dir(filepath.Join("refs/heads", w.branch))
	dirs := []string{filepath.Join(w.common, "objects"), filepath.Join(w.common, refDir), filepath.Join(w.common, "logs", refDir), w.admin}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	return dirs, nil
}

// alternates: object directories the repository borrows from.
func (w *worktree) alternates() []string {
	var out []string
	for _, line := range readLines(filepath.Join(w.common, "objects", "info", "alternates")) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !filepath.IsAbs(line) {
			line = resolve(filepath.Join(w.common, "objects", line))
		}
		out = append(out, line)
	}
	return out
}

func gitIdentity(agentID string) map[string]string {
	name, email := "Godel agent "+agentID, "agent-"+agentID+"@godel.local"
	return map[string]string{"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}
}

// runGit runs every git command of this file; tests replace it to record or fail commands.
var runGit = gitProcess

// gitProcesses bounds the git commands a worker runs at once (GIT_PROCESSES of the Python
// worker): a thousand agents brought up or killed together each check out or read their
// worktree, and forking a thousand git processes at once starves the worker.
const gitProcesses = 4

var gitSlots = make(chan struct{}, gitProcesses)

// gitTimeout: a git that runs longer is killed (GIT_TIMEOUT_SECONDS of the Python worker). An
// agent can write its repository's refs, and a FIFO there makes a git that reads it wait for
// ever, holding one of the gitProcesses slots. A variable, so that tests can lower it.
var gitTimeout = 600 * time.Second

// gitWaitDelay: how long Wait waits, once git is killed or has exited, for the pipes a child of
// git may still hold open.
const gitWaitDelay = 5 * time.Second

func git(ctx context.Context, dir string, args ...string) (string, error) {
	return runGit(ctx, dir, nil, args...)
}

// gitProcess runs git in dir with the worker's environment (less the variables that would point
// git at another repository) plus env, and returns its stdout; the error carries git's stderr.
// A git still running after gitTimeout is killed.
func gitProcess(ctx context.Context, dir string, env map[string]string, args ...string) (string, error) {
	what := strings.Join(args[:min(2, len(args))], " ")
	select {
	case gitSlots <- struct{}{}:
		defer func() { <-gitSlots }()
	case <-ctx.Done():
		return "", fmt.Errorf("git %s failed: %v", what, ctx.Err())
	}
	runCtx, cancel := context.WithTimeout(ctx, gitTimeout)
	defer cancel()
	cmd := gitCommand(runCtx, dir, env, args)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() == nil && errors.Is(runCtx.Err(), context.DeadlineExceeded) {
			return "", fmt.Errorf("git %s did not finish within %gs and was stopped", what, gitTimeout.Seconds())
		}
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		if msg == "" {
			msg = err.Error()
		}
		return "", fmt.Errorf("git %s failed: %s", what, msg)
	}
	return strings.TrimSpace(stdout.String()), nil
}

// gitCommand: git in a process group of its own, killed with whatever it started when ctx is
// done; Wait gives up gitWaitDelay later on the pipes a child of git may still hold.
func gitCommand(ctx context.Context, dir string, env map[string]string, args []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = gitWaitDelay
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !gitEnvDrop[k] {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "GIT_TERMINAL_PROMPT=0")
	cmd.Env = append(cmd.Env, environ(env)...)
	return cmd
}

type worktrees struct {
	root  string
	mu    sync.Mutex
	locks map[string]*sync.Mutex
	// The git directories of each repository seen, whose HEAD a new agent's base is read from
	// instead of asking git.
	gitDirs map[string]gitDirs
}

// gitDirs: a repository's own git directory (<common> itself, or <common>/worktrees/<name> for
// a linked worktree) and its common one.
type gitDirs struct{ gitDir, common string }

func newWorktrees(root string) *worktrees {
	return &worktrees{root: root, locks: map[string]*sync.Mutex{}, gitDirs: map[string]gitDirs{}}
}

func (ws *worktrees) pathFor(agentID string) (string, error) {
	if !safeID.MatchString(agentID) {
		return "", fmt.Errorf("agent id %q cannot name a worktree directory", agentID)
	}
	return filepath.Join(ws.root, agentID), nil
}

func checkRepoPath(repo string) error {
	if !filepath.IsAbs(repo) {
		return fmt.Errorf("repository path %q must be absolute", repo)
	}
	if st, err := os.Stat(repo); err != nil || !st.IsDir() {
		return fmt.Errorf("repository %s does not exist or is not a directory", repo)
	}
	return nil
}

func absoluteIn(repo, raw string) string {
	if !filepath.IsAbs(raw) {
		raw = filepath.Join(repo, raw)
	}
	return resolve(raw)
}

func (ws *worktrees) commonDir(ctx context.Context, repo string) (string, error) {
	if err := checkRepoPath(repo); err != nil {
		return "", err
	}
	raw, err := git(ctx, repo, "rev-parse", "--git-common-dir")
	if err != nil {
		return "", fmt.Errorf("%s is not a git repository (%v)", repo, err)
	}
	return absoluteIn(repo, raw), nil
}

// commonDirAndHead: the repository's git directory and the commit its HEAD names: read from
// HEAD's files once git has said where they are (a git process less per agent), else asked of
// git in one process (the separate calls only say which of the two is wrong).
func (ws *worktrees) commonDirAndHead(ctx context.Context, repo string) (common, head string, err error) {
	if err := checkRepoPath(repo); err != nil {
		return "", "", err
	}
	ws.mu.Lock()
	dirs, seen := ws.gitDirs[repo]
	ws.mu.Unlock()
	if seen {
		if head := headCommit(dirs.gitDir, dirs.common); head != "" {
			return dirs.common, head, nil
		}
	}
	out, err := git(ctx, repo, "rev-parse", "--git-dir", "--git-common-dir", "--verify", "HEAD^{commit}")
	if lines := strings.Split(out, "\n"); err == nil && len(lines) == 3 {
		dirs = gitDirs{gitDir: absoluteIn(repo, lines[0]), common: absoluteIn(repo, lines[1])}
		ws.mu.Lock()
		ws.gitDirs[repo] = dirs
		ws.mu.Unlock()
		return dirs.common, lines[2], nil
	}
	if common, err = ws.commonDir(ctx, repo); err != nil {
		return "", "", err
	}
	if head, err = git(ctx, repo, "rev-parse", "--verify", "HEAD^{commit}"); err != nil {
		return "", "", fmt.Errorf("repository %s has no commit to start from (%v)", repo, err)
	}
	return common, head, nil
}

// locked runs fn holding the repository's worktree lock.
func (ws *worktrees) locked(common string, fn func() error) error {
	ws.mu.Lock()
	l, ok := ws.locks[common]
	if !ok {
		l = &sync.Mutex{}
		ws.locks[common] = l
	}
	ws.mu.Unlock()
	l.Lock()
	defer l.Unlock()
	f, err := os.OpenFile(filepath.Join(common, worktreeLockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return fn()
}

// registered: the worktrees git lists for the repository, each with whether git still locks it
// "initializing" (an add that never finished: its worker died).
func (ws *worktrees) registered(ctx context.Context, repo string) (map[string]bool, error) {
	out, err := git(ctx, repo, "worktree", "list", "--porcelain")
	if err != nil {
		return nil, err
	}
	result := map[string]bool{}
	current := ""
	for _, line := range strings.Split(out, "\n") {
		if p, ok := strings.CutPrefix(line, "worktree "); ok {
			current = resolve(p)
			result[current] = false
		} else if line == "locked initializing" && current != "" {
			result[current] = true
		}
	}
	return result, nil
}

// removeHalfAdded removes a worktree whose add never finished, never reused as is; when the add
// died before the worktree's .git file was written, git no longer takes the directory for a
// worktree and refuses to remove it: the directory, ours by its path and git's record of it, is
// deleted, and the record unlocked and pruned.
func removeHalfAdded(ctx context.Context, path, common string) error {
	_, err := git(ctx, common, "worktree", "remove", "--force", "--force", path)
	if err == nil {
		return nil
	}
	logger.Warn("deleting a worktree git cannot remove", "worktree", path, "error", err.Error())
	if err := os.RemoveAll(path); err != nil {
		return err
	}
	if _, err := git(ctx, common, "worktree", "unlock", path); err != nil {
		return err
	}
	_, err = git(ctx, common, "worktree", "prune")
	return err
}

// create makes (or, with reuse, reuses) the agent's worktree.
func (ws *worktrees) create(ctx context.Context, repo, agentID, branch string, reuse bool) (*worktree, error) {
	if repo == "" {
		return nil, errors.New("the assignment names no repository")
	}
	path, err := ws.pathFor(agentID)
	if err != nil {
		return nil, err
	}
	common, head, err := ws.commonDirAndHead(ctx, repo)
	if err != nil {
		return nil, err
	}
	if !plainBranch.MatchString(branch) || branch == "HEAD" {
		if _, err := git(ctx, repo, "check-ref-format", "--branch", branch); err != nil {
			return nil, err
		}
	}
	lock, err := branchLock(common, branch)
	if err != nil {
		return nil, err
	}
	baseFile := filepath.Join(ws.root, agentID+".base")
	if err := os.MkdirAll(ws.root, 0o755); err != nil {
		return nil, err
	}
	var base, fresh, admin string
	err = ws.locked(common, func() error {
		if err := clearStaleLocks(lock); err != nil {
			return err
		}
		if _, err := os.Lstat(path); err == nil {
			reg, err := ws.registered(ctx, repo)
			if err != nil {
				return err
			}
			if reg[resolve(path)] {
				if err := removeHalfAdded(ctx, path, common); err != nil {
					return err
				}
			}
			_ = os.Remove(path) // an empty directory: an add that died before git registered anything
			if _, err := os.Lstat(path); err == nil {
				if _, ok := reg[resolve(path)]; !ok {
					return fmt.Errorf("%s exists and is not a worktree of %s", path, repo)
				}
				if !reuse {
					return fmt.Errorf("worktree %s exists already (reuse_worktree is false)", path)
				}
				if base = readBase(baseFile); base == "" {
					base = head
				}
				if admin, err = adminDir(path, common); err != nil {
					return err
				}
				return clearStaleLocks(filepath.Join(admin, "index.lock"), filepath.Join(admin, "HEAD.lock"))
			}
		}
		// The common case, a new agent: one git call under the lock, and the checkout after it.
		if fresh, err = ws.addPlain(ctx, repo, common, path, branch, head); err != nil || fresh != "" {
			if err == nil {
				if err = os.WriteFile(baseFile, []byte(head+"\n"), 0o644); err != nil {
					deleteJunk(path, fresh)
				}
			}
			return err
		}
		base, err = ws.addWithGit(ctx, repo, path, branch, head, baseFile)
		return err
	})
	if err != nil {
		return nil, err
	}
	if fresh != "" {
		return ws.checkOut(ctx, fresh, &worktree{path: path, branch: branch, base: head, repo: repo, common: common})
	}
	if admin == "" {
		if admin, err = adminDir(path, common); err != nil {
			return nil, err
		}
	}
	return &worktree{path: path, branch: branch, base: base, repo: repo, common: common, admin: admin}, nil
}

// branchLock is the lock file git takes on the branch's ref, <common>/refs/heads/<branch>.lock;
// an error for a name whose lock would be anywhere else (git refuses such names already, and a
// directory of refs/heads an agent replaced by a link must not send a removal elsewhere).
func branchLock(common, branch string) (string, error) {
	heads := filepath.Join(common, "refs", "heads")
	lock := filepath.Join(heads, branch+".lock")
	if !filepath.IsLocal(branch) || filepath.Clean(branch) != branch {
		return "", fmt.Errorf("branch %q has no ref of its own in %s", branch, heads)
	}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(lock)); err == nil && !within(dir, resolve(heads)) {
		return "", fmt.Errorf("the ref directory of branch %q leads out of %s", branch, heads)
	}
	return lock, nil
}

// clearStaleLocks removes git's lock files a killed run left, which would make git refuse the
// agent's next run ("Unable to create '….lock': File exists"). Only under the repository's
// worktree lock and for the agent's own branch and worktree: the agent, the only one to take
// them, is not running. A lock that is not there (or cannot be: a file where its directory
// would be, which git then reports) is nothing to do.
func clearStaleLocks(locks ...string) error {
	for _, lock := range locks {
		err := os.Remove(lock)
		if err == nil {
			logger.Warn("removed a git lock a killed run left", "lock", lock)
		} else if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return fmt.Errorf("cannot remove the git lock %s: %v", lock, err)
		}
	}
	return nil
}

// addWithGit runs `git worktree add` (call under the lock) and returns the base; stale entries
// are pruned only when they get in the way.
func (ws *worktrees) addWithGit(ctx context.Context, repo, path, branch, head, baseFile string) (string, error) {
	var base string
	var add []string
	if ws.branchExists(ctx, repo, branch) {
		if base = readBase(baseFile); base == "" {
			var err error
			if base, err = git(ctx, repo, "merge-base", head, branch); err != nil {
				return "", err
			}
		}
		add = []string{"worktree", "add", path, branch}
	} else {
		base = head
		add = []string{"worktree", "add", "-b", branch, path, head}
	}
	if _, err := git(ctx, repo, add...); err != nil {
		if _, err := git(ctx, repo, "worktree", "prune"); err != nil {
			return "", err
		}
		if _, err := git(ctx, repo, add...); err != nil {
			return "", err
		}
	}
	return base, os.WriteFile(baseFile, []byte(base+"\n"), 0o644)
}

func (ws *worktrees) branchExists(ctx context.Context, repo, branch string) bool {
	_, err := git(ctx, repo, "rev-parse", "--verify", "--quiet", "refs/heads/"+branch)
	return err == nil
}

// addPlain creates the branch at head and writes the files of a worktree on it at path, as
// git's add_worktree does, and returns the worktree's directory in <common>/worktrees, still
// locked "initializing"; "" (nothing changed) where git's own add must do it. Call under the
// lock, with path absent.
func (ws *worktrees) addPlain(ctx context.Context, repo, common, path, branch, head string) (string, error) {
	name := filepath.Base(path)
	if !plainName.MatchString(name) {
		return "", nil
	}
	for _, p := range notPlain {
		if _, err := os.Lstat(filepath.Join(common, p)); err == nil {
			return "", nil
		}
	}
	admin := filepath.Join(common, "worktrees", name)
	if _, err := os.Lstat(admin); err == nil {
		return "", nil
	}
	// The empty old value makes update-ref refuse a branch that exists.
	if _, err := git(ctx, repo, "update-ref", "-m", "branch: Created from HEAD", "refs/heads/"+branch, head, ""); err != nil {
		if ws.branchExists(ctx, repo, branch) {
			return "", nil
		}
		return "", err
	}
	if err := writeWorktree(path, admin, branch); err != nil {
		deleteJunk(path, admin)
		return "", fmt.Errorf("cannot write the worktree %s: %v", path, err)
	}
	return admin, nil
}

// writeWorktree writes the files git's add_worktree writes before its checkout, in its order
// (the worktree's directory in <common>/worktrees is "locked initializing" until the checkout
// is done, and its gitdir file, which makes git list the worktree, comes before the worktree's
// .git file: an add that dies in between leaves a worktree create knows as half added).
func writeWorktree(path, admin, branch string) error {
	if err := os.Mkdir(filepath.Dir(admin), 0o777); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := os.Mkdir(admin, 0o777); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(admin, "locked"), []byte("initializing"), 0o666); err != nil {
		return err
	}
	if err := os.Mkdir(path, 0o777); err != nil {
		return err
	}
	dotGit := filepath.Join(resolve(path), ".git")
	for _, f := range []struct{ name, text string }{
		{filepath.Join(admin, "gitdir"), dotGit + "\n"},
		{filepath.Join(path, ".git"), "gitdir: " + admin + "\n"},
		{filepath.Join(admin, "commondir"), "../..\n"},
		{filepath.Join(admin, "HEAD"), "ref: refs/heads/" + branch + "\n"},
	} {
		if err := os.WriteFile(f.name, []byte(f.text), 0o666); err != nil {
			return err
		}
	}
	return nil
}

// deleteJunk deletes what a failed add leaves: the worktree and git's directory of it (git's
// remove_junk).
func deleteJunk(path, admin string) {
	_ = os.RemoveAll(path)
	_ = os.RemoveAll(admin)
}

// checkOut checks out the worktree addPlain wrote at w.path and unlocks it; deletes it when
// that fails (the branch stays, as after a failed `git worktree add -b`).
func (ws *worktrees) checkOut(ctx context.Context, admin string, w *worktree) (*worktree, error) {
	env := map[string]string{"GIT_DIR": filepath.Join(w.path, ".git"), "GIT_WORK_TREE": w.path}
	if _, err := runGit(ctx, w.path, env, "reset", "--hard", "--no-recurse-submodules", "--quiet"); err != nil {
		_ = ws.locked(w.common, func() error { deleteJunk(w.path, admin); return nil })
		return nil, err
	}
	if err := os.Remove(filepath.Join(admin, "locked")); err != nil {
		return nil, err
	}
	w.admin = admin
	return w, nil
}

// adminDir is the directory git keeps for the worktree at path, checked against the admin
// directory's own gitdir file (the agent controls the worktree's .git file).
func adminDir(path, common string) (string, error) {
	dotGit := filepath.Join(path, ".git")
	st, err := os.Lstat(dotGit)
	if err != nil || st.Mode()&os.ModeSymlink != 0 {
		return "", fmt.Errorf("%s is not a worktree's .git file", dotGit)
	}
	raw, err := os.ReadFile(dotGit)
	text := string(raw)
	if err != nil || !strings.HasPrefix(text, "gitdir:") {
		return "", fmt.Errorf("%s is not a worktree's .git file", dotGit)
	}
	admin := strings.TrimSpace(strings.TrimPrefix(text, "gitdir:"))
	if !filepath.IsAbs(admin) {
		admin = filepath.Join(path, admin)
	}
	admin = resolve(admin)
	back, _ := os.ReadFile(filepath.Join(admin, "gitdir"))
	if filepath.Dir(admin) != filepath.Join(common, "worktrees") || resolve(strings.TrimSpace(string(back))) != resolve(dotGit) {
		return "", fmt.Errorf("%s does not point at its own directory in %s", dotGit, filepath.Join(common, "worktrees"))
	}
	return admin, nil
}

func readBase(file string) string {
	raw, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(raw))
}

// commits on the agent's branch that are not on its base, oldest first (asked of the
// repository, not of the worktree).
func (ws *worktrees) commits(ctx context.Context, w *worktree) ([]string, error) {
	if id := looseRef(w.common, w.branch); id != "" && id == w.base {
		return nil, nil // the branch has not moved: no git process (a thousand runs end at once)
	}
	out, err := git(ctx, w.common, "rev-list", "--reverse", w.base+".."+w.branch)
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// commitID: what a loose ref holds, a SHA-1 or SHA-256 commit id.
var commitID = regexp.MustCompile(`^[0-9a-f]{40}(?:[0-9a-f]{24})?$`)

// smallFile is the trimmed text of a small regular file, read without following a link or
// waiting on a FIFO (an agent can write its branch's ref); "" for anything else.
func smallFile(path string) string {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return ""
	}
	buf := make([]byte, 256)
	n, err := syscall.Read(fd, buf)
	if err != nil || n < 0 {
		return ""
	}
	return strings.TrimSpace(string(buf[:n]))
}

// looseRef is the commit id in the branch's loose ref file, or "" where git must answer (a
// packed or symbolic ref, reftable, a name git would read differently, a file that holds no
// commit id).
func looseRef(common, branch string) string {
	if !plainBranch.MatchString(branch) {
		return ""
	}
	if id := smallFile(filepath.Join(common, "refs", "heads", branch)); commitID.MatchString(id) {
		return id
	}
	return ""
}

// headCommit is the commit the repository's HEAD names, from its files: a detached HEAD's id, or
// the loose ref of the branch it is on; "" where git must answer (a packed ref, a branch with no
// commit yet, reftable).
func headCommit(gitDir, common string) string {
	head := smallFile(filepath.Join(gitDir, "HEAD"))
	if commitID.MatchString(head) {
		return head
	}
	if branch, ok := strings.CutPrefix(head, "ref: refs/heads/"); ok {
		return looseRef(common, branch)
	}
	return ""
}

// remove removes a worktree (the branch stays) and prunes stale entries.
func (ws *worktrees) remove(ctx context.Context, repo, path string) error {
	if path == "" {
		return errors.New("CLEANUP names no worktree")
	}
	isDir := func() bool { st, err := os.Stat(path); return err == nil && st.IsDir() }
	known := repo != ""
	if repo == "" {
		if !isDir() {
			return nil
		}
		repo = path
	}
	common, admin, err := ws.removalDirs(ctx, repo, path, known)
	if err != nil {
		return err
	}
	if admin != "" {
		// Only a registered, unlocked worktree of this repository gets here: the worktree first,
		// then git's directory of it, as `git worktree remove` does.
		if err := os.RemoveAll(path); err != nil {
			return err
		}
		err = ws.locked(common, func() error { return deleteAdminDir(admin) })
	} else {
		err = ws.locked(common, func() error {
			if isDir() {
				// git refuses paths that are not its worktrees, so nothing else is ever deleted.
				_, err := git(ctx, common, "worktree", "remove", "--force", path)
				return err
			}
			_, err := git(ctx, common, "worktree", "prune")
			return err
		})
	}
	if err != nil {
		return err
	}
	if resolve(filepath.Dir(path)) == resolve(ws.root) {
		_ = os.Remove(filepath.Join(ws.root, filepath.Base(path)+".base"))
	}
	return nil
}

// removalDirs: the repository's git directory and plainAdminDir of the worktree in it. With
// useKnown, the git directory this worker learned when it added worktrees to the repository is
// taken without a git process (a thousand agents cleaned up at once), but only where
// plainAdminDir finds the worktree registered there; anything else (a restart, a repository
// moved or replaced since, a worktree git must remove) is asked of git.
func (ws *worktrees) removalDirs(ctx context.Context, repo, path string, useKnown bool) (common, admin string, err error) {
	if err := checkRepoPath(repo); err != nil {
		return "", "", err
	}
	ws.mu.Lock()
	dirs, seen := ws.gitDirs[repo]
	ws.mu.Unlock()
	if useKnown && seen {
		if admin := plainAdminDir(path, dirs.common); admin != "" {
			return dirs.common, admin, nil
		}
	}
	if common, err = ws.commonDir(ctx, repo); err != nil {
		return "", "", err
	}
	return common, plainAdminDir(path, common), nil
}

// plainAdminDir is git's directory of the worktree at path when `git worktree remove --force`
// would just delete both (a directory registered here, not locked, no per-worktree config); ""
// where git must decide.
func plainAdminDir(path, common string) string {
	if st, err := os.Lstat(path); err != nil || !st.IsDir() {
		return ""
	}
	admin, err := adminDir(path, common)
	if err != nil {
		return ""
	}
	for _, f := range []string{"locked", "config.worktree"} {
		if _, err := os.Lstat(filepath.Join(admin, f)); err == nil {
			return ""
		}
	}
	return admin
}

// deleteAdminDir deletes git's directory of a worktree, and <common>/worktrees when it was the
// last one (as git does).
func deleteAdminDir(admin string) error {
	if err := os.RemoveAll(admin); err != nil {
		return err
	}
	_ = os.Remove(filepath.Dir(admin))
	return nil
}
