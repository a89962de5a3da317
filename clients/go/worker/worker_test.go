package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	godelv1 "github.com/godel-ai/godel/gen/go/godel/v1"
)

// The real Worker against in-process fake replicas (the replica's side of the protocol is
// services/godel_server/agent/worker_servicer.py).

const waitLimit = 15 * time.Second

// logs holds what the worker logged, for the tests that look at its warnings.
var logs = &logSink{}

type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *logSink) count(substr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.buf.String(), substr)
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func TestMain(m *testing.M) {
	if os.Getenv(asWorkerVariable) != "" {
		os.Exit(runAsWorker())
	}
	logger = slog.New(slog.NewJSONHandler(logs, nil))
	os.Exit(m.Run())
}

// ------------------------------------------------------------------- the fake replica

type fakeStream struct {
	hello *godelv1.WorkerHello
	got   []*godelv1.ConnectRequest
	out   chan *godelv1.ConnectResponse
	end   chan struct{}
}

type fakeReplica struct {
	godelv1.UnimplementedWorkerServiceServer
	id          string
	leaseMS     int32
	heartbeatMS int32
	addr        string

	mu            sync.Mutex
	ackHeartbeats bool
	ackRunMessage func(*godelv1.ConnectRequest) bool
	streams       []*fakeStream
	// Closed while the replica reads its streams; open, what the worker writes waits.
	reading chan struct{}
}

func startReplica(t *testing.T, id string, leaseMS int32) *fakeReplica {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeReplica{id: id, leaseMS: leaseMS, heartbeatMS: 50, addr: lis.Addr().String(), ackHeartbeats: true,
		ackRunMessage: func(*godelv1.ConnectRequest) bool { return true }, reading: make(chan struct{})}
	close(f.reading)
	// Fixed flow-control windows (not grown by bandwidth estimates): what the worker writes while
	// the replica does not read waits in the worker once they are full.
	const window = 64 << 10
	srv := grpc.NewServer(grpc.InitialWindowSize(window), grpc.InitialConnWindowSize(window))
	godelv1.RegisterWorkerServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return f
}

func (f *fakeReplica) Connect(s grpc.BidiStreamingServer[godelv1.ConnectRequest, godelv1.ConnectResponse]) error {
	first, err := s.Recv()
	if err != nil {
		return err
	}
	st := &fakeStream{hello: first.GetHello(), out: make(chan *godelv1.ConnectResponse, 4096), end: make(chan struct{})}
	f.mu.Lock()
	f.streams = append(f.streams, st)
	f.mu.Unlock()
	welcome := &godelv1.WorkerWelcome{ReplicaId: f.replicaID(), HeartbeatIntervalMs: f.heartbeatMS, RunLeaseMs: f.leaseMS}
	if err := s.Send(&godelv1.ConnectResponse{Message: &godelv1.ConnectResponse_Welcome{Welcome: welcome}}); err != nil {
		return err
	}
	recvErr := make(chan error, 1)
	go func() {
		for {
			<-f.readingGate()
			req, err := s.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			f.received(st, req)
		}
	}()
	for {
		select {
		case resp := <-st.out:
			if err := s.Send(resp); err != nil {
				return err
			}
		case <-st.end:
			return status.Error(codes.Unavailable, "replica restarting")
		case err := <-recvErr:
			return err
		}
	}
}

// received records a message and acknowledges it as the replica would (when told to).
func (f *fakeReplica) received(st *fakeStream, req *godelv1.ConnectRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st.got = append(st.got, req)
	if hb := req.GetHeartbeat(); hb != nil && f.ackHeartbeats {
		st.out <- &godelv1.ConnectResponse{Message: &godelv1.ConnectResponse_HeartbeatAck{HeartbeatAck: &godelv1.HeartbeatAck{Seq: hb.GetSeq()}}}
	}
	if u := req.GetUpdate(); u != nil && u.GetSeq() > 0 && f.ackRunMessage(req) {
		st.out <- &godelv1.ConnectResponse{Message: &godelv1.ConnectResponse_RunAck{RunAck: &godelv1.RunAck{RunId: u.GetRunId(), Seq: u.GetSeq()}}}
	}
}

