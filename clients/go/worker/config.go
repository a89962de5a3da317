// Package worker is a Godel worker in Go: it implements the worker protocol of
// proto/godel/v1/worker_service.proto (WorkerService.Connect) and runs "command" agents in
// git worktrees, each process in a bubblewrap sandbox with the binds, namespaces, rlimits and
// limits watchdog of the Python worker (services/godel_server/worker/sandbox.py, limits.py).
// It advertises the label language=go beside GODEL_WORKER_LABELS, so agents can ask for it
// with config.workerSelector. Settings are the Python worker's GODEL_* variables (Config).
package worker

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	godelv1 "github.com/godel-ai/godel/gen/go/godel/v1"
	"google.golang.org/protobuf/proto"
)

// Config holds the worker's settings.
type Config struct {
	Connect      []string          // GODEL_WORKER_CONNECT: agent-service replica addresses
	WorkerID     string            // GODEL_WORKER_ID
	Capacity     int               // GODEL_WORKER_CAPACITY
	APIKey       string            // GODEL_API_KEY or the file GODEL_API_KEY_FILE (role worker)
	Home         string            // GODEL_HOME (never visible to agents)
	WorktreeRoot string            // GODEL_WORKTREE_ROOT, default <home>-worktrees
	Labels       map[string]string // GODEL_WORKER_LABELS plus language=go
	Hostname     string
	Sandbox      string   // GODEL_SANDBOX: "bwrap" or "off" (UNSAFE)
	Bwrap        string   // GODEL_SANDBOX_BWRAP
	SandboxPaths []string // GODEL_SANDBOX_PATHS: host paths agents may ask to see
	MaxMemoryMB  int      // GODEL_SANDBOX_MAX_MEMORY_MB
	MaxProcesses int      // GODEL_SANDBOX_MAX_PROCESSES (512)
	MaxCPUSecs   int      // GODEL_SANDBOX_MAX_CPU_SECONDS
	TLSCA        string   // GODEL_TLS_CA_FILE, GODEL_TLS_CERT_FILE, GODEL_TLS_KEY_FILE: mutual TLS
	TLSCert      string
	TLSKey       string
}

// Language is the value of the "language" label this worker always advertises.
const Language = "go"

