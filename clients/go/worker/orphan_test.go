package worker

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	godelv1 "github.com/godel-ai/godel/gen/go/godel/v1"
)

// A worker killed with SIGKILL takes every process of its runs with it, a sandbox still being
// set up included (a successor's leftover sweep is not enough: there may be none).

// asWorkerVariable set: the test binary is a worker configured by GODEL_* (cmd/godel-worker).
const asWorkerVariable = "GODEL_TEST_RUN_AS_WORKER"

func runAsWorker() int {
	cfg, err := LoadConfig(os.Getenv)
	if err == nil {
		var w *Worker
		if w, err = New(cfg); err == nil {
			err = w.Run(context.Background())
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 2
	}
	return 0
}

// processesMarked: the live processes other than this one whose environment or command line
// holds one of markers.
func processesMarked(markers ...string) []int {
	var found []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if f := statFields(pid); len(f) == 0 || f[0] == "Z" {
			continue
		}
		environ, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		for _, m := range markers {
			if bytes.Contains(environ, []byte(m)) || bytes.Contains(cmdline, []byte(m)) {
				found = append(found, pid)
				break
			}
		}
	}
	return found
}

func describeProcesses(pids []int) string {
	var b strings.Builder
	for _, pid := range pids {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		stat := statFields(pid)
		if len(stat) < 3 {
			continue
		}
		fmt.Fprintf(&b, "\n  pid %d state %s ppid %s pgid %s: %s", pid, stat[0], stat[1], stat[2], trunc(strings.Join(args, " "), 120))
	}
	return b.String()
}

// blockingBwrap is a bwrap that holds the sandbox of run heldRun in its setup, in the inner
// bwrap (PID 1 of the sandbox) before it asks for its death signal, until a byte comes
// through the returned FIFO (bwrap --block-fd): the window in which a worker's death used to
// leave the sandbox running.
func blockingBwrap(t *testing.T, heldRun string) (wrapper string, release func()) {
	t.Helper()
	real, err := exec.LookPath("bwrap")
	if err != nil {
		t.Skip("bubblewrap is not installed")
	}
	dir := t.TempDir()
	fifo := filepath.Join(dir, "release")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	hold, err := os.OpenFile(fifo, os.O_RDWR, 0) // O_RDWR: opening the FIFO does not wait for a reader
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hold.Close() })
	wrapper = filepath.Join(dir, "bwrap")
	script := fmt.Sprintf("#!/bin/sh\ncase \"$*\" in *\"GODEL_RUN_ID %s \"*) exec %s --block-fd 9 \"$@\" 9<%s ;; esac\nexec %s \"$@\"\n", heldRun, real, fifo, real)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return wrapper, func() { _, _ = hold.Write([]byte{1}) }
}

func TestAWorkerKilledWithSIGKILLLeavesNoProcessOfItsRuns(t *testing.T) {
	bwrap, release := blockingBwrap(t, "run-held")
	repo := gitRepo(t)
	f := startReplica(t, "replica-1", 0)
	root := t.TempDir()
	markers := []string{root, "GODEL_RUN_ID=run-running", "GODEL_RUN_ID=run-held"}
	var stderr bytes.Buffer
	worker := exec.Command(os.Args[0], "-test.run=^$")
	worker.Env = append(os.Environ(), asWorkerVariable+"=1", "GODEL_WORKER_CONNECT="+f.addr, "GODEL_HOME="+t.TempDir(),
		"GODEL_WORKTREE_ROOT="+root, "GODEL_SANDBOX=bwrap", "GODEL_SANDBOX_BWRAP="+bwrap, "GODEL_WORKER_ID=go-killed-worker")
	worker.Stderr = &stderr
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = worker.Process.Kill()
		_ = worker.Wait()
		for _, pid := range processesMarked(markers...) {
			if f := statFields(pid); len(f) >= 3 {
				pgid, _ := strconv.Atoi(f[2])
				signalGroup(pgid, syscall.SIGKILL)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if t.Failed() {
			t.Logf("worker log:\n%s", stderr.String())
		}
	})
	waitFor(t, "the worker connects", func() bool { return f.streamCount() > 0 })
	assign := func(runID string) {
		f.send(0, &godelv1.ConnectResponse{Message: &godelv1.ConnectResponse_Assign{Assign: &godelv1.RunAssignment{
			RunId: runID, AgentId: "agent-" + runID, Task: "test", Repo: repo,
			Config: &godelv1.AgentConfig{Command: []string{"sleep", "600"}},
		}}})
	}
	assign("run-running")
	waitFor(t, "run-running is RUNNING", func() bool { return hasState(f.updates(0, "run-running"), godelv1.RunState_RUN_STATE_RUNNING) })
	assign("run-held")
	waitFor(t, "run-held's sandbox is being set up", func() bool { return len(processesMarked("GODEL_RUN_ID=run-held")) >= 2 })
	t.Logf("before the kill:%s", describeProcesses(processesMarked(markers...)))

	_ = worker.Process.Signal(syscall.SIGKILL)
	_ = worker.Wait()
	// The outer bwrap dies with the worker (its death signal); then the inner one goes on.
	waitFor(t, "run-held's outer bwrap is gone", func() bool { return len(processesMarked("GODEL_RUN_ID=run-held")) < 2 })
	release()
	deadline := time.Now().Add(10 * time.Second)
	for left := processesMarked(markers...); len(left) > 0; left = processesMarked(markers...) {
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the worker's SIGKILL, processes of its runs still run:%s", describeProcesses(left))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
