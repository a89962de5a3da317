// The worker: connections to every replica, the runs it executes, and where their messages go
// (services/godel_server/worker/worker.py).
//
// Ownership: messages about a run go on the connection that assigned it (or last sent ADOPT
// for it) while that connection is live and still talks to the same replica (same replica id);
// otherwise they wait in the run's outbox, flushed when that replica reconnects or another
// stream ADOPTs the run.
//
// Delivery: a run's updates and usage stay in its outbox until the owner acknowledges them
// (RunAck) and are sent again, in order, on the owner's welcome, on ADOPT or re-assignment, and
// when one waited resendAfter for its acknowledgement; a finished run leaves the worker's table
// once all of them are acknowledged. Unlike the Python worker this one has no state directory
// and no journal: the outboxes live in memory only, so what a killed worker had not delivered
// is lost with it (the agent service declares its runs lost after the run lease), and a
// restarted worker comes back as a new worker unless GODEL_WORKER_ID names it.
//
// Lease: a run whose owner has acknowledged no heartbeat for the owner's run lease is stopped
// and reported LOST, so that when the owner declares it lost and runs it elsewhere, it no
// longer runs here.

package worker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/godel-ai/godel/clients/go/godel"
	godelv1 "github.com/godel-ai/godel/gen/go/godel/v1"
)

var logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))

const (
	// How often run leases and overdue acknowledgements are checked.
	tickInterval = 250 * time.Millisecond
	// A message in flight this long without acknowledgement on a live stream is sent again.
	resendAfter = 10 * time.Second
)

// Runtimes this worker hosts.
var Runtimes = []string{"command"}

// Worker connects to every agent-service replica and executes the runs they assign.
type Worker struct {
	cfg       *Config
	worktrees *worktrees
	pids      *pidFiles
	sandboxes *sandboxes
	owner     string // the owner mark of the runs' processes (reaper.go)
	clients   []*godel.Client
	conns     []*connection

	mu         sync.Mutex
	runs       map[string]*run
	unfinished map[string]*run // by agent id: an agent has one unfinished run here at most
	accepting  bool
	wg         sync.WaitGroup
}

// New builds a worker from its settings; Run starts it.
func New(cfg *Config) (*Worker, error) {
	w := &Worker{cfg: cfg, worktrees: newWorktrees(cfg.WorktreeRoot), pids: newPidFiles(cfg.WorktreeRoot),
		sandboxes: newSandboxes(cfg), owner: ownerMark(cfg.WorktreeRoot), runs: map[string]*run{}, unfinished: map[string]*run{}, accepting: true}
	var opts []godel.Option
	if cfg.APIKey != "" {
		opts = append(opts, godel.WithAPIKey(cfg.APIKey))
	}
	if cfg.TLSCA != "" {
		t, err := mutualTLS(cfg)
		if err != nil {
			return nil, err
		}
		opts = append(opts, godel.WithTLS(t))
	}
	for _, addr := range cfg.Connect {
		c, err := godel.NewClient(addr, opts...)
		if err != nil {
			return nil, err
		}
		w.clients = append(w.clients, c)
		w.conns = append(w.conns, newConnection(addr, w, godelv1.NewWorkerServiceClient(c.Conn())))
	}
	return w, nil
}

