package worker

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The reaper: the runs of a worker die with it, however it dies. A run's process gets the death
// signal (PR_SET_PDEATHSIG) and bwrap --die-with-parent passes it on, but not at every instant:
// the inner bwrap (PID 1 of the sandbox) asks for its death signal only once it has set the
// sandbox up, so a worker killed in those milliseconds killed the outer bwrap only, and the
// inner one, orphaned before it asked, went on to run the agent for good. So the worker starts a
// copy of its executable that waits on a pipe only the worker holds open for writing: at EOF
// (the worker is gone, whatever killed it) it kills the process group of every process that
// carries the worker's owner mark in its environment (bwrap's own environment, outside the
// sandbox; the inner bwrap is in the outer one's group).

const (
	// ownerVariable=<pid>:<start time>:<worktree root> marks the processes of a worker's runs
	// (the Python worker's mark, services/godel_server/worker/procs.py).
	ownerVariable = "GODEL_WORKER"
	// reaperVariable=<owner mark value> starts this package's executable as that worker's reaper.
	reaperVariable = "GODEL_WORKER_REAPER"
	startTimeField = 19 // in statFields: clock ticks after boot; with the pid, names one process
	reaperPasses   = 10
)

func init() {
	if owner := os.Getenv(reaperVariable); owner != "" {
		os.Exit(reap(os.Stdin, ownerVariable+"="+owner))
	}
}

// ownerMark is the environment entry that marks a process as started by this worker on root.
func ownerMark(root string) string {
	abs, err := filepath.Abs(root)
	if err != nil {
		abs = root
	}
	start := "0"
	if f := statFields(os.Getpid()); len(f) > startTimeField {
		start = f[startTimeField]
	}
	return fmt.Sprintf("%s=%d:%s:%s", ownerVariable, os.Getpid(), start, abs)
}

// startReaper starts the reaper of the processes marked with mark; closing the returned pipe
// (or the worker's death) sets it off.
func startReaper(mark string) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command("/proc/self/exe")
	cmd.Args = []string{os.Args[0]}
	cmd.Env = append(os.Environ(), reaperVariable+"="+strings.TrimPrefix(mark, ownerVariable+"="))
	cmd.Stdin, cmd.Stderr = r, os.Stderr
	// A group of its own: what signals the worker's group (a terminal, a supervisor) spares it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = w.Close()
		return nil, err
	}
	go func() {
		if err := cmd.Wait(); err != nil {
			logger.Warn("the reaper of runs ended: a worker killed now may leave runs behind until the next one starts", "error", err.Error())
		}
	}()
	return w, nil
}

// reap waits until in ends (the worker is gone), then kills what carries mark.
func reap(in io.Reader, mark string) int {
	_, _ = io.Copy(io.Discard, in)
	if killed := killMarked([]byte(mark)); len(killed) > 0 {
		logger.Warn("the worker is gone: killed the process groups of its runs", "pgids", killed)
	}
	return 0
}

// killMarked kills every process carrying mark and its process group, until none is left
// (a few passes at most: a group killed whole forks no more).
func killMarked(mark []byte) []int {
	own := syscall.Getpgrp()
	var killed []int
	for range reaperPasses {
		found := false
		for _, pid := range processIDs() {
			f := statFields(pid)
			if len(f) < 3 || f[0] == "Z" || pid == os.Getpid() || !environHas(pid, mark) {
				continue
			}
			found = true
			if pgid, _ := strconv.Atoi(f[2]); pgid > 1 && pgid != own && !slices.Contains(killed, pgid) {
				signalGroup(pgid, syscall.SIGKILL)
				killed = append(killed, pgid)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if !found {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return killed
}

func processIDs() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}
