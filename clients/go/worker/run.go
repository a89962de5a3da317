package worker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	godelv1 "github.com/godel-ai/godel/gen/go/godel/v1"
)

// One run (services/godel_server/worker/run.py): worktree, sandbox, the command, pause,
// resume, kill, timeout and limits, log batching and its state updates.

const (
	logFlushInterval = 100 * time.Millisecond
	logFlushLines    = 200
	resultBytes      = 4096
	maxLine          = 16 * 1024
)

var terminal = map[godelv1.RunState]bool{
	godelv1.RunState_RUN_STATE_SUCCEEDED: true, godelv1.RunState_RUN_STATE_FAILED: true,
	godelv1.RunState_RUN_STATE_KILLED: true, godelv1.RunState_RUN_STATE_REJECTED: true,
	godelv1.RunState_RUN_STATE_LOST: true,
}

type outcome struct {
	success  bool
	result   string
	errorMsg string
	exitCode *int32
}

type run struct {
	w      *Worker
	a      *godelv1.RunAssignment
	id     string
	agent  string
	branch string

	mu           sync.Mutex
	state        godelv1.RunState
	pid          int32
	lastProgress time.Time
	commits      []string
	wt           *worktree
	finalSent    bool
	paused       bool
	started      bool // the command runs
	pgids        map[int]bool
	lines        []*godelv1.RunLogLine
	flushTimer   *time.Timer
	stopReason   string
	stopDetail   string
	timedOut     time.Duration
	done         chan struct{}

	// Guarded by the worker's mutex.
	outbox       *outbox
	finalQueued  bool // the run's final update is in its outbox
	owner        *connection
	ownerReplica string
}

func newRun(w *Worker, a *godelv1.RunAssignment) *run {
	branch := a.GetBranch()
	if branch == "" {
		branch = "godel/" + a.GetAgentId()
	}
	return &run{
		w: w, a: a, id: a.GetRunId(), agent: a.GetAgentId(), branch: branch,
		state: godelv1.RunState_RUN_STATE_STARTING, lastProgress: time.Now(),
		paused: a.GetStartPaused(), pgids: map[int]bool{}, done: make(chan struct{}), outbox: &outbox{},
	}
}

func (r *run) finished() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return terminal[r.state]
}

func (r *run) status() *godelv1.RunStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return &godelv1.RunStatus{RunId: r.id, AgentId: r.agent, State: r.state, Pid: r.pid, LastProgress: timestamppb.New(r.lastProgress)}
}

// ------------------------------------------------------------------- reporting

func (r *run) updateMessage(state godelv1.RunState, errMsg, result string, exitCode *int32) *godelv1.ConnectRequest {
	u := &godelv1.RunUpdate{
		RunId: r.id, AgentId: r.agent, State: state, Commits: append([]string(nil), r.commits...),
		Error: errMsg, Result: result, Time: timestamppb.Now(), ExitCode: exitCode,
	}
	if r.wt != nil {
		u.Worktree, u.Branch = r.wt.path, r.wt.branch
	}
	return &godelv1.ConnectRequest{Message: &godelv1.ConnectRequest_Update{Update: u}}
}

// update sets the state and sends a RunUpdate, after the log lines buffered so far.
func (r *run) update(state godelv1.RunState, errMsg, result string, exitCode *int32) {
	r.mu.Lock()
	if r.finalSent {
		r.mu.Unlock()
		return
	}
	r.flushLocked()
	r.state, r.lastProgress = state, time.Now()
	r.finalSent = terminal[state]
	msg := r.updateMessage(state, errMsg, result, exitCode)
	r.w.sendForRun(r, msg) // under r.mu: the order of this run's messages is kept
	r.mu.Unlock()
	logger.Info("run state", "run_id", r.id, "agent_id", r.agent, "state", strings.TrimPrefix(state.String(), "RUN_STATE_"), "error", errMsg)
}

func (r *run) log(message, stream string, level godelv1.LogLevel) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, &godelv1.RunLogLine{Time: timestamppb.Now(), Level: level, Stream: stream, Message: message})
	r.lastProgress = time.Now()
	if len(r.lines) >= logFlushLines {
		r.flushLocked()
	} else if r.flushTimer == nil {
		r.flushTimer = time.AfterFunc(logFlushInterval, func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.flushLocked()
		})
	}
}

