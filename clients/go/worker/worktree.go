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
)

// Git worktrees of agents, as services/godel_server/worker/worktrees.py keeps them:
// <root>/<agent id> on branch godel/<agent id>, created from the repository's HEAD, with the
// base commit in <root>/<agent id>.base. Worktree changes on one repository are serialized by
// a mutex (this process) and flock on <git common dir>/godel-worktree.lock (other workers,
// Python ones included).

var safeID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

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

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !gitEnvDrop[k] {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "GIT_TERMINAL_PROMPT=0")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		if msg == "" {
			msg = err.Error()
		}
		return "", fmt.Errorf("git %s failed: %s", strings.Join(args[:min(2, len(args))], " "), msg)
	}
	return strings.TrimSpace(stdout.String()), nil
}

type worktrees struct {
	root  string
	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

func newWorktrees(root string) *worktrees {
	return &worktrees{root: root, locks: map[string]*sync.Mutex{}}
}

func (ws *worktrees) pathFor(agentID string) (string, error) {
	if !safeID.MatchString(agentID) {
		return "", fmt.Errorf("agent id %q cannot name a worktree directory", agentID)
	}
	return filepath.Join(ws.root, agentID), nil
}

func (ws *worktrees) commonDir(ctx context.Context, repo string) (string, error) {
	if !filepath.IsAbs(repo) {
		return "", fmt.Errorf("repository path %q must be absolute", repo)
	}
	if st, err := os.Stat(repo); err != nil || !st.IsDir() {
		return "", fmt.Errorf("repository %s does not exist or is not a directory", repo)
	}
	raw, err := git(ctx, repo, "rev-parse", "--git-common-dir")
	if err != nil {
		return "", fmt.Errorf("%s is not a git repository (%v)", repo, err)
	}
	if !filepath.IsAbs(raw) {
		raw = filepath.Join(repo, raw)
	}
	return resolve(raw), nil
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

func (ws *worktrees) registered(ctx context.Context, repo string) (map[string]string, error) {
	out, err := git(ctx, repo, "worktree", "list", "--porcelain")
	if err != nil {
		return nil, err
	}
	result := map[string]string{}
	current := ""
	for _, line := range strings.Split(out, "\n") {
		if p, ok := strings.CutPrefix(line, "worktree "); ok {
			current = resolve(p)
			result[current] = ""
		} else if b, ok := strings.CutPrefix(line, "branch "); ok && current != "" {
			result[current] = b
		}
	}
	return result, nil
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
	common, err := ws.commonDir(ctx, repo)
	if err != nil {
		return nil, err
	}
	head, err := git(ctx, repo, "rev-parse", "--verify", "HEAD^{commit}")
	if err != nil {
		return nil, fmt.Errorf("repository %s has no commit to start from (%v)", repo, err)
	}
	if _, err := git(ctx, repo, "check-ref-format", "--branch", branch); err != nil {
		return nil, err
	}
	baseFile := filepath.Join(ws.root, agentID+".base")
	if err := os.MkdirAll(ws.root, 0o755); err != nil {
		return nil, err
	}
	var base string
	err = ws.locked(common, func() error {
		if _, err := os.Lstat(path); err == nil {
			reg, err := ws.registered(ctx, repo)
			if err != nil {
				return err
			}
			if _, ok := reg[resolve(path)]; ok {
				if !reuse {
					return fmt.Errorf("worktree %s exists already (reuse_worktree is false)", path)
				}
				if base = readBase(baseFile); base == "" {
					base = head
				}
				return nil
			}
			return fmt.Errorf("%s exists and is not a worktree of %s", path, repo)
		}
		var add []string
		if _, err := git(ctx, repo, "rev-parse", "--verify", "--quiet", "refs/heads/"+branch); err == nil {
			if base = readBase(baseFile); base == "" {
				if base, err = git(ctx, repo, "merge-base", head, branch); err != nil {
					return err
				}
			}
			add = []string{"worktree", "add", path, branch}
		} else {
			base = head
			add = []string{"worktree", "add", "-b", branch, path, head}
		}
		if _, err := git(ctx, repo, add...); err != nil {
			if _, err := git(ctx, repo, "worktree", "prune"); err != nil {
				return err
			}
			if _, err := git(ctx, repo, add...); err != nil {
				return err
			}
		}
		return os.WriteFile(baseFile, []byte(base+"\n"), 0o644)
	})
	if err != nil {
		return nil, err
	}
	admin, err := adminDir(path, common)
	if err != nil {
		return nil, err
	}
	return &worktree{path: path, branch: branch, base: base, repo: repo, common: common, admin: admin}, nil
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
	out, err := git(ctx, w.common, "rev-list", "--reverse", w.base+".."+w.branch)
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// remove removes a worktree (the branch stays) and prunes stale entries.
func (ws *worktrees) remove(ctx context.Context, repo, path string) error {
	if path == "" {
		return errors.New("CLEANUP names no worktree")
	}
	isDir := func() bool { st, err := os.Stat(path); return err == nil && st.IsDir() }
	if repo == "" {
		if !isDir() {
			return nil
		}
		repo = path
	}
	common, err := ws.commonDir(ctx, repo)
	if err != nil {
		return err
	}
	err = ws.locked(common, func() error {
		if isDir() {
			_, err := git(ctx, common, "worktree", "remove", "--force", path)
			return err
		}
		_, err := git(ctx, common, "worktree", "prune")
		return err
	})
	if err != nil {
		return err
	}
	if resolve(filepath.Dir(path)) == resolve(ws.root) {
		_ = os.Remove(filepath.Join(ws.root, filepath.Base(path)+".base"))
	}
	return nil
}