func mutualTLS(cfg *Config) (*tls.Config, error) {
	ca, err := os.ReadFile(cfg.TLSCA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("GODEL_TLS_CA_FILE %s holds no certificate", cfg.TLSCA)
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// Run checks the sandbox (an error when agents cannot be sandboxed here), kills what a dead
// worker on the same root left running, connects, and runs until ctx is done; then it kills
// what still runs and reports it LOST "worker shutting down" (it runs again elsewhere).
func (w *Worker) Run(ctx context.Context) error {
	// The reaper kills what is marked once this pipe closes: when Run returns, or the worker dies.
	reaper, err := startReaper(w.owner)
	if err != nil {
		logger.Warn("cannot start the reaper of runs: a worker killed may leave runs behind until the next one starts", "error", err.Error())
	} else {
		defer reaper.Close()
	}
	if err := w.sandboxes.check(ctx); err != nil {
		return err
	}
	if killed := w.pids.killLeftovers(); len(killed) > 0 {
		logger.Warn("killed process groups left by a previous worker", "pgids", killed)
	}
	logger.Info("worker starting", "worker_id", w.cfg.WorkerID, "connect", w.cfg.Connect, "capacity", w.cfg.Capacity, "labels", w.cfg.Labels, "sandbox", w.cfg.Sandbox)
	connCtx, stopConns := context.WithCancel(context.Background())
	var conns sync.WaitGroup
	for _, c := range w.conns {
		conns.Add(1)
		go func() { defer conns.Done(); c.runForever(connCtx) }()
	}
	conns.Add(1)
	go func() { defer conns.Done(); w.tickLoop(connCtx) }()
	<-ctx.Done()
	w.mu.Lock()
	w.accepting = false
	w.mu.Unlock()
	active := w.active()
	for _, r := range active {
		r.stop("shutdown", "")
	}
	deadline := time.After(5 * time.Second)
	for _, r := range active {
		select {
		case <-r.done:
		case <-deadline:
		}
	}
	w.awaitAcknowledgements(2 * time.Second)
	stopConns()
	conns.Wait()
	for _, c := range w.clients {
		_ = c.Close()
	}
	logger.Info("worker stopped", "worker_id", w.cfg.WorkerID)
	return nil
}

// awaitAcknowledgements gives the owners a moment to acknowledge what is in flight.
func (w *Worker) awaitAcknowledgements(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && w.unacknowledged() > 0 && w.anyLive() {
		time.Sleep(20 * time.Millisecond)
	}
}

func (w *Worker) unacknowledged() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, r := range w.runs {
		n += r.outbox.unacknowledged()
	}
	return n
}

func (w *Worker) anyLive() bool {
	for _, c := range w.conns {
		if live, _ := c.isLive(); live {
			return true
		}
	}
	return false
}

// active: the runs not finished (w.mu must NOT be held: a run's lock comes first).
func (w *Worker) active() []*run {
	var out []*run
	for _, r := range w.snapshot() {
		if !r.finished() {
			out = append(out, r)
		}
	}
	return out
}

func (w *Worker) snapshot() []*run {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]*run, 0, len(w.runs))
	for _, r := range w.runs {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// ------------------------------------------------------------------- protocol messages

func (w *Worker) hello() *godelv1.WorkerHello {
	var runs []*godelv1.RunStatus
	for _, r := range w.snapshot() {
		runs = append(runs, r.status())
	}
	return &godelv1.WorkerHello{WorkerId: w.cfg.WorkerID, Runtimes: Runtimes, Capacity: int32(w.cfg.Capacity),
		Runs: runs, Hostname: w.cfg.Hostname, Labels: w.cfg.Labels}
}

func (w *Worker) heartbeat() *godelv1.WorkerHeartbeat {
	var runs []*godelv1.RunStatus
	active := 0
	for _, r := range w.snapshot() {
		st := r.status()
		runs = append(runs, st)
		if !terminal[st.GetState()] {
			active++
		}
	}
	return &godelv1.WorkerHeartbeat{Runs: runs, FreeCapacity: int32(max(w.cfg.Capacity-active, 0))}
}

func (w *Worker) onWelcome(c *connection) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, replica := c.isLive()
	for _, r := range w.runs {
		if r.owner == c && r.ownerReplica == replica {
			r.outbox.rewind()
			w.flushLocked(r)
		}
	}
}

func (w *Worker) onResponse(c *connection, resp *godelv1.ConnectResponse) {
	switch m := resp.GetMessage().(type) {
	case *godelv1.ConnectResponse_Assign:
		w.assign(c, m.Assign)
	case *godelv1.ConnectResponse_Control:
		w.control(c, m.Control)
	case *godelv1.ConnectResponse_RunAck:
		w.acked(m.RunAck)
	default:
		logger.Warn("unexpected message from the replica", "address", c.addr)
	}
}

// requeue takes back the messages of a run that a broken stream did not write.
func (w *Worker) requeue(runID string, items []*outboxItem) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.runs[runID]
	if r == nil {
		return
	}
	r.outbox.requeue(items)
	w.flushLocked(r)
}

func (w *Worker) acked(ack *godelv1.RunAck) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.runs[ack.GetRunId()]
	if r == nil || !r.outbox.ack(ack.GetSeq()) {
		return
	}
	w.flushLocked(r)
	w.forgetIfDoneLocked(r) // also when the owner is not reachable (the ack came on another stream)
}