func (r *run) flushLocked() {
	if r.flushTimer != nil {
		r.flushTimer.Stop()
		r.flushTimer = nil
	}
	if len(r.lines) == 0 {
		return
	}
	lines := r.lines
	r.lines = nil
	r.w.sendForRun(r, &godelv1.ConnectRequest{Message: &godelv1.ConnectRequest_Logs{Logs: &godelv1.RunLogs{RunId: r.id, AgentId: r.agent, Lines: lines}}})
}

// ------------------------------------------------------------------- controls

func (r *run) pause() string  { return r.setPaused(true) }
func (r *run) resume() string { return r.setPaused(false) }

// setPaused stops (SIGSTOP) or continues (SIGCONT) the run's process groups and reports the
// state once the command runs; an error message when the run has finished.
func (r *run) setPaused(paused bool) string {
	r.mu.Lock()
	if terminal[r.state] {
		defer r.mu.Unlock()
		return "run already finished (" + strings.TrimPrefix(r.state.String(), "RUN_STATE_") + ")"
	}
	if r.paused == paused {
		r.mu.Unlock()
		return ""
	}
	r.paused = paused
	sig, state := syscall.SIGCONT, godelv1.RunState_RUN_STATE_RUNNING
	if paused {
		sig, state = syscall.SIGSTOP, godelv1.RunState_RUN_STATE_PAUSED
	}
	for g := range r.pgids {
		signalGroup(g, sig)
	}
	started := r.started
	r.mu.Unlock()
	if started {
		r.update(state, "", "", nil)
	}
	return ""
}

// stop kills the run's process tree; reason: "kill", "timeout", "limit" (detail: which),
// "shutdown" or "lease" (detail: the owner the worker lost contact with).
func (r *run) stop(reason, detail string) string {
	_, errMsg := r.stopFor(reason, detail)
	return errMsg
}

// stopFor is stop; first says whether reason is why the run ends (no stop came before).
func (r *run) stopFor(reason, detail string) (first bool, errMsg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if terminal[r.state] {
		return false, "run already finished (" + strings.TrimPrefix(r.state.String(), "RUN_STATE_") + ")"
	}
	first = r.stopReason == ""
	if first {
		r.stopReason, r.stopDetail = reason, detail
	}
	for g := range r.pgids {
		signalGroup(g, syscall.SIGCONT) // a stopped process dies of SIGKILL too, but its group may hold others
		signalGroup(g, syscall.SIGKILL)
	}
	return first, ""
}

func (r *run) isPaused() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.paused
}

// ------------------------------------------------------------------- execution

func (r *run) execute(ctx context.Context) {
	defer close(r.done)
	var out *outcome
	errMsg := ""
	r.update(godelv1.RunState_RUN_STATE_STARTING, "", "", nil)
	wt, err := r.w.worktrees.create(ctx, r.a.GetRepo(), r.agent, r.branch, r.a.GetReuseWorktree())
	if err != nil {
		errMsg = err.Error()
	} else {
		r.mu.Lock()
		r.wt = wt
		stopping := r.stopReason != ""
		r.mu.Unlock()
		r.update(godelv1.RunState_RUN_STATE_WORKTREE_READY, "", "", nil)
		if !stopping {
			out, errMsg = r.runCommand(ctx, wt)
		}
	}
	r.mu.Lock()
	for g := range r.pgids {
		signalGroup(g, syscall.SIGKILL)
	}
	r.pgids = map[int]bool{}
	r.mu.Unlock()
	r.w.pids.write(r.id, nil)
	r.finish(ctx, out, errMsg)
}

