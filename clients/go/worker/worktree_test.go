package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Agents' worktrees made and removed without `git worktree add/remove` (which read every
// worktree of the repository), and git taking them for its own
// (tests/unit/test_worker_worktrees.py has the same tests of the Python worker).

// repoWithReadme is a repository with one commit of README.md.
func repoWithReadme(t *testing.T) string {
	t.Helper()
	repo := t.TempDir()
	gitT(t, repo, "init", "-q")
	if err := os.WriteFile(filepath.Join(repo, "README.md"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitT(t, repo, "add", "README.md")
	gitT(t, repo, "commit", "-q", "-m", "init")
	return repo
}

// gitT runs git in dir as a test user and returns its trimmed stdout.
func gitT(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=test", "-c", "user.email=test@example.com"}, args...)...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %v in %s: %v: %s", args, dir, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// gitCalls records the git commands the worktrees run, in order, until the test ends.
type gitCalls struct {
	mu    sync.Mutex
	calls [][]string
}

func recordGit(t *testing.T) *gitCalls {
	t.Helper()
	rec := &gitCalls{}
	real := runGit
	runGit = func(ctx context.Context, dir string, env map[string]string, args ...string) (string, error) {
		rec.mu.Lock()
		rec.calls = append(rec.calls, args)
		rec.mu.Unlock()
		return real(ctx, dir, env, args...)
	}
	t.Cleanup(func() { runGit = real })
	return rec
}

func (g *gitCalls) clear() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = nil
}

func (g *gitCalls) all() [][]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.calls)
}

func (g *gitCalls) commands() []string {
	var out []string
	for _, c := range g.all() {
		out = append(out, c[0])
	}
	return out
}