func (f *fakeReplica) readingGate() chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reading
}

// stopReading: the replica reads nothing more until resumeReading.
func (f *fakeReplica) stopReading() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reading = make(chan struct{})
}

func (f *fakeReplica) resumeReading() {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.reading:
	default:
		close(f.reading)
	}
}

func (f *fakeReplica) replicaID() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.id
}

// restartAs: the replica's next streams welcome the worker under another id.
func (f *fakeReplica) restartAs(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.id = id
}

func (f *fakeReplica) stream(i int) *fakeStream {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i >= len(f.streams) {
		return nil
	}
	return f.streams[i]
}

func (f *fakeReplica) streamCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.streams)
}

// messages: what stream i received so far (the hello aside).
func (f *fakeReplica) messages(i int) []*godelv1.ConnectRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*godelv1.ConnectRequest(nil), f.streams[i].got...)
}

// updates: the RunUpdates stream i received about runID ("": any run).
func (f *fakeReplica) updates(i int, runID string) []*godelv1.RunUpdate {
	var out []*godelv1.RunUpdate
	for _, m := range f.messages(i) {
		if u := m.GetUpdate(); u != nil && (runID == "" || u.GetRunId() == runID) {
			out = append(out, u)
		}
	}
	return out
}

func (f *fakeReplica) send(i int, resp *godelv1.ConnectResponse) { f.stream(i).out <- resp }

func (f *fakeReplica) assign(t *testing.T, i int, runID, repo, script string) {
	t.Helper()
	f.send(i, &godelv1.ConnectResponse{Message: &godelv1.ConnectResponse_Assign{Assign: &godelv1.RunAssignment{
		RunId: runID, AgentId: "agent-" + runID, Task: "test", Repo: repo,
		Config: &godelv1.AgentConfig{Command: []string{"sh", "-c", script}},
	}}})
}

// roundTrip sends a control the worker answers at once (PAUSE of a run it does not hold) and
// waits for the answer: everything the replica sent before it on the stream is handled then.
func (f *fakeReplica) roundTrip(t *testing.T, i int) {
	t.Helper()
	runID := fmt.Sprintf("probe-%d", time.Now().UnixNano())
	f.send(i, &godelv1.ConnectResponse{Message: &godelv1.ConnectResponse_Control{Control: &godelv1.RunControl{
		RunId: runID, Action: godelv1.ControlAction_CONTROL_ACTION_PAUSE,
	}}})
	waitFor(t, "the worker answers the probe "+runID, func() bool {
		for _, m := range f.messages(i) {
			if m.GetAck().GetRunId() == runID {
				return true
			}
		}
		return false
	})
}

func (f *fakeReplica) breakStream(i int) { close(f.stream(i).end) }

func (f *fakeReplica) setAcks(heartbeats bool, runMessage func(*godelv1.ConnectRequest) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ackHeartbeats, f.ackRunMessage = heartbeats, runMessage
}

// ------------------------------------------------------------------- helpers

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting until %s", waitLimit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func gitRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, args := range [][]string{
		{"init", "-q"},
		{"-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-q", "--allow-empty", "-m", "init"},
	} {
		if out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	return dir
}

// startWorker runs a worker (sandbox off) connected to the replicas until the test ends.
func startWorker(t *testing.T, replicas ...*fakeReplica) *Worker {
	t.Helper()
	w, _ := startStoppableWorker(t, replicas...)
	return w
}