func (r *run) runCommand(ctx context.Context, wt *worktree) (*outcome, string) {
	sb, err := r.w.sandboxes.forRun(r.id, r.a.GetConfig(), wt)
	var ref *refused
	if errors.As(err, &ref) {
		msg := "safety: " + ref.msg
		r.log(msg, "runtime", godelv1.LogLevel_LOG_LEVEL_ERROR)
		return nil, msg
	}
	if err != nil {
		return nil, "worker error: " + err.Error()
	}
	if sb.bwrap == "" {
		r.log("sandbox: OFF on this worker (GODEL_SANDBOX=off): this agent runs with the worker's rights", "runtime", godelv1.LogLevel_LOG_LEVEL_WARN)
	}
	for _, n := range sb.policy.notes {
		r.log(n, "runtime", godelv1.LogLevel_LOG_LEVEL_WARN)
	}
	if sb.policy.wallSeconds > 0 {
		stopTimer := make(chan struct{})
		defer close(stopTimer)
		go r.timeoutAfter(time.Duration(sb.policy.wallSeconds*float64(time.Second)), stopTimer)
	}
	return r.command(ctx, sb, wt), ""
}

// timeoutAfter stops the run after d of time not spent paused.
func (r *run) timeoutAfter(d time.Duration, cancel <-chan struct{}) {
	const tick = 50 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	var active time.Duration
	for active < d {
		select {
		case <-cancel:
			return
		case <-t.C:
			if !r.isPaused() {
				active += tick
			}
		}
	}
	r.mu.Lock()
	r.timedOut = d
	r.mu.Unlock()
	r.log("timed out after "+d.String()+"; killing the run", "runtime", godelv1.LogLevel_LOG_LEVEL_ERROR)
	r.stop("timeout", "")
}

func (r *run) childEnv(sb *sandbox, wt *worktree) map[string]string {
	env := sb.baseEnv()
	env["GIT_TERMINAL_PROMPT"] = "0"
	for k, v := range r.a.GetConfig().GetEnv() {
		env[k] = v
	}
	for k, v := range map[string]string{
		"GODEL_AGENT_ID": r.agent, "GODEL_RUN_ID": r.id, "GODEL_TASK": r.a.GetTask(),
		"GODEL_WORKTREE": wt.path, "GODEL_SESSION_ID": r.a.GetSessionId(), "GODEL_MODEL": r.a.GetModel(),
	} {
		env[k] = v
	}
	for k, v := range gitIdentity(r.agent) {
		env[k] = v
	}
	return env
}

func fail(msg string) *outcome { return &outcome{errorMsg: msg} }

// command runs config.command in the sandbox, in the worktree: stdout and stderr lines become
// the run's log, exit code 0 is success, the result is the tail of stdout.
func (r *run) command(ctx context.Context, sb *sandbox, wt *worktree) *outcome {
	template := r.a.GetConfig().GetCommand()
	if len(template) == 0 {
		return fail("config.command is empty")
	}
	argv := renderArgv(template, map[string]string{"task": r.a.GetTask(), "worktree": wt.path, "agent_id": r.agent, "model": r.a.GetModel()})
	env := r.childEnv(sb, wt)
	if !executable(argv[0], wt.path, env["PATH"]) {
		return fail("cannot start '" + argv[0] + "': command not found or not executable")
	}
	full, procEnv := sb.command(argv, env, wt.path)
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Dir, cmd.Env = wt.path, append(procEnv, r.w.owner)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		return fail("cannot start '" + argv[0] + "': " + err.Error())
	}
	pgid := cmd.Process.Pid
	r.addGroup(pgid)
	tail := &tailBuffer{}
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); r.pump(stdout, "stdout", godelv1.LogLevel_LOG_LEVEL_INFO, tail) }()
	go func() { defer readers.Done(); r.pump(stderr, "stderr", godelv1.LogLevel_LOG_LEVEL_WARN, nil) }()
	watchDone := make(chan struct{})
	if sb.policy.limits.any() {
		go watch(pgid, sb.policy.limits, sb.overhead(), func(reason string) {
			r.log("sandbox: "+reason+"; stopping the run", "runtime", godelv1.LogLevel_LOG_LEVEL_ERROR)
			r.stop("limit", reason)
		}, watchDone)
	}
	r.startedCommand(int32(pgid))
	err := cmd.Wait()
	close(watchDone)
	signalGroup(pgid, syscall.SIGKILL) // what the leader left in its group: the pipes close
	waitTimeout(&readers, time.Second)
	r.removeGroup(pgid)
	code := 0
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		ws := exitErr.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			code = -int(ws.Signal())
		} else {
			code = ws.ExitStatus()
		}
	} else if err != nil {
		return fail("worker error: " + err.Error())
	}
	code = sb.exitCode(code)
	c := int32(code)
	if code == 0 {
		return &outcome{success: true, result: tail.String(), exitCode: &c}
	}
	return &outcome{result: tail.String(), errorMsg: describeExit(code), exitCode: &c}
}