func TestANewWorktreeReadsNoOtherWorktree(t *testing.T) {
	ctx := context.Background()
	repo := repoWithReadme(t)
	ws := newWorktrees(filepath.Join(t.TempDir(), "wt"))
	errs := make(chan error, 20)
	var wg sync.WaitGroup
	for n := range 20 {
		wg.Go(func() {
			_, err := ws.create(ctx, repo, fmt.Sprintf("a%d", n), fmt.Sprintf("godel/a%d", n), false)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	calls := recordGit(t)
	last := mustCreate(t, ws, repo, "last")
	// Not even a rev-parse: HEAD's commit is read from its files once git has said where they are.
	if got := calls.commands(); !slices.Equal(got, []string{"update-ref", "reset"}) {
		t.Fatalf("git commands %v, want update-ref, reset only", calls.all())
	}
	entry := ""
	for block := range strings.SplitSeq(gitT(t, repo, "worktree", "list", "--porcelain"), "\n\n") {
		if strings.HasPrefix(block, "worktree "+resolve(last.path)+"\n") {
			entry = block
		}
	}
	if !strings.Contains(entry, "branch refs/heads/godel/last") || strings.Contains(entry, "locked") {
		t.Fatalf("git lists the worktree as %q", entry)
	}
	if want := filepath.Join(resolve(repo), ".git", "worktrees", "last"); last.admin != want {
		t.Errorf("admin dir %s, want %s", last.admin, want)
	}
	if head := gitT(t, repo, "rev-parse", "HEAD"); last.base != head {
		t.Errorf("base %s, want %s", last.base, head)
	}
	if status := gitT(t, last.path, "status", "--porcelain"); status != "" {
		t.Errorf("status of the new worktree: %q", status)
	}
	if readme, err := os.ReadFile(filepath.Join(last.path, "README.md")); err != nil || string(readme) != "hello\n" {
		t.Errorf("README.md of the new worktree: %q, %v", readme, err)
	}
	gitT(t, last.path, "commit", "-q", "--allow-empty", "-m", "work")
	commits, err := ws.commits(ctx, last)
	if err != nil || !slices.Equal(commits, []string{gitT(t, repo, "rev-parse", "godel/last")}) {
		t.Errorf("commits %v, %v", commits, err)
	}
	gitT(t, repo, "fsck", "--strict")
	gitT(t, repo, "worktree", "prune")
	if n := len(strings.Split(gitT(t, repo, "worktree", "list"), "\n")); n != 22 {
		t.Errorf("%d worktrees listed after prune, want 22", n)
	}
}

func TestRemovingAWorktreeDeletesItAndGitsRecordOfIt(t *testing.T) {
	ctx := context.Background()
	repo := repoWithReadme(t)
	ws := newWorktrees(filepath.Join(t.TempDir(), "wt"))
	first := mustCreate(t, ws, repo, "a1")
	second := mustCreate(t, ws, repo, "a2")
	gitT(t, first.path, "commit", "-q", "--allow-empty", "-m", "kept")
	if err := os.WriteFile(filepath.Join(first.path, "untracked.txt"), []byte("scratch"), 0o644); err != nil {
		t.Fatal(err)
	}
	calls := recordGit(t)
	if err := ws.remove(ctx, repo, first.path); err != nil {
		t.Fatal(err)
	}
	for _, c := range calls.all() {
		if slices.Equal(c[:min(2, len(c))], []string{"worktree", "remove"}) {
			t.Errorf("git commands %v: git worktree remove ran", calls.all())
		}
	}
	for _, gone := range []string{first.path, first.admin} {
		if _, err := os.Lstat(gone); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is left: %v", gone, err)
		}
	}
	if list := gitT(t, repo, "worktree", "list"); strings.Contains(list, first.path) {
		t.Errorf("git still lists %s:\n%s", first.path, list)
	}
	if subject := gitT(t, repo, "log", "-1", "--format=%s", "godel/a1"); subject != "kept" {
		t.Errorf("branch godel/a1 is at %q", subject)
	}
	// The last worktree takes <common>/worktrees with it, as git's own remove does.
	if err := ws.remove(ctx, repo, second.path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(repo, ".git", "worktrees")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("<common>/worktrees is left: %v", err)
	}
	// A locked worktree is git's to refuse.
	third := mustCreate(t, ws, repo, "a3")
	gitT(t, repo, "worktree", "lock", third.path)
	if err := ws.remove(ctx, repo, third.path); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Errorf("removing a locked worktree: %v", err)
	}
	if st, err := os.Stat(third.path); err != nil || !st.IsDir() {
		t.Errorf("the locked worktree is gone: %v", err)
	}
}

// A worker knows the git directory of the repositories it added worktrees to: removing one runs
// no git (a thousand agents cleaned up at once each forked a rev-parse).
func TestRemovingAWorktreeTheWorkerAddedRunsNoGit(t *testing.T) {
	ctx := context.Background()
	repo := repoWithReadme(t)
	ws := newWorktrees(filepath.Join(t.TempDir(), "wt"))
	wt := mustCreate(t, ws, repo, "a1")
	calls := recordGit(t)
	if err := ws.remove(ctx, repo, wt.path); err != nil {
		t.Fatal(err)
	}
	if got := calls.commands(); slices.Contains(got, "rev-parse") || len(got) != 0 {
		t.Errorf("git commands %v removing a worktree this worker added, want none (no rev-parse)", calls.all())
	}
	assertRemoved(t, repo, wt)
}

// After a restart the worker knows nothing of the repository, or of the worktree's own one when
// CLEANUP names no repository: git says where their git directory is.
func TestAWorkerRemovesAWorktreeItDidNotAdd(t *testing.T) {
	ctx := context.Background()
	repo := repoWithReadme(t)
	root := filepath.Join(t.TempDir(), "wt")
	before := newWorktrees(root)
	first := mustCreate(t, before, repo, "a1")
	second := mustCreate(t, before, repo, "a2")
	calls := recordGit(t)
	if err := newWorktrees(root).remove(ctx, repo, first.path); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(calls.commands(), "rev-parse") {
		t.Errorf("git commands %v after a restart, want a rev-parse", calls.all())
	}
	assertRemoved(t, repo, first)
	if err := newWorktrees(root).remove(ctx, "", second.path); err != nil {
		t.Fatal(err)
	}
	assertRemoved(t, repo, second)
}

// A repository replaced since the worker added worktrees to it (a linked worktree of another,
// now a repository of its own): the git directory the worker knew does not register the
// worktree and git is asked; a directory that is no worktree is deleted by neither.
func TestARemovalDoesNotTrustWhatTheWorkerKnewOfAReplacedRepository(t *testing.T) {
	ctx := context.Background()
	main := repoWithReadme(t)
	repo := filepath.Join(t.TempDir(), "repo")
	gitT(t, main, "worktree", "add", "-q", "-b", "side", repo)
	root := filepath.Join(t.TempDir(), "wt")
	ws := newWorktrees(root)
	old := mustCreate(t, ws, repo, "a1")
	gitT(t, main, "worktree", "remove", repo)
	if err := os.Mkdir(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	gitT(t, repo, "init", "-q")
	gitT(t, repo, "commit", "-q", "--allow-empty", "-m", "init")
	wt, err := newWorktrees(root).create(ctx, repo, "b1", "godel/b1", false)
	if err != nil {
		t.Fatal(err)
	}
	calls := recordGit(t)
	if err := ws.remove(ctx, repo, wt.path); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(calls.commands(), "rev-parse") {
		t.Errorf("git commands %v for a replaced repository, want a rev-parse", calls.all())
	}
	assertRemoved(t, repo, wt)

	// Its .git file names a worktree's directory in the git directory the worker knew.
	fake := filepath.Join(root, "fake")
	if err := os.MkdirAll(fake, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{".git": "gitdir: " + old.admin + "\n", "kept.txt": "kept\n"} {
		if err := os.WriteFile(filepath.Join(fake, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := ws.remove(ctx, repo, fake); err == nil {
		t.Error("removing a directory that is no worktree succeeded")
	}
	if _, err := os.Stat(filepath.Join(fake, "kept.txt")); err != nil {
		t.Errorf("the directory that is no worktree was deleted: %v", err)
	}
	if _, err := os.Stat(filepath.Join(old.path, "README.md")); err != nil {
		t.Errorf("the worktree the fake names was deleted: %v", err)
	}
}

// assertRemoved: the worktree, git's directory of it and its .base file are gone, git lists it
// no more, its branch stays.
func assertRemoved(t *testing.T, repo string, wt *worktree) {
	t.Helper()
	for _, gone := range []string{wt.path, wt.admin, wt.path + ".base"} {
		if _, err := os.Lstat(gone); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is left: %v", gone, err)
		}
	}
	if list := gitT(t, repo, "worktree", "list"); strings.Contains(list, wt.path) {
		t.Errorf("git still lists %s:\n%s", wt.path, list)
	}
	gitT(t, repo, "rev-parse", "--verify", "--quiet", "refs/heads/"+wt.branch)
}

// git copies the sparse-checkout patterns into a new worktree; anything but the plain case is
// left to `git worktree add`.
func TestARepositoryWithSparseCheckoutGetsGitsOwnAdd(t *testing.T) {
	repo := repoWithReadme(t)
	gitT(t, repo, "sparse-checkout", "set", "--no-cone", "/README.md")
	calls := recordGit(t)
	wt, err := newWorktrees(filepath.Join(t.TempDir(), "wt")).create(context.Background(), repo, "a1", "godel/a1", false)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"worktree", "add", "-b", "godel/a1", wt.path, wt.base}
	if !slices.ContainsFunc(calls.all(), func(c []string) bool { return slices.Equal(c, want) }) {
		t.Errorf("git commands %v, want %v among them", calls.all(), want)
	}
	if patterns, err := os.ReadFile(filepath.Join(wt.admin, "info", "sparse-checkout")); err != nil || string(patterns) != "/README.md\n" {
		t.Errorf("sparse-checkout of the worktree: %q, %v", patterns, err)
	}
}

func TestACheckoutThatFailsLeavesNothingBehind(t *testing.T) {
	ctx := context.Background()
	repo := repoWithReadme(t)
	root := filepath.Join(t.TempDir(), "wt")
	ws := newWorktrees(root)
	real := runGit
	runGit = func(ctx context.Context, dir string, env map[string]string, args ...string) (string, error) {
		if args[0] == "reset" {
			return "", errors.New("git reset failed: disk full")
		}
		return real(ctx, dir, env, args...)
	}
	t.Cleanup(func() { runGit = real })
	if _, err := ws.create(ctx, repo, "a1", "godel/a1", false); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("create with a failing checkout: %v", err)
	}
	for _, gone := range []string{filepath.Join(root, "a1"), filepath.Join(repo, ".git", "worktrees", "a1")} {
		if _, err := os.Lstat(gone); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is left: %v", gone, err)
		}
	}
	runGit = real
	// The branch stays (as after a failed `git worktree add -b`): the next run checks it out.
	again := mustCreate(t, ws, repo, "a1")
	if status := gitT(t, again.path, "status", "--porcelain"); status != "" {
		t.Errorf("status of the worktree: %q", status)
	}
}

// A worker killed while it added a worktree leaves it locked "initializing": never reused as is,
// but removed and added again on its branch, whatever point the add had reached.
func TestAWorktreeWhoseAddNeverFinishedIsAddedAgain(t *testing.T) {
	ctx := context.Background()
	repo := repoWithReadme(t)
	common := filepath.Join(resolve(repo), ".git")
	ws := newWorktrees(filepath.Join(t.TempDir(), "wt"))
	head := gitT(t, repo, "rev-parse", "HEAD")
	for _, died := range []struct {
		when, id string
		crash    func(t *testing.T, path string)
	}{
		{"before its checkout", "h1", func(t *testing.T, path string) {}},
		{"before its .git file", "h2", func(t *testing.T, path string) {
			admin := filepath.Join(common, "worktrees", "h2")
			for _, f := range []string{filepath.Join(path, ".git"), filepath.Join(admin, "HEAD"), filepath.Join(admin, "commondir")} {
				if err := os.Remove(f); err != nil {
					t.Fatal(err)
				}
			}
		}},
	} {
		t.Run(died.when, func(t *testing.T) {
			id, crash := died.id, died.crash
			path := filepath.Join(ws.root, id)
			if err := os.MkdirAll(ws.root, 0o755); err != nil {
				t.Fatal(err)
			}
			err := ws.locked(common, func() error {
				_, err := ws.addPlain(ctx, repo, common, path, "godel/"+id, head)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			crash(t, path)
			again, err := ws.create(ctx, repo, id, "godel/"+id, true)
			if err != nil {
				t.Fatal(err)
			}
			if status := gitT(t, again.path, "status", "--porcelain"); status != "" {
				t.Errorf("status of the worktree added again: %q", status)
			}
			if _, err := os.Stat(filepath.Join(again.path, "README.md")); err != nil {
				t.Errorf("the worktree added again is not checked out: %v", err)
			}
		})
	}
	// git's own add, killed during its checkout: the work on the branch is kept.
	first := mustCreate(t, ws, repo, "a1")
	gitT(t, first.path, "commit", "-q", "--allow-empty", "-m", "kept")
	gitT(t, repo, "worktree", "lock", "--reason", "initializing", first.path)
	again, err := ws.create(ctx, repo, "a1", "godel/a1", true)
	if err != nil {
		t.Fatal(err)
	}
	if list := gitT(t, repo, "worktree", "list", "--porcelain"); strings.Contains(list, "locked") {
		t.Errorf("a worktree is still locked:\n%s", list)
	}
	if subject := gitT(t, again.path, "log", "-1", "--format=%s"); subject != "kept" {
		t.Errorf("the worktree added again is at %q", subject)
	}
	// An add that died before git registered anything leaves an empty directory.
	if err := os.Mkdir(filepath.Join(ws.root, "a2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ws.create(ctx, repo, "a2", "godel/a2", false); err != nil {
		t.Fatal(err)
	}
	gitT(t, repo, "fsck", "--strict")
}

// writeLocks writes empty lock files, as a run killed in the middle of a git command leaves them.
func writeLocks(t *testing.T, locks ...string) {
	t.Helper()
	for _, lock := range locks {
		if err := os.WriteFile(lock, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// assertGone fails the test for each of the files that still exists.
func assertGone(t *testing.T, files ...string) {
	t.Helper()
	for _, f := range files {
		if _, err := os.Lstat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still there (%v)", f, err)
		}
	}
}

// A run killed during `git commit` or a branch update leaves <branch>.lock in refs/heads: the
// agent's branch is created all the same, and added again on it once its worktree is gone.
func TestABranchLockAKilledRunLeftDoesNotStopTheAgentsWorktree(t *testing.T) {
	ctx := context.Background()
	repo := repoWithReadme(t)
	ws := newWorktrees(filepath.Join(t.TempDir(), "wt"))
	first := mustCreate(t, ws, repo, "a1")
	lock := filepath.Join(first.common, "refs", "heads", "godel", "a2.lock")
	writeLocks(t, lock)
	second, err := ws.create(ctx, repo, "a2", "godel/a2", false)
	if err != nil {
		t.Fatalf("a new agent's worktree with its branch's lock left behind: %v", err)
	}
	assertGone(t, lock)
	gitT(t, second.path, "commit", "-q", "--allow-empty", "-m", "work")
	// The worktree removed, its branch kept: git's own add puts it back on the branch.
	if err := ws.remove(ctx, repo, first.path); err != nil {
		t.Fatal(err)
	}
	lock = filepath.Join(first.common, "refs", "heads", "godel", "a1.lock")
	writeLocks(t, lock)
	again, err := ws.create(ctx, repo, "a1", "godel/a1", true)
	if err != nil {
		t.Fatal(err)
	}
	assertGone(t, lock)
	gitT(t, again.path, "commit", "-q", "--allow-empty", "-m", "after the crash")
	if subject := gitT(t, repo, "log", "-1", "--format=%s", "godel/a1"); subject != "after the crash" {
		t.Errorf("branch godel/a1 is at %q", subject)
	}
}

// A restarted agent reuses its worktree: the index.lock and HEAD.lock its killed run left in
// git's directory of the worktree are removed, and git works in it again.
func TestAReusedWorktreeLosesTheGitLocksAKilledRunLeft(t *testing.T) {
	ctx := context.Background()
	repo := repoWithReadme(t)
	ws := newWorktrees(filepath.Join(t.TempDir(), "wt"))
	first := mustCreate(t, ws, repo, "a1")
	locks := []string{filepath.Join(first.admin, "index.lock"), filepath.Join(first.admin, "HEAD.lock")}
	writeLocks(t, locks...)
	again, err := ws.create(ctx, repo, "a1", "godel/a1", true)
	if err != nil {
		t.Fatal(err)
	}
	if again.admin != first.admin {
		t.Errorf("admin dir %s, want %s", again.admin, first.admin)
	}
	assertGone(t, locks...)
	if err := os.WriteFile(filepath.Join(again.path, "NOTES.md"), []byte("notes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitT(t, again.path, "add", "NOTES.md")
	gitT(t, again.path, "commit", "-q", "-m", "after the crash")
	if status := gitT(t, again.path, "status", "--porcelain"); status != "" {
		t.Errorf("status after the commit: %q", status)
	}
	if subject := gitT(t, repo, "log", "-1", "--format=%s", "godel/a1"); subject != "after the crash" {
		t.Errorf("branch godel/a1 is at %q", subject)
	}
}

// The branch's lock file is looked for in refs/heads only, whatever the name or a link there.
func TestABranchLockIsNeverLookedForOutsideRefsHeads(t *testing.T) {
	common := t.TempDir()
	heads := filepath.Join(common, "refs", "heads")
	if err := os.MkdirAll(filepath.Join(heads, "godel"), 0o755); err != nil {
		t.Fatal(err)
	}
	if lock, err := branchLock(common, "godel/a1"); err != nil || lock != filepath.Join(heads, "godel", "a1.lock") {
		t.Errorf("lock of godel/a1: %q, %v", lock, err)
	}
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(heads, "godel", "out")); err != nil {
		t.Fatal(err)
	}
	for _, branch := range []string{"../../config", "godel/../../x", "/etc/x", "", "a//b", "a/./b", "godel/out/x"} {
		if lock, err := branchLock(common, branch); err == nil {
			t.Errorf("branch %q: lock %s, want an error", branch, lock)
		}
	}
}

// A new agent starts from the repository's HEAD as it is now, read from HEAD's files; a packed
// branch is git's to read.
func TestANewAgentStartsFromTheRepositorysHeadAsItIsNow(t *testing.T) {
	ctx := context.Background()
	repo := repoWithReadme(t)
	ws := newWorktrees(filepath.Join(t.TempDir(), "wt"))
	calls := recordGit(t)
	create := func(repo, id string) *worktree {
		t.Helper()
		wt, err := ws.create(ctx, repo, id, "godel/"+id, false)
		if err != nil {
			t.Fatal(err)
		}
		return wt
	}
	ranRevParse := func() bool {
		return slices.Contains(calls.commands(), "rev-parse")
	}
	first := create(repo, "a1")
	if head := gitT(t, repo, "rev-parse", "HEAD"); first.base != head || !ranRevParse() {
		t.Fatalf("first base %s (HEAD %s), git commands %v", first.base, head, calls.all())
	}
	calls.clear()
	same := create(repo, "a2")
	if got := calls.commands(); same.base != first.base || !slices.Equal(got, []string{"update-ref", "reset"}) {
		t.Errorf("base %s (want %s), git commands %v, want update-ref, reset only", same.base, first.base, calls.all())
	}

	gitT(t, repo, "commit", "-q", "--allow-empty", "-m", "moved on")
	calls.clear()
	moved := create(repo, "a3")
	if head := gitT(t, repo, "rev-parse", "HEAD"); moved.base != head || head == first.base {
		t.Errorf("base after HEAD moved %s, want %s", moved.base, head)
	}
	if ranRevParse() {
		t.Errorf("git commands %v after HEAD moved, want no rev-parse", calls.all())
	}
	if subject := gitT(t, moved.path, "log", "-1", "--format=%s"); subject != "moved on" {
		t.Errorf("the new worktree is at %q", subject)
	}

	gitT(t, repo, "checkout", "-q", "--detach", first.base)
	calls.clear()
	if detached := create(repo, "a4"); detached.base != first.base || ranRevParse() {
		t.Errorf("base on a detached HEAD %s (want %s), git commands %v", detached.base, first.base, calls.all())
	}

	gitT(t, repo, "checkout", "-q", "-")
	gitT(t, repo, "pack-refs", "--all")
	branch := gitT(t, repo, "branch", "--show-current")
	if _, err := os.Lstat(filepath.Join(repo, ".git", "refs", "heads", branch)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the branch %s is still a loose ref: %v", branch, err)
	}
	calls.clear()
	if packed := create(repo, "a5"); packed.base != moved.base || !ranRevParse() {
		t.Errorf("base on a packed branch %s (want %s), git commands %v, want a rev-parse", packed.base, moved.base, calls.all())
	}

	// A repository path that is itself a linked worktree: its own HEAD, not the main one's.
	side := filepath.Join(t.TempDir(), "side")
	gitT(t, repo, "worktree", "add", "-q", "-b", "side", side, first.base)
	create(side, "a6")
	gitT(t, side, "commit", "-q", "--allow-empty", "-m", "on the side")
	calls.clear()
	fromSide := create(side, "a7")
	if head := gitT(t, side, "rev-parse", "HEAD"); fromSide.base != head || head == gitT(t, repo, "rev-parse", "HEAD") {
		t.Errorf("base from the linked worktree %s, want %s", fromSide.base, head)
	}
	if ranRevParse() {
		t.Errorf("git commands %v from the linked worktree, want no rev-parse", calls.all())
	}
	gitT(t, repo, "fsck", "--strict")
}

// A thousand runs ending together each list their branch's commits; a branch that did not move
// is answered from its ref file, without a git process.
func TestTheCommitsOfABranchThatDidNotMoveCostNoGit(t *testing.T) {
	ctx := context.Background()
	repo := repoWithReadme(t)
	ws := newWorktrees(filepath.Join(t.TempDir(), "wt"))
	wt := mustCreate(t, ws, repo, "a1")
	calls := recordGit(t)
	if commits, err := ws.commits(ctx, wt); err != nil || len(commits) != 0 {
		t.Errorf("commits of the unmoved branch: %v, %v", commits, err)
	}
	if got := calls.all(); len(got) != 0 {
		t.Errorf("git commands %v for an unmoved branch, want none", got)
	}
	gitT(t, wt.path, "commit", "-q", "--allow-empty", "-m", "work")
	commits, err := ws.commits(ctx, wt)
	if err != nil || !slices.Equal(commits, []string{gitT(t, repo, "rev-parse", "godel/a1")}) {
		t.Errorf("commits of the moved branch: %v, %v", commits, err)
	}
	if got := calls.commands(); !slices.Equal(got, []string{"rev-list"}) {
		t.Errorf("git commands %v for a moved branch, want rev-list", calls.all())
	}
	// A packed ref is git's to read.
	calls.clear()
	gitT(t, wt.path, "reset", "-q", "--hard", wt.base)
	gitT(t, repo, "pack-refs", "--all")
	if commits, err := ws.commits(ctx, wt); err != nil || len(commits) != 0 {
		t.Errorf("commits of the packed branch: %v, %v", commits, err)
	}
	if got := calls.commands(); !slices.Equal(got, []string{"rev-list"}) {
		t.Errorf("git commands %v for a packed branch, want rev-list", calls.all())
	}
}

// The agent can write its branch's ref: a FIFO there hangs any git that reads it (and the
// worker's own read of the ref must not wait on it), a symbolic link is not followed.
func TestAnAgentsRefCannotHangOrFoolTheWorker(t *testing.T) {
	ctx := context.Background()
	repo := repoWithReadme(t)
	ws := newWorktrees(filepath.Join(t.TempDir(), "wt"))
	wt := mustCreate(t, ws, repo, "a1")
	ref := filepath.Join(wt.common, "refs", "heads", "godel", "a1")
	replaceRef := func(put func() error) {
		t.Helper()
		if err := os.Remove(ref); err != nil {
			t.Fatal(err)
		}
		if err := put(); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("a FIFO", func(t *testing.T) {
		replaceRef(func() error { return syscall.Mkfifo(ref, 0o644) })
		// Whatever still waits on the FIFO when the test ends gets its end of file.
		t.Cleanup(func() {
			if fd, err := syscall.Open(ref, syscall.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				syscall.Close(fd)
			}
		})
		lowerGitTimeout(t)
		type result struct {
			commits []string
			err     error
		}
		done := make(chan result, 1)
		start := time.Now()
		go func() { c, err := ws.commits(ctx, wt); done <- result{c, err} }()
		select {
		case r := <-done:
			want := "git rev-list --reverse did not finish within 1s and was stopped"
			if r.err == nil || r.err.Error() != want {
				t.Errorf("commits with a FIFO at the ref: %v, %v; want the error %q", r.commits, r.err, want)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("listing commits took %s with a 1s git timeout", took)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("listing commits still waits on the FIFO after 10s")
		}
	})

	t.Run("a FIFO that holds the base", func(t *testing.T) {
		replaceRef(func() error { return syscall.Mkfifo(ref, 0o644) })
		fd, err := syscall.Open(ref, syscall.O_RDWR|syscall.O_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Close(fd) })
		if _, err := syscall.Write(fd, []byte(wt.base+"\n")); err != nil {
			t.Fatal(err)
		}
		lowerGitTimeout(t)
		calls := recordGit(t)
		_, _ = ws.commits(ctx, wt)
		if got := calls.commands(); !slices.Equal(got, []string{"rev-list"}) {
			t.Errorf("git commands %v for a ref that is a FIFO, want rev-list", calls.all())
		}
	})

	t.Run("a symbolic link", func(t *testing.T) {
		target := filepath.Join(t.TempDir(), "elsewhere")
		if err := os.WriteFile(target, []byte(wt.base+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		replaceRef(func() error { return os.Symlink(target, ref) })
		calls := recordGit(t)
		_, _ = ws.commits(ctx, wt)
		if got := calls.commands(); !slices.Equal(got, []string{"rev-list"}) {
			t.Errorf("git commands %v for a ref that is a symbolic link, want rev-list", calls.all())
		}
	})
}

// lowerGitTimeout: git is stopped after a second until the test ends.
func lowerGitTimeout(t *testing.T) {
	t.Helper()
	real := gitTimeout
	gitTimeout = time.Second
	t.Cleanup(func() { gitTimeout = real })
}

// A thousand runs brought up or killed together each run git in their worktree; forked all at
// once, a thousand git processes starve the worker.
func TestNoMoreThanAFewGitProcessesRunAtOnce(t *testing.T) {
	dir := t.TempDir()
	running, seen := filepath.Join(dir, "running"), filepath.Join(dir, "seen")
	if err := os.Mkdir(running, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	script := fmt.Sprintf("#!/bin/sh\ntouch %[1]q/$$\nls %[1]q | wc -l >> %[2]q\nsleep 0.3\nrm %[1]q/$$\necho \"$1\"\n", running, seen)
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "git"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	calls := 3 * gitProcesses
	outputs := make([]string, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			out, err := git(context.Background(), dir, fmt.Sprintf("call-%d", i))
			if err != nil {
				t.Error(err)
			}
			outputs[i] = out
		})
	}
	wg.Wait()
	for i, out := range outputs {
		if out != fmt.Sprintf("call-%d", i) {
			t.Errorf("call %d returned %q", i, out)
		}
	}
	raw, err := os.ReadFile(seen)
	if err != nil {
		t.Fatal(err)
	}
	counts := strings.Fields(string(raw))
	if len(counts) != calls {
		t.Fatalf("%d git processes ran, want %d", len(counts), calls)
	}
	for _, c := range counts {
		if n, err := strconv.Atoi(c); err != nil || n > gitProcesses {
			t.Fatalf("git processes running at once: %v (at most %d)", counts, gitProcesses)
		}
	}
}

// mustCreate adds agent id's worktree on branch godel/<id> (not reused), failing the test on an error.
func mustCreate(t *testing.T, ws *worktrees, repo, id string) *worktree {
	t.Helper()
	wt, err := ws.create(context.Background(), repo, id, "godel/"+id, false)
	if err != nil {
		t.Fatal(err)
	}
	return wt
}