// startStoppableWorker starts a worker connected to replicas; stop shuts it down as SIGTERM
// does and returns once Run has (the test's cleanup stops it too).
func startStoppableWorker(t *testing.T, replicas ...*fakeReplica) (w *Worker, stop func()) {
	t.Helper()
	cfg := &Config{WorkerID: "go-test-worker", Capacity: 4, Home: t.TempDir(), WorktreeRoot: t.TempDir(),
		Labels: map[string]string{"language": Language}, Hostname: "test", Sandbox: "off", Bwrap: "bwrap"}
	for _, f := range replicas {
		cfg.Connect = append(cfg.Connect, f.addr)
	}
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-stopped:
			if err != nil {
				t.Errorf("worker: %v", err)
			}
		case <-time.After(waitLimit):
			t.Errorf("the worker did not stop within %s", waitLimit)
		}
		if t.Failed() {
			t.Logf("worker log:\n%s", logs)
		}
	})
	t.Cleanup(stop)
	for _, f := range replicas {
		waitFor(t, "the worker connects to "+f.replicaID(), func() bool { return f.streamCount() > 0 })
	}
	return w, stop
}

func holds(w *Worker, runID string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.runs[runID] != nil
}

func hasState(updates []*godelv1.RunUpdate, state godelv1.RunState) bool {
	for _, u := range updates {
		if u.GetState() == state {
			return true
		}
	}
	return false
}

// describe: "STARTING#1 RUNNING#2 ...", each update's state and seq.
func describe(updates []*godelv1.RunUpdate) string {
	out := make([]string, len(updates))
	for i, u := range updates {
		out[i] = fmt.Sprintf("%s#%d", strings.TrimPrefix(u.GetState().String(), "RUN_STATE_"), u.GetSeq())
	}
	return strings.Join(out, " ")
}