func (r *run) addGroup(pgid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pgids[pgid] = true
	r.w.pids.write(r.id, keys(r.pgids))
	if r.stopReason != "" {
		signalGroup(pgid, syscall.SIGKILL)
	} else if r.paused {
		signalGroup(pgid, syscall.SIGSTOP)
	}
}

func (r *run) removeGroup(pgid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pgids, pgid)
	r.w.pids.write(r.id, keys(r.pgids))
}

func (r *run) startedCommand(pid int32) {
	r.mu.Lock()
	r.pid, r.started = pid, true
	paused := r.paused
	r.mu.Unlock()
	if paused {
		r.update(godelv1.RunState_RUN_STATE_PAUSED, "", "", nil)
	} else {
		r.update(godelv1.RunState_RUN_STATE_RUNNING, "", "", nil)
	}
}

// pump turns a pipe into log lines (long lines are cut at 16 KiB).
func (r *run) pump(pipe io.Reader, stream string, level godelv1.LogLevel, tail *tailBuffer) {
	buf := make([]byte, 65536)
	var partial []byte
	emit := func(line []byte) {
		r.log(strings.TrimRight(string(bytes.ToValidUTF8(line[:min(len(line), maxLine)], []byte("\uFFFD"))), "\r"), stream, level)
	}
	for {
		n, err := pipe.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if tail != nil {
				tail.add(chunk)
			}
			lines := bytes.Split(append(partial, chunk...), []byte("\n"))
			partial = append([]byte(nil), lines[len(lines)-1]...)
			lines = lines[:len(lines)-1]
			if len(partial) > maxLine {
				lines = append(lines, partial)
				partial = nil
			}
			for _, l := range lines {
				emit(l)
			}
		}
		if err != nil {
			break
		}
	}
	if len(partial) > 0 {
		emit(partial)
	}
}

func (r *run) finish(ctx context.Context, out *outcome, errMsg string) {
	r.mu.Lock()
	wt := r.wt
	r.mu.Unlock()
	if wt != nil {
		if commits, err := r.w.worktrees.commits(ctx, wt); err == nil {
			r.mu.Lock()
			r.commits = commits
			r.mu.Unlock()
		} else {
			logger.Warn("cannot list commits", "run_id", r.id, "error", err.Error())
		}
	}
	var result string
	var exitCode *int32
	if out != nil {
		result, exitCode = out.result, out.exitCode
	}
	r.mu.Lock()
	reason, detail, timedOut := r.stopReason, r.stopDetail, r.timedOut
	r.mu.Unlock()
	state := godelv1.RunState_RUN_STATE_FAILED
	switch {
	case reason == "kill":
		state, errMsg = godelv1.RunState_RUN_STATE_KILLED, detail
	case reason == "timeout":
		errMsg = "timed out after " + timedOut.String()
	case reason == "limit":
		errMsg = "sandbox: " + detail
	case reason == "shutdown":
		state, errMsg = godelv1.RunState_RUN_STATE_LOST, "worker shutting down"
	case reason == "lease":
		state, errMsg = godelv1.RunState_RUN_STATE_LOST, detail
	case errMsg != "":
	case out != nil && out.success:
		state = godelv1.RunState_RUN_STATE_SUCCEEDED
	case out != nil:
		errMsg = out.errorMsg
	default:
		errMsg = "the runtime ended without an outcome"
	}
	r.update(state, errMsg, result, exitCode)
}

type tailBuffer struct{ data []byte }

func (t *tailBuffer) add(chunk []byte) {
	t.data = append(t.data, chunk...)
	if len(t.data) > resultBytes {
		t.data = append([]byte(nil), t.data[len(t.data)-resultBytes:]...)
	}
}

func (t *tailBuffer) String() string { return string(bytes.ToValidUTF8(t.data, []byte("\uFFFD"))) }

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

func keys(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
