package worker

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Process groups of runs (services/godel_server/worker/procs.py, limits.py): every run's
// process starts as the leader of its own group, dies with the worker (PR_SET_PDEATHSIG; what
// the death signal misses, the reaper kills: reaper.go), and is recorded in
// <worktree root>/.pids/<worker pid>/<run id>, so that a later worker can kill what a dead one
// left running; a watchdog samples the trees against the runs' limits.

func signalGroup(pgid int, sig syscall.Signal) {
	if pgid > 1 {
		_ = syscall.Kill(-pgid, sig)
	}
}

func describeExit(code int) string {
	if code < 0 {
		return "killed by " + signalName(syscall.Signal(-code))
	}
	return fmt.Sprintf("exited with code %d", code)
}

func signalName(s syscall.Signal) string {
	names := map[syscall.Signal]string{syscall.SIGKILL: "SIGKILL", syscall.SIGTERM: "SIGTERM", syscall.SIGINT: "SIGINT", syscall.SIGSEGV: "SIGSEGV", syscall.SIGABRT: "SIGABRT", syscall.SIGHUP: "SIGHUP", syscall.SIGXCPU: "SIGXCPU"}
	if n, ok := names[s]; ok {
		return n
	}
	return fmt.Sprintf("signal %d", int(s))
}

type pidFiles struct{ base, dir string }

func newPidFiles(root string) *pidFiles {
	base := filepath.Join(root, ".pids")
	return &pidFiles{base: base, dir: filepath.Join(base, strconv.Itoa(os.Getpid()))}
}

func (p *pidFiles) write(runID string, pgids []int) {
	path := filepath.Join(p.dir, runID)
	if len(pgids) == 0 {
		_ = os.Remove(path)
		return
	}
	_ = os.MkdirAll(p.dir, 0o755)
	var b strings.Builder
	for _, g := range pgids {
		fmt.Fprintf(&b, "%d\n", g)
	}
	tmp := path + ".tmp"
	if os.WriteFile(tmp, []byte(b.String()), 0o644) == nil {
		_ = os.Rename(tmp, path)
	}
}

// killLeftovers kills the groups recorded by dead workers on this root whose processes carry
// that run's GODEL_RUN_ID, then deletes the records.
func (p *pidFiles) killLeftovers() []int {
	var killed []int
	entries, _ := os.ReadDir(p.base)
	for _, e := range entries {
		dir := filepath.Join(p.base, e.Name())
		if dir == p.dir || !e.IsDir() || alive(e.Name()) {
			continue
		}
		runs, _ := os.ReadDir(dir)
		for _, r := range runs {
			file := filepath.Join(dir, r.Name())
			if !strings.HasSuffix(r.Name(), ".tmp") {
				marker := []byte("GODEL_RUN_ID=" + r.Name())
				for _, line := range readLines(file) {
					pgid, err := strconv.Atoi(strings.TrimSpace(line))
					if err != nil || pgid <= 1 {
						continue
					}
					for _, pid := range groupMembers(pgid) {
						if environHas(pid, marker) {
							signalGroup(pgid, syscall.SIGKILL)
							killed = append(killed, pgid)
							break
						}
					}
				}
			}
			_ = os.Remove(file)
		}
		_ = os.Remove(dir)
	}
	return killed
}

func alive(pidText string) bool {
	pid, err := strconv.Atoi(pidText)
	if err != nil {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && err != syscall.EPERM {
		return false
	}
	fields := statFields(pid)
	return len(fields) > 0 && fields[0] != "Z"
}

// statFields: the fields of /proc/<pid>/stat after "(comm)": state is [0], ppid [1], pgrp [2].
func statFields(pid int) []string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(raw[i+1:]))
}

func groupMembers(pgid int) []int {
	var members []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(pid); len(f) >= 3 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			members = append(members, pid)
		}
	}
	return members
}

func environHas(pid int, marker []byte) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false
	}
	for _, kv := range bytes.Split(raw, []byte{0}) {
		if bytes.Equal(kv, marker) {
			return true
		}
	}
	return false
}

// usage of a process tree: live processes, resident memory, CPU time (reaped children too).
type usage struct {
	processes  int
	rssBytes   int64
	cpuSeconds float64
}

const clockTicks = 100 // USER_HZ on Linux

func children(pid int) []int {
	var found []int
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, c := range strings.Fields(string(raw)) {
			if n, err := strconv.Atoi(c); err == nil {
				found = append(found, n)
			}
		}
	}
	return found
}