// LoadConfig reads the settings through getenv (os.Getenv in production).
func LoadConfig(getenv func(string) string) (*Config, error) {
	home := getenv("GODEL_HOME")
	if home == "" {
		userHome, _ := os.UserHomeDir()
		home = filepath.Join(userHome, ".godel")
	}
	home = filepath.Clean(home)
	hostname, _ := os.Hostname()
	c := &Config{
		Home:     home,
		Hostname: hostname,
		Sandbox:  strings.ToLower(strings.TrimSpace(or(getenv("GODEL_SANDBOX"), "bwrap"))),
		Bwrap:    or(getenv("GODEL_SANDBOX_BWRAP"), "bwrap"),
		TLSCA:    getenv("GODEL_TLS_CA_FILE"),
		TLSCert:  getenv("GODEL_TLS_CERT_FILE"),
		TLSKey:   getenv("GODEL_TLS_KEY_FILE"),
	}
	agentPort := or(getenv("GODEL_AGENT_PORT"), "50051")
	for _, a := range strings.Split(or(getenv("GODEL_WORKER_CONNECT"), or(getenv("GODEL_AGENT_ADDR"), "127.0.0.1:"+agentPort)), ",") {
		if a = strings.TrimSpace(a); a != "" {
			c.Connect = append(c.Connect, a)
		}
	}
	if len(c.Connect) == 0 {
		return nil, fmt.Errorf("GODEL_WORKER_CONNECT must name at least one address")
	}
	suffix := make([]byte, 2)
	_, _ = rand.Read(suffix)
	c.WorkerID = or(getenv("GODEL_WORKER_ID"), fmt.Sprintf("go-worker-%s-%d-%s", hostname, os.Getpid(), hex.EncodeToString(suffix)))
	var err error
	ints := []struct {
		name string
		def  int
		dst  *int
	}{
		{"GODEL_WORKER_CAPACITY", 16, &c.Capacity},
		{"GODEL_SANDBOX_MAX_MEMORY_MB", 0, &c.MaxMemoryMB},
		{"GODEL_SANDBOX_MAX_PROCESSES", 512, &c.MaxProcesses},
		{"GODEL_SANDBOX_MAX_CPU_SECONDS", 0, &c.MaxCPUSecs},
	}
	for _, i := range ints {
		if *i.dst, err = nonNegative(getenv(i.name), i.def); err != nil {
			return nil, fmt.Errorf("%s: %w", i.name, err)
		}
	}
	if maxCapacity := MaxCapacity(); c.Capacity > maxCapacity {
		return nil, fmt.Errorf("GODEL_WORKER_CAPACITY must be 0..%d, got %d", maxCapacity, c.Capacity)
	}
	c.APIKey = getenv("GODEL_API_KEY")
	if file := getenv("GODEL_API_KEY_FILE"); c.APIKey == "" && file != "" {
		raw, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("GODEL_API_KEY_FILE %q cannot be read: %w", file, err)
		}
		c.APIKey = strings.TrimSpace(string(raw))
	}
	c.WorktreeRoot = filepath.Clean(or(getenv("GODEL_WORKTREE_ROOT"), home+"-worktrees"))
	if c.Labels, err = parseLabels(getenv("GODEL_WORKER_LABELS")); err != nil {
		return nil, err
	}
	c.Labels["language"] = Language
	for _, p := range strings.Split(getenv("GODEL_SANDBOX_PATHS"), ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("GODEL_SANDBOX_PATHS must list absolute paths, got %q", p)
		}
		c.SandboxPaths = append(c.SandboxPaths, filepath.Clean(p))
	}
	if c.Sandbox != "bwrap" && c.Sandbox != "off" {
		return nil, fmt.Errorf("GODEL_SANDBOX must be one of bwrap, off, got %q", c.Sandbox)
	}
	if given := boolCount(c.TLSCA != "", c.TLSCert != "", c.TLSKey != ""); given != 0 && given != 3 {
		return nil, fmt.Errorf("mutual TLS needs GODEL_TLS_CA_FILE, GODEL_TLS_CERT_FILE and GODEL_TLS_KEY_FILE together")
	}
	return c, nil
}

// defaultMaxItems is the contract's bound of a repeated field without max_items (limits.proto).
const defaultMaxItems = 100

// MaxCapacity is the most runs a worker may take: half of what its heartbeat may list
// (WorkerHeartbeat.runs in the contract), since a heartbeat also lists the runs that ended and
// wait for their updates' acknowledgement. The agent service cuts a heartbeat to that bound and
// takes a run missing from it for lost.
func MaxCapacity() int {
	runs := (&godelv1.WorkerHeartbeat{}).ProtoReflect().Descriptor().Fields().ByName("runs")
	limits, _ := proto.GetExtension(runs.Options(), godelv1.E_Limits).(*godelv1.Limits)
	maxItems := int(limits.GetMaxItems())
	if maxItems == 0 {
		maxItems = defaultMaxItems
	}
	return maxItems / 2
}

func parseLabels(raw string) (map[string]string, error) {
	labels := map[string]string{}
	for _, entry := range strings.Split(raw, ",") {
		if entry = strings.TrimSpace(entry); entry == "" {
			continue
		}
		key, value, ok := strings.Cut(entry, "=")
		if !ok || strings.TrimSpace(key) == "" {
			return nil, fmt.Errorf("GODEL_WORKER_LABELS must list key=value pairs, got %q", entry)
		}
		labels[strings.TrimSpace(key)] = strings.TrimSpace(value)
	}
	return labels, nil
}

func nonNegative(raw string, def int) (int, error) {
	if strings.TrimSpace(raw) == "" {
		return def, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(raw))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("must be a whole number >= 0, got %q", raw)
	}
	return n, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func boolCount(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}