func (w *Worker) forgetIfDoneLocked(r *run) {
	if r.finalQueued && r.outbox.len() == 0 && w.runs[r.id] == r {
		delete(w.runs, r.id)
	}
}

// ------------------------------------------------------------------- routing (w.mu held)

func (w *Worker) reachable(r *run) bool {
	if r.owner == nil {
		return false
	}
	live, replica := r.owner.isLive()
	return live && replica == r.ownerReplica
}

func (w *Worker) sendForRun(r *run, req *godelv1.ConnectRequest) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if u := req.GetUpdate(); u != nil && terminal[u.GetState()] {
		r.finalQueued = true
		if w.unfinished[r.agent] == r {
			delete(w.unfinished, r.agent)
		}
	}
	r.outbox.add(req)
	w.flushLocked(r)
}

// flushLocked hands what the run's outbox holds to its owner's stream, if reachable.
func (w *Worker) flushLocked(r *run) {
	if !w.reachable(r) {
		return
	}
	taken := r.outbox.take(time.Now())
	for i, it := range taken {
		if !r.owner.send(r.id, it.order, it.req) {
			r.outbox.requeue(taken[i:])
			return
		}
	}
	w.forgetIfDoneLocked(r)
}

func (w *Worker) takeOwnership(r *run, c *connection) {
	_, replica := c.isLive()
	r.mu.Lock() // a run's lock comes before the worker's
	defer r.mu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	r.owner, r.ownerReplica = c, replica
	r.outbox.rewind()
	if !terminal[r.state] {
		r.outbox.add(r.updateMessage(r.state, "", "", nil)) // the new owner learns the state first thing
	}
	w.flushLocked(r)
}

// ------------------------------------------------------------------- leases and resends

func (w *Worker) tickLoop(ctx context.Context) {
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			w.tick(now)
		}
	}
}

// tick stops the runs whose owner's lease lapsed and resends what waits too long for its
// acknowledgement.
func (w *Worker) tick(now time.Time) {
	for _, r := range w.snapshot() {
		w.mu.Lock()
		owner, replica := r.owner, r.ownerReplica
		w.mu.Unlock()
		if owner == nil {
			continue
		}
		silence, lease := owner.silence(replica, now)
		if lease > 0 && silence > lease && !r.finished() {
			w.leaseLapsed(r, replica, silence, lease)
		} else {
			w.resendOverdue(r, now)
		}
	}
}

func (w *Worker) leaseLapsed(r *run, replica string, silence, lease time.Duration) {
	howLong := fmt.Sprintf("for %.0fs", silence.Seconds())
	if silence == never {
		howLong = "since it restarted"
	}
	detail := fmt.Sprintf("the worker lost contact with agent-service replica %s %s (its run lease is %gs)", replica, howLong, lease.Seconds())
	if first, _ := r.stopFor("lease", detail); first {
		logger.Warn("run lease lapsed; stopping the run", "run_id", r.id, "detail", detail)
	}
}

func (w *Worker) resendOverdue(r *run, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.reachable(r) && r.outbox.overdue(now, resendAfter) {
		r.outbox.rewind()
		w.flushLocked(r)
	}
}

// ------------------------------------------------------------------- assignments

// reject refuses an assignment. The reason tells the replica whether to try the run again soon (a
// full, stopping or busy worker) or to count the refusal against the run (runtime, invalid).
func (w *Worker) reject(c *connection, a *godelv1.RunAssignment, reason godelv1.RejectReason, detail string) {
	logger.Info("run rejected", "run_id", a.GetRunId(), "agent_id", a.GetAgentId(), "reason", reason.String(), "error", detail)
	c.send("", 0, &godelv1.ConnectRequest{Message: &godelv1.ConnectRequest_Update{Update: &godelv1.RunUpdate{
		RunId: a.GetRunId(), AgentId: a.GetAgentId(), State: godelv1.RunState_RUN_STATE_REJECTED,
		RejectReason: reason, Error: detail, Time: timestamppb.Now(),
	}}})
}

func runtimeName(raw string) string {
	if name := strings.ToLower(strings.TrimSpace(raw)); name != "" {
		return name
	}
	return "command"
}