func treeUsage(root int) usage {
	var u usage
	seen := map[int]bool{}
	todo := []int{root}
	ticks := 0
	page := int64(os.Getpagesize())
	for len(todo) > 0 {
		pid := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		f := statFields(pid)
		if len(f) < 22 {
			continue
		}
		u.processes++
		for _, s := range f[11:15] {
			n, _ := strconv.Atoi(s)
			ticks += n
		}
		rss, _ := strconv.ParseInt(f[21], 10, 64)
		u.rssBytes += rss * page
		todo = append(todo, children(pid)...)
	}
	u.cpuSeconds = float64(ticks) / clockTicks
	return u
}

func overLimit(u usage, l limits, overhead int) string {
	if l.memoryMB > 0 && u.rssBytes > int64(l.memoryMB)*mib {
		return fmt.Sprintf("memory limit exceeded: %.0f MiB resident, limit %d MiB (sandbox.limits.max_memory_mb)", float64(u.rssBytes)/mib, l.memoryMB)
	}
	if p := u.processes - overhead; l.processes > 0 && p >= l.processes {
		return fmt.Sprintf("process limit reached: %d processes, limit %d (sandbox.limits.max_processes)", p, l.processes)
	}
	if l.cpuSeconds > 0 && u.cpuSeconds > float64(l.cpuSeconds) {
		return fmt.Sprintf("CPU time limit exceeded: %.1f s, limit %d s (sandbox.limits.max_cpu_seconds)", u.cpuSeconds, l.cpuSeconds)
	}
	return ""
}

// The watchdog: one sampler walks every watched tree in one pass. A ticker per run walked each
// tree ten times a second whatever it cost (a thousand agents: ten thousand /proc walks a second);
// a pass that takes long spaces the passes out, so sampling takes at most samplingShare of a core.
const (
	watchInterval = 100 * time.Millisecond
	samplingShare = 0.25
)

// samplingPasses counts the sampler's passes (for the tests: one pass per interval, not per tree).
var samplingPasses atomic.Int64

// pauseAfter is how long the sampler waits after a pass that took elapsed.
func pauseAfter(elapsed time.Duration) time.Duration {
	return max(watchInterval, time.Duration(float64(elapsed)*(1/samplingShare-1)))
}

// watchedTree leaves the sampler through left; reason says why if it went over a limit.
type watchedTree struct {
	root     int
	limits   limits
	overhead int
	left     chan struct{}
	reason   string
}

// sampler holds the watched trees; its goroutine runs while it holds any.
type sampler struct {
	mu      sync.Mutex
	trees   map[*watchedTree]struct{}
	running bool
}

var watchdog = &sampler{trees: map[*watchedTree]struct{}{}}

func (s *sampler) add(w *watchedTree) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trees[w] = struct{}{}
	if !s.running {
		s.running = true
		go s.passes()
	}
}

func (s *sampler) remove(w *watchedTree) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.trees, w)
}

// leave removes w and wakes its watch, once.
func (s *sampler) leave(w *watchedTree, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.trees[w]; ok {
		delete(s.trees, w)
		w.reason = reason
		close(w.left)
	}
}

// watching is what the next pass walks; none, and the goroutine ends (under the lock, so that
// add starts another).
func (s *sampler) watching() []*watchedTree {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.trees) == 0 {
		s.running = false
		return nil
	}
	trees := make([]*watchedTree, 0, len(s.trees))
	for w := range s.trees {
		trees = append(trees, w)
	}
	return trees
}

func (s *sampler) passes() {
	for {
		trees := s.watching()
		if trees == nil {
			return
		}
		samplingPasses.Add(1)
		began := time.Now()
		for _, w := range trees {
			u := treeUsage(w.root)
			if u.processes == 0 {
				s.leave(w, "")
			} else if reason := overLimit(u, w.limits, w.overhead); reason != "" {
				s.leave(w, reason)
			}
		}
		time.Sleep(pauseAfter(time.Since(began)))
	}
}

// watch has the sampler watch the tree of root until no process of it is left, it is over a
// limit (then watch calls stop, in the caller's goroutine, not the sampler's) or done is closed.
func watch(root int, l limits, overhead int, stop func(string), done <-chan struct{}) {
	w := &watchedTree{root: root, limits: l, overhead: overhead, left: make(chan struct{})}
	watchdog.add(w)
	select {
	case <-w.left:
		if w.reason != "" {
			stop(w.reason)
		}
	case <-done:
		watchdog.remove(w)
	}
}
