package worker

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

func env(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

func TestLoadConfigReadsThePythonWorkersSettings(t *testing.T) {
	c, err := LoadConfig(env(map[string]string{
		"GODEL_WORKER_LABELS":  "pool=gpu, zone=eu",
		"GODEL_WORKER_CONNECT": "a:1, b:2",
		"GODEL_HOME":           "/srv/godel",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"pool": "gpu", "zone": "eu", "language": "go"}
	if !maps.Equal(c.Labels, want) {
		t.Errorf("labels %v, want %v", c.Labels, want)
	}
	if !slices.Equal(c.Connect, []string{"a:1", "b:2"}) || c.WorktreeRoot != "/srv/godel-worktrees" {
		t.Errorf("connect %v, worktree root %q", c.Connect, c.WorktreeRoot)
	}
	if c.Sandbox != "bwrap" || c.Capacity != 16 || c.MaxProcesses != 512 {
		t.Errorf("defaults: sandbox %q, capacity %d, processes %d", c.Sandbox, c.Capacity, c.MaxProcesses)
	}
}

func TestAWorkerCannotClaimAnotherLanguage(t *testing.T) {
	c, err := LoadConfig(env(map[string]string{"GODEL_WORKER_LABELS": "language=python"}))
	if err != nil || c.Labels["language"] != "go" {
		t.Fatalf("labels %v, err %v", c.Labels, err)
	}
}

func TestBadSettingsAreRefusedNamingTheVariable(t *testing.T) {
	for name, value := range map[string]string{
		"GODEL_WORKER_LABELS":   "novalue",
		"GODEL_WORKER_CAPACITY": "-1",
		"GODEL_SANDBOX":         "docker",
		"GODEL_SANDBOX_PATHS":   "relative/dir",
		"GODEL_TLS_CA_FILE":     "/ca.pem",
	} {
		_, err := LoadConfig(env(map[string]string{name: value}))
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: err %v, want one naming %s", name, value, err, name)
		}
	}
}

func TestAWorkerMayTakeHalfOfWhatItsHeartbeatMayList(t *testing.T) {
	if got := MaxCapacity(); got != 10000 {
		t.Errorf("MaxCapacity() = %d, want 10000 (WorkerHeartbeat.runs max_items 20000 / 2)", got)
	}
}

func TestTheLargestCapacityIsAccepted(t *testing.T) {
	c, err := LoadConfig(env(map[string]string{"GODEL_WORKER_CAPACITY": "10000"}))
	if err != nil || c.Capacity != 10000 {
		t.Fatalf("capacity %v, err %v", c, err)
	}
}

func TestACapacityAboveWhatAHeartbeatCanListIsRefused(t *testing.T) {
	_, err := LoadConfig(env(map[string]string{"GODEL_WORKER_CAPACITY": "10001"}))
	want := "GODEL_WORKER_CAPACITY must be 0..10000, got 10001"
	if err == nil || err.Error() != want {
		t.Fatalf("err %v, want %q", err, want)
	}
}
