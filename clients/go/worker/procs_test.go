package worker

import (
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The limits watchdog walks every watched tree in one pass per interval, not each tree on its
// own ticker: with a thousand agents that was ten thousand /proc walks a second.

// startGroup starts argv as the leader of its own process group, killed (group and all) at the end.
func startGroup(t *testing.T, argv ...string) int {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		signalGroup(cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return cmd.Process.Pid
}

type stopReasons struct {
	mu  sync.Mutex
	got []string
}

func (s *stopReasons) stop(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, reason)
}

func (s *stopReasons) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

func TestManyWatchedTreesCostOnePassPerInterval(t *testing.T) {
	const trees = 20
	done := make(chan struct{})
	var watchers sync.WaitGroup
	stopped := &stopReasons{}
	roomy := limits{memoryMB: 1_000_000}
	before := samplingPasses.Load()
	for range trees {
		root := startGroup(t, "sleep", "60")
		watchers.Go(func() { watch(root, roomy, 0, stopped.stop, done) })
	}
	time.Sleep(time.Second) // the window the passes are counted in
	passes := samplingPasses.Load() - before
	close(done)
	t.Logf("%d passes over %d trees in 1 s", passes, trees)
	// A ticker per tree was a pass per tree per 100 ms: ~200 in the window. One pass for all of
	// them per interval is at most ~10.
	if passes < 1 || passes >= trees {
		t.Errorf("%d passes over %d trees in 1 s, want 1 to %d", passes, trees, trees-1)
	}
	if got := stopped.all(); len(got) != 0 {
		t.Errorf("stopped %v, want none", got)
	}
	returned := make(chan struct{})
	go func() { watchers.Wait(); close(returned) }()
	select {
	case <-returned:
	case <-time.After(waitLimit):
		t.Fatalf("the watches did not return within %s of done", waitLimit)
	}
	waitFor(t, "the sampler is idle with nothing to watch", func() bool {
		watchdog.mu.Lock()
		defer watchdog.mu.Unlock()
		return !watchdog.running
	})
}

func TestATreeOverItsProcessLimitIsStoppedWithTheReason(t *testing.T) {
	root := startGroup(t, "sh", "-c", "sleep 60 & sleep 60 & wait")
	stopped := &stopReasons{}
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		watch(root, limits{processes: 2}, 0, stopped.stop, make(chan struct{}))
	}()
	select {
	case <-returned:
	case <-time.After(waitLimit):
		t.Fatalf("the watch did not return within %s", waitLimit)
	}
	got := stopped.all()
	if len(got) != 1 || !strings.HasPrefix(got[0], "process limit reached: ") || !strings.Contains(got[0], "limit 2 ") {
		t.Fatalf("stopped %q, want one process limit reason", got)
	}
}

func TestALongPassSpacesThePassesOut(t *testing.T) {
	if got := pauseAfter(10 * time.Millisecond); got != 100*time.Millisecond {
		t.Errorf("pauseAfter(10ms) = %s, want 100ms", got)
	}
	// Sampling takes at most a quarter of the time: a 1 s pass waits 3 s.
	if got := pauseAfter(time.Second); got != 3*time.Second {
		t.Errorf("pauseAfter(1s) = %s, want 3s", got)
	}
}