func runState(w *Worker, runID string) godelv1.RunState {
	w.mu.Lock()
	r := w.runs[runID]
	w.mu.Unlock()
	if r == nil {
		return godelv1.RunState_RUN_STATE_UNSPECIFIED
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

func lastUpdate(updates []*godelv1.RunUpdate) *godelv1.RunUpdate {
	if len(updates) == 0 {
		return nil
	}
	return updates[len(updates)-1]
}

// ------------------------------------------------------------------- tests

// A run's updates carry seq 1..n; its final update stays with the worker until acknowledged:
// sent again after a reconnect when it was not, and not once it was.
func TestUpdatesAreNumberedAndTheFinalOneIsSentAgainUntilAcknowledged(t *testing.T) {
	repo := gitRepo(t)
	f := startReplica(t, "replica-1", 0)
	notFinal := func(req *godelv1.ConnectRequest) bool { return !terminal[req.GetUpdate().GetState()] }
	f.setAcks(true, notFinal)
	w := startWorker(t, f)

	f.assign(t, 0, "run-1", repo, "echo hi")
	waitFor(t, "the run succeeds", func() bool {
		return hasState(f.updates(0, "run-1"), godelv1.RunState_RUN_STATE_SUCCEEDED)
	})
	first := f.updates(0, "run-1")
	for i, u := range first {
		if u.GetSeq() != uint64(i+1) {
			t.Fatalf("updates %s, want seqs 1..%d", describe(first), len(first))
		}
	}
	final := lastUpdate(first)
	if final.GetState() != godelv1.RunState_RUN_STATE_SUCCEEDED {
		t.Fatalf("last update %v, want SUCCEEDED", final)
	}
	f.roundTrip(t, 0) // the acknowledgements of the updates before the final one are in
	if !holds(w, "run-1") {
		t.Fatal("the worker forgot a run whose final update was not acknowledged")
	}

	f.setAcks(true, func(*godelv1.ConnectRequest) bool { return true })
	f.breakStream(0)
	waitFor(t, "the final update comes again on the next stream", func() bool {
		return f.streamCount() > 1 && hasState(f.updates(1, "run-1"), godelv1.RunState_RUN_STATE_SUCCEEDED)
	})
	if runs := f.stream(1).hello.GetRuns(); len(runs) != 1 || runs[0].GetRunId() != "run-1" {
		t.Errorf("hello after the reconnect lists %v, want run-1 (ended, not acknowledged)", runs)
	}
	waitFor(t, "the worker forgets the acknowledged run", func() bool { return !holds(w, "run-1") })
	again := f.updates(1, "run-1")
	if len(again) != 1 || again[0].GetSeq() != final.GetSeq() || again[0].GetState() != final.GetState() {
		t.Errorf("sent again: %s, want only the final update, seq %d", describe(again), final.GetSeq())
	}

	f.breakStream(1)
	waitFor(t, "a heartbeat on the third stream", func() bool {
		if f.streamCount() < 3 {
			return false
		}
		for _, m := range f.messages(2) {
			if m.GetHeartbeat() != nil {
				return true
			}
		}
		return false
	})
	if runs := f.stream(2).hello.GetRuns(); len(runs) != 0 {
		t.Errorf("hello after the acknowledgement lists %v, want no run", runs)
	}
	for _, m := range f.messages(2) { // resends would be queued before the first heartbeat
		if m.GetUpdate() != nil {
			t.Errorf("an acknowledged update was sent again: %v", m.GetUpdate())
		}
	}
}

// A run whose owner stops acknowledging heartbeats is stopped and reported LOST after the
// owner's run lease; a run whose owner acknowledges them keeps running.
func TestARunIsStoppedWhenItsOwnersLeaseLapses(t *testing.T) {
	repo := gitRepo(t)
	live := startReplica(t, "replica-live", 600)
	silent := startReplica(t, "replica-silent", 600)
	w := startWorker(t, live, silent)
	lapsedBefore := logs.count(`"run lease lapsed; stopping the run"`)

	live.assign(t, 0, "run-a", repo, "exec sleep 60")
	silent.assign(t, 0, "run-b", repo, "exec sleep 60")
	for _, f := range []*fakeReplica{live, silent} {
		waitFor(t, "the run of "+f.replicaID()+" runs", func() bool {
			return hasState(f.updates(0, ""), godelv1.RunState_RUN_STATE_RUNNING)
		})
	}
	silent.setAcks(false, func(*godelv1.ConnectRequest) bool { return true })
	waitFor(t, "run-b is reported LOST", func() bool {
		return hasState(silent.updates(0, "run-b"), godelv1.RunState_RUN_STATE_LOST)
	})
	lost := lastUpdate(silent.updates(0, "run-b"))
	for _, want := range []string{"the worker lost contact with agent-service replica replica-silent for ", "(its run lease is 0.6s)"} {
		if !strings.Contains(lost.GetError(), want) {
			t.Errorf("LOST error %q, want it to contain %q", lost.GetError(), want)
		}
	}

	// run-a has run since before run-b's owner went silent, longer than the lease: it runs on
	// because its owner acknowledges the heartbeats.
	w.mu.Lock()
	runA := w.runs["run-a"]
	w.mu.Unlock()
	runA.mu.Lock()
	state, reason := runA.state, runA.stopReason
	runA.mu.Unlock()
	if state != godelv1.RunState_RUN_STATE_RUNNING || reason != "" {
		t.Errorf("run-a: state %v, stop reason %q; want RUNNING, not stopping", state, reason)
	}
	if got := live.updates(0, "run-a"); terminal[lastUpdate(got).GetState()] {
		t.Errorf("run-a ended: %v", lastUpdate(got))
	}
	if n := logs.count(`"run lease lapsed; stopping the run"`) - lapsedBefore; n != 1 {
		t.Errorf("the lapsed lease was logged %d times, want once", n)
	}
}

// HeartbeatAck and RunAck are part of the protocol, not warnings; heartbeats are numbered.
func TestAcknowledgementsAreNoSurprise(t *testing.T) {
	repo := gitRepo(t)
	f := startReplica(t, "replica-1", 5000)
	w := startWorker(t, f)
	before := logs.count("unexpected message from the replica")

	f.assign(t, 0, "run-1", repo, "echo hi")
	waitFor(t, "the run is done and acknowledged", func() bool {
		return hasState(f.updates(0, "run-1"), godelv1.RunState_RUN_STATE_SUCCEEDED) && !holds(w, "run-1")
	})
	waitFor(t, "three heartbeats", func() bool {
		n := 0
		for _, m := range f.messages(0) {
			if m.GetHeartbeat() != nil {
				n++
			}
		}
		return n >= 3
	})
	f.roundTrip(t, 0) // the worker handled the acknowledgements sent so far
	if n := logs.count("unexpected message from the replica") - before; n != 0 {
		t.Errorf("%d warnings about acknowledgements", n)
	}
	var last uint64
	for _, m := range f.messages(0) {
		if hb := m.GetHeartbeat(); hb != nil {
			if hb.GetSeq() <= last {
				t.Fatalf("heartbeat seq %d after %d, want increasing from 1", hb.GetSeq(), last)
			}
			last = hb.GetSeq()
		}
	}
}

// A replica restarted under a new id at the same address is another replica: its heartbeat
// acknowledgements renew nothing of the old one's, so the old one's run is stopped after the
// lease; its LOST update waits for an owner and goes, numbered after the run's earlier
// updates, to the replica that ADOPTs the run.
func TestAReplicaRestartedUnderANewIDIsAnotherReplica(t *testing.T) {
	repo := gitRepo(t)
	f := startReplica(t, "replica-old", 600)
	w := startWorker(t, f)
	f.assign(t, 0, "run-1", repo, "exec sleep 60")
	waitFor(t, "the run runs", func() bool { return hasState(f.updates(0, "run-1"), godelv1.RunState_RUN_STATE_RUNNING) })
	before := f.updates(0, "run-1")

	f.restartAs("replica-new")
	f.breakStream(0)
	waitFor(t, "the worker connects to the new replica", func() bool { return f.streamCount() > 1 })
	waitFor(t, "the worker stops the run of the old replica", func() bool {
		return runState(w, "run-1") == godelv1.RunState_RUN_STATE_LOST
	})
	f.roundTrip(t, 1)
	if got := f.updates(1, "run-1"); len(got) != 0 {
		t.Errorf("updates went to a replica that does not own the run: %s", describe(got))
	}

	f.send(1, &godelv1.ConnectResponse{Message: &godelv1.ConnectResponse_Control{Control: &godelv1.RunControl{
		RunId: "run-1", AgentId: "agent-run-1", Action: godelv1.ControlAction_CONTROL_ACTION_ADOPT,
	}}})
	waitFor(t, "the adopting replica is told the run is LOST", func() bool {
		return hasState(f.updates(1, "run-1"), godelv1.RunState_RUN_STATE_LOST)
	})
	lost := lastUpdate(f.updates(1, "run-1"))
	if want := lastUpdate(before).GetSeq() + 1; lost.GetSeq() != want {
		t.Errorf("LOST update seq %d after %s, want %d", lost.GetSeq(), describe(before), want)
	}
	if want := "lost contact with agent-service replica replica-old for "; !strings.Contains(lost.GetError(), want) {
		t.Errorf("LOST error %q, want it to contain %q", lost.GetError(), want)
	}
	waitFor(t, "the worker forgets the acknowledged run", func() bool { return !holds(w, "run-1") })
}

// A run the worker kills because it shuts down ended without an outcome of its own: LOST (it
// runs again elsewhere), not the agent's failure.
func TestARunStoppedByTheWorkersShutdownIsLost(t *testing.T) {
	repo := gitRepo(t)
	f := startReplica(t, "replica-shutdown", 0)
	_, stop := startStoppableWorker(t, f)
	f.assign(t, 0, "run-s", repo, "exec sleep 60")
	waitFor(t, "run-s runs", func() bool { return hasState(f.updates(0, "run-s"), godelv1.RunState_RUN_STATE_RUNNING) })
	stop()
	waitFor(t, "run-s is reported as it ends", func() bool { return terminal[lastUpdate(f.updates(0, "run-s")).GetState()] })
	final := lastUpdate(f.updates(0, "run-s"))
	if final.GetState() != godelv1.RunState_RUN_STATE_LOST || final.GetError() != "worker shutting down" {
		t.Errorf("final update %v %q, want LOST \"worker shutting down\"", final.GetState(), final.GetError())
	}
}

// CLEANUP removes an agent's worktree, but not while the agent's run still runs in it (the run
// is found by the worktree's name, the agent's id).
func TestCleanupIsRefusedWhileTheAgentsRunRunsInTheWorktree(t *testing.T) {
	repo := gitRepo(t)
	f := startReplica(t, "replica-cleanup", 0)
	startWorker(t, f)
	f.assign(t, 0, "run-c", repo, "exec sleep 60")
	waitFor(t, "run-c runs", func() bool { return hasState(f.updates(0, "run-c"), godelv1.RunState_RUN_STATE_RUNNING) })
	path := lastUpdate(f.updates(0, "run-c")).GetWorktree()
	control := func(action godelv1.ControlAction) *godelv1.ControlAck {
		t.Helper()
		acks := func() (out []*godelv1.ControlAck) {
			for _, m := range f.messages(0) {
				if a := m.GetAck(); a != nil && a.GetRunId() == "run-c" && a.GetAction() == action {
					out = append(out, a)
				}
			}
			return out
		}
		before := len(acks())
		f.send(0, &godelv1.ConnectResponse{Message: &godelv1.ConnectResponse_Control{Control: &godelv1.RunControl{
			RunId: "run-c", AgentId: "agent-run-c", Action: action, Worktree: path, Repo: repo,
		}}})
		waitFor(t, "the worker answers "+action.String(), func() bool { return len(acks()) > before })
		return acks()[before]
	}

	if ack := control(godelv1.ControlAction_CONTROL_ACTION_CLEANUP); ack.GetOk() || ack.GetError() != "run run-c still runs in "+path {
		t.Errorf("CLEANUP while run-c runs: ok %v, error %q", ack.GetOk(), ack.GetError())
	}
	if st, err := os.Stat(path); err != nil || !st.IsDir() {
		t.Fatalf("the worktree of the running run is gone: %v", err)
	}
	control(godelv1.ControlAction_CONTROL_ACTION_KILL)
	waitFor(t, "run-c is killed", func() bool { return hasState(f.updates(0, "run-c"), godelv1.RunState_RUN_STATE_KILLED) })
	if ack := control(godelv1.ControlAction_CONTROL_ACTION_CLEANUP); !ack.GetOk() {
		t.Errorf("CLEANUP after run-c ended: %q", ack.GetError())
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the worktree is left after CLEANUP: %v", err)
	}
	// The agent's next run is not refused as busy.
	f.send(0, &godelv1.ConnectResponse{Message: &godelv1.ConnectResponse_Assign{Assign: &godelv1.RunAssignment{
		RunId: "run-c2", AgentId: "agent-run-c", Task: "test", Repo: repo,
		Config: &godelv1.AgentConfig{Command: []string{"sh", "-c", "exec sleep 60"}},
	}}})
	waitFor(t, "run-c2 runs", func() bool { return hasState(f.updates(0, "run-c2"), godelv1.RunState_RUN_STATE_RUNNING) })
}

// A rejection says why: the replica tries a full or busy worker again soon and counts only the other
// refusals against the run (a run refused as "unspecified" by every worker would fail the agent).
func TestARejectionSaysWhy(t *testing.T) {
	repo := gitRepo(t)
	f := startReplica(t, "replica-reject", 0)
	startWorker(t, f)
	assign := func(runID, agentID, runtime string) {
		f.send(0, &godelv1.ConnectResponse{Message: &godelv1.ConnectResponse_Assign{Assign: &godelv1.RunAssignment{
			RunId: runID, AgentId: agentID, Task: "test", Repo: repo,
			Config: &godelv1.AgentConfig{Runtime: runtime, Command: []string{"sh", "-c", "exec sleep 60"}},
		}}})
	}
	rejection := func(runID string) *godelv1.RunUpdate {
		t.Helper()
		waitFor(t, runID+" is rejected", func() bool { return hasState(f.updates(0, runID), godelv1.RunState_RUN_STATE_REJECTED) })
		return lastUpdate(f.updates(0, runID))
	}
	want := func(runID string, reason godelv1.RejectReason) {
		t.Helper()
		if got := rejection(runID); got.GetRejectReason() != reason || got.GetError() == "" {
			t.Errorf("%s: rejected as %v %q, want %v with a message", runID, got.GetRejectReason(), got.GetError(), reason)
		}
	}

	assign("run-invalid", "", "")
	want("run-invalid", godelv1.RejectReason_REJECT_REASON_INVALID)
	assign("run-runtime", "agent-runtime", "no-such-runtime")
	want("run-runtime", godelv1.RejectReason_REJECT_REASON_RUNTIME)

	assign("run-1", "agent-1", "")
	waitFor(t, "run-1 runs", func() bool { return hasState(f.updates(0, "run-1"), godelv1.RunState_RUN_STATE_RUNNING) })
	assign("run-1b", "agent-1", "") // a second run of the same agent while the first still runs
	want("run-1b", godelv1.RejectReason_REJECT_REASON_AGENT_BUSY)

	for i := 2; i <= 4; i++ { // the worker's capacity is 4
		assign(fmt.Sprintf("run-%d", i), fmt.Sprintf("agent-%d", i), "")
	}
	for i := 2; i <= 4; i++ {
		runID := fmt.Sprintf("run-%d", i)
		waitFor(t, runID+" runs", func() bool { return hasState(f.updates(0, runID), godelv1.RunState_RUN_STATE_RUNNING) })
	}
	assign("run-5", "agent-5", "")
	want("run-5", godelv1.RejectReason_REJECT_REASON_CAPACITY)
}

// A heartbeat goes ahead of the run messages queued on the stream, and contact counts from its
// write: behind a burst of them (a thousand runs ending, a replica that reads slowly) it would
// arrive after the run lease, and the worker would stop every run of a live replica.
func TestAHeartbeatOvertakesABurstOfRunMessages(t *testing.T) {
	const burst = 3000 // of 2 KB each: far more than the stream's flow-control window holds
	payload := strings.Repeat("x", 2000)
	f := startReplica(t, "replica-burst", 10_000)
	f.setAcks(true, func(*godelv1.ConnectRequest) bool { return false })
	w := startWorker(t, f)
	c := w.conns[0]
	waitFor(t, "the stream is live", func() bool { live, _ := c.isLive(); return live })
	heartbeatSeq := func() uint64 { c.mu.Lock(); defer c.mu.Unlock(); return c.heartbeatSeq }

	f.stopReading()
	t.Cleanup(f.resumeReading)
	beforeBurst := heartbeatSeq()
	for i := range burst {
		update := &godelv1.RunUpdate{RunId: "run-burst", AgentId: "agent-burst", Seq: uint64(i + 1), Error: payload}
		if !c.send("run-burst", uint64(i+1), &godelv1.ConnectRequest{Message: &godelv1.ConnectRequest_Update{Update: update}}) {
			t.Fatal("the stream went down")
		}
	}
	waitFor(t, "heartbeats come while the replica does not read", func() bool { return heartbeatSeq() > beforeBurst+5 })
	f.resumeReading()
	resumed := time.Now()

	// updatesFirst: how many of the burst the replica read before the first heartbeat made after
	// the burst was queued (-1: none yet).
	updatesFirst := func() int {
		updates := 0
		for _, m := range f.messages(0) {
			if m.GetHeartbeat().GetSeq() > beforeBurst {
				return updates
			}
			if m.GetUpdate().GetRunId() == "run-burst" {
				updates++
			}
		}
		return -1
	}
	waitFor(t, "a heartbeat made after the burst arrives", func() bool { return updatesFirst() >= 0 })
	if n := updatesFirst(); n >= burst/3 {
		t.Errorf("the heartbeat arrived after %d of %d queued updates", n, burst)
	}
	// Acknowledgements renew contact as of a heartbeat's write, after the replica read again.
	waitFor(t, "the replica's acknowledgement renews contact", func() bool {
		silence, _ := c.silence("replica-burst", time.Now())
		return silence < time.Since(resumed)
	})
}