func (w *Worker) assign(c *connection, a *godelv1.RunAssignment) {
	w.mu.Lock()
	existing := w.runs[a.GetRunId()]
	accepting := w.accepting
	w.mu.Unlock()
	active := w.active()
	if existing != nil {
		w.takeOwnership(existing, c) // the replica assigned a run we execute (it restarted)
		return
	}
	if a.GetRunId() == "" || a.GetAgentId() == "" {
		w.reject(c, a, godelv1.RejectReason_REJECT_REASON_INVALID, "the assignment needs a run_id and an agent_id")
		return
	}
	if !accepting {
		w.reject(c, a, godelv1.RejectReason_REJECT_REASON_SHUTTING_DOWN, "worker shutting down")
		return
	}
	if name := runtimeName(a.GetConfig().GetRuntime()); !contains(Runtimes, name) {
		w.reject(c, a, godelv1.RejectReason_REJECT_REASON_RUNTIME, fmt.Sprintf("unknown runtime %q; this worker hosts %s", name, strings.Join(Runtimes, ", ")))
		return
	}
	if len(active) >= w.cfg.Capacity {
		w.reject(c, a, godelv1.RejectReason_REJECT_REASON_CAPACITY, fmt.Sprintf("worker at capacity (%d runs)", w.cfg.Capacity))
		return
	}
	r := newRun(w, a)
	_, replica := c.isLive()
	w.mu.Lock()
	if busy := w.unfinished[r.agent]; busy != nil {
		w.mu.Unlock()
		w.reject(c, a, godelv1.RejectReason_REJECT_REASON_AGENT_BUSY, fmt.Sprintf("agent %s already has run %s on this worker", busy.agent, busy.id))
		return
	}
	r.owner, r.ownerReplica = c, replica
	w.runs[r.id] = r
	w.unfinished[r.agent] = r
	w.mu.Unlock()
	logger.Info("run assigned", "run_id", r.id, "agent_id", r.agent)
	go r.execute(context.Background())
}

// ------------------------------------------------------------------- controls

func (w *Worker) ack(c *connection, ctl *godelv1.RunControl, errMsg string) {
	c.send("", 0, &godelv1.ConnectRequest{Message: &godelv1.ConnectRequest_Ack{Ack: &godelv1.ControlAck{
		RunId: ctl.GetRunId(), Action: ctl.GetAction(), Ok: errMsg == "", Error: errMsg,
	}}})
}

func (w *Worker) control(c *connection, ctl *godelv1.RunControl) {
	if ctl.GetAction() == godelv1.ControlAction_CONTROL_ACTION_CLEANUP {
		go w.cleanup(c, ctl)
		return
	}
	w.mu.Lock()
	r := w.runs[ctl.GetRunId()]
	w.mu.Unlock()
	if r == nil {
		w.ack(c, ctl, "unknown run")
		return
	}
	switch ctl.GetAction() {
	case godelv1.ControlAction_CONTROL_ACTION_PAUSE:
		w.ack(c, ctl, r.pause())
	case godelv1.ControlAction_CONTROL_ACTION_RESUME:
		w.ack(c, ctl, r.resume())
	case godelv1.ControlAction_CONTROL_ACTION_KILL:
		w.ack(c, ctl, r.stop("kill", ctl.GetReason()))
	case godelv1.ControlAction_CONTROL_ACTION_ADOPT:
		w.ack(c, ctl, "")
		w.takeOwnership(r, c)
	default:
		w.ack(c, ctl, fmt.Sprintf("unknown control action %d", ctl.GetAction()))
	}
}

func (w *Worker) cleanup(c *connection, ctl *godelv1.RunControl) {
	// A worktree is named after its agent (worktrees.pathFor), and an agent has one unfinished
	// run at most: no walk over every run (a thousand agents killed at once).
	w.mu.Lock()
	r := w.unfinished[filepath.Base(ctl.GetWorktree())]
	w.mu.Unlock()
	if r != nil {
		r.mu.Lock()
		busy := !terminal[r.state] && r.wt != nil && r.wt.path == ctl.GetWorktree()
		r.mu.Unlock()
		if busy {
			w.ack(c, ctl, fmt.Sprintf("run %s still runs in %s", r.id, ctl.GetWorktree()))
			return
		}
	}
	if err := w.worktrees.remove(context.Background(), ctl.GetRepo(), ctl.GetWorktree()); err != nil {
		w.ack(c, ctl, err.Error())
		return
	}
	logger.Info("worktree removed", "worktree", ctl.GetWorktree(), "repo", ctl.GetRepo())
	w.ack(c, ctl, "")
}
