package worker

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	godelv1 "github.com/godel-ai/godel/gen/go/godel/v1"
)

// The sandbox of agent processes, as services/godel_server/worker/sandbox.py builds it: the
// worktree read-write at its real path; what git needs of the repository (the common git
// directory read-only; objects/, the branch's ref and reflog directories and the worktree's
// admin directory writable); read-only system directories with /etc's secret files hidden; a
// private /tmp (also HOME), /proc and /dev; host paths granted by GODEL_SANDBOX_PATHS. New
// user, mount, PID, IPC, UTS, cgroup and (unless config.sandbox.network) network namespaces,
// no capabilities, no further user namespaces, and only the run's environment.

const (
	sandboxPath         = "/usr/local/bin:/usr/bin:/bin"
	sandboxHome         = "/tmp"
	mib                 = 1024 * 1024
	addressSpaceFactor  = 4
	probeTimeout        = 20 * time.Second
	worktreeLockName    = "godel-worktree.lock"
	maxSandboxPaths     = 32
	maxPathLen          = 4096
	maxLabels           = 32
	maxLabelLen         = 63
	sandboxProcOverhead = 2 // bwrap and its PID-1 reaper
)

var (
	systemDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"}
	etcSecrets = []string{
		"/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/ssh",
		"/etc/ssl/private", "/etc/sudoers", "/etc/sudoers.d", "/etc/security/opasswd",
	}
	namespaces   = []string{"--unshare-all", "--unshare-user", "--disable-userns", "--cap-drop", "ALL"}
	openaiTools  = []string{"shell", "read_file", "write_file", "git_commit", "bash", "file", "git"}
	sandboxKinds = map[string]bool{"": true, "bubblewrap": true}
)

// refused: the run asks its sandbox for something this worker does not grant.
type refused struct{ msg string }

func (r *refused) Error() string { return r.msg }

// limits of one run's process tree; 0 = none.
type limits struct{ memoryMB, processes, cpuSeconds int }

func (l limits) any() bool { return l.memoryMB > 0 || l.processes > 0 || l.cpuSeconds > 0 }

type policy struct {
	network     bool
	limits      limits
	readPaths   []string
	writePaths  []string
	wallSeconds float64
	notes       []string
}

// configProblems mirrors godel_server.runtime.agent_rules.config_problems.
func configProblems(c *godelv1.AgentConfig) []string {
	var problems []string
	sb := c.GetSandbox()
	if !sandboxKinds[sb.GetKind()] {
		problems = append(problems, `config.sandbox.kind: must be "" or "bubblewrap" (every agent runs sandboxed)`)
	}
	l := sb.GetLimits()
	for name, v := range map[string]float64{
		"max_memory_mb": float64(l.GetMaxMemoryMb()), "max_processes": float64(l.GetMaxProcesses()),
		"max_cpu_seconds": float64(l.GetMaxCpuSeconds()), "max_cpu_cores": l.GetMaxCpuCores(),
	} {
		if v < 0 {
			problems = append(problems, fmt.Sprintf("config.sandbox.limits.%s: must not be negative", name))
		}
	}
	for name, paths := range map[string][]string{"read_paths": sb.GetReadPaths(), "write_paths": sb.GetWritePaths()} {
		if len(paths) > maxSandboxPaths {
			problems = append(problems, fmt.Sprintf("config.sandbox.%s: must list at most %d paths", name, maxSandboxPaths))
		}
		for _, p := range paths {
			if !strings.HasPrefix(p, "/") || len(p) > maxPathLen {
				problems = append(problems, fmt.Sprintf("config.sandbox.%s: %q must be an absolute path", name, trunc(p, 100)))
			}
		}
	}
	for _, t := range c.GetTools() {
		if !contains(openaiTools, t) {
			problems = append(problems, fmt.Sprintf("config.tools: unknown tool %q", trunc(t, 100)))
		}
	}
	if len(c.GetWorkerSelector()) > maxLabels {
		problems = append(problems, fmt.Sprintf("config.worker_selector: at most %d labels", maxLabels))
	}
	for k, v := range c.GetWorkerSelector() {
		if len(k) == 0 || len(k) > maxLabelLen || len(v) > maxLabelLen {
			problems = append(problems, fmt.Sprintf("config.worker_selector[%q]: keys must be 1-%d characters, values at most %d", trunc(k, 100), maxLabelLen, maxLabelLen))
		}
	}
	return problems
}

// policyFor is the sandbox policy of a run (sandbox.py policy_for).
func (cfg *Config) policyFor(c *godelv1.AgentConfig) (*policy, error) {
	if problems := configProblems(c); len(problems) > 0 {
		return nil, &refused{problems[0]}
	}
	sb := c.GetSandbox()
	l := sb.GetLimits()
	p := &policy{
		network: sb.GetNetwork(),
		limits: limits{
			memoryMB:   under(cfg.MaxMemoryMB, int(l.GetMaxMemoryMb())),
			processes:  under(cfg.MaxProcesses, int(l.GetMaxProcesses())),
			cpuSeconds: under(cfg.MaxCPUSecs, int(l.GetMaxCpuSeconds())),
		},
	}
	for _, d := range []float64{c.GetTimeout().AsDuration().Seconds(), l.GetMaxDuration().AsDuration().Seconds()} {
		if d > 0 && (p.wallSeconds == 0 || d < p.wallSeconds) {
			p.wallSeconds = d
		}
	}
	if l.GetMaxCpuCores() > 0 {
		p.notes = append(p.notes, fmt.Sprintf("sandbox: max_cpu_cores=%g is not enforced on this worker (no cgroups v2); max_cpu_seconds bounds CPU time", l.GetMaxCpuCores()))
	}
	var err error
	if p.readPaths, err = cfg.granted("config.sandbox.read_paths", sb.GetReadPaths()); err != nil {
		return nil, err
	}
	if p.writePaths, err = cfg.granted("config.sandbox.write_paths", sb.GetWritePaths()); err != nil {
		return nil, err
	}
	return p, nil
}

func (cfg *Config) granted(name string, raw []string) ([]string, error) {
	secret := []string{resolve(cfg.Home), resolve(cfg.WorktreeRoot)}
	var out []string
	for _, r := range raw {
		path := resolve(r)
		allowed := false
		for _, root := range cfg.SandboxPaths {
			allowed = allowed || within(path, resolve(root))
		}
		if !allowed {
			return nil, &refused{fmt.Sprintf("%s: %s is not under the worker's GODEL_SANDBOX_PATHS", name, r)}
		}
		for _, s := range secret {
			if within(path, s) || within(s, path) {
				return nil, &refused{fmt.Sprintf("%s: %s would show the worker's data or other agents' worktrees", name, r)}
			}
		}
		out = append(out, path)
	}
	return out, nil
}

// systemMounts: the read-only system directories, with /etc's secret files hidden.
func systemMounts() []string {
	var args []string
	for _, name := range systemDirs {
		if target, err := os.Readlink(name); err == nil {
			args = append(args, "--symlink", target, name)
		} else if st, err := os.Stat(name); err == nil && st.IsDir() {
			args = append(args, "--ro-bind", name, name)
		}
	}
	for _, name := range etcSecrets {
		st, err := os.Lstat(name)
		if err != nil || st.Mode()&os.ModeSymlink != 0 {
			continue
		}
		if st.IsDir() {
			args = append(args, "--tmpfs", name, "--remount-ro", name)
		} else {
			args = append(args, "--ro-bind", "/dev/null", name)
		}
	}
	if st, err := os.Lstat("/etc/resolv.conf"); err == nil && st.Mode()&os.ModeSymlink != 0 {
		if target, err := filepath.EvalSymlinks("/etc/resolv.conf"); err == nil {
			if fi, err := os.Stat(target); err == nil && fi.Mode().IsRegular() {
				args = append(args, "--ro-bind", target, target)
			}
		}
	}
	return args
}

// sandbox says how the processes of one run start.
type sandbox struct {
	runID   string
	policy  *policy
	bwrap   string // "": GODEL_SANDBOX=off
	mounts  []string
	prlimit string
}

func (s *sandbox) overhead() int {
	if s.bwrap != "" {
		return sandboxProcOverhead
	}
	return 0
}

func (s *sandbox) baseEnv() map[string]string {
	env := map[string]string{"PATH": sandboxPath, "HOME": sandboxHome, "LANG": "C.UTF-8"}
	if s.bwrap == "" {
		for _, k := range []string{"PATH", "HOME"} {
			if v, ok := os.LookupEnv(k); ok {
				env[k] = v
			}
		}
	}
	return env
}

func (s *sandbox) rlimits(insideUserns bool) []string {
	if s.prlimit == "" {
		return nil
	}
	l := s.policy.limits
	args := []string{s.prlimit, "--core=0"}
	if l.memoryMB > 0 {
		size := strconv.Itoa(l.memoryMB * mib * addressSpaceFactor)
		args = append(args, "--as="+size+":"+size)
	}
	if l.cpuSeconds > 0 {
		args = append(args, fmt.Sprintf("--cpu=%d:%d", l.cpuSeconds+1, l.cpuSeconds+2))
	}
	if l.processes > 0 && insideUserns {
		args = append(args, fmt.Sprintf("--nproc=%d:%d", l.processes+1, l.processes+1))
	}
	return append(args, "--")
}

// command is the argv to execute and that process's environment.
func (s *sandbox) command(argv []string, env map[string]string, cwd string) ([]string, []string) {
	if s.bwrap == "" {
		return append(s.rlimits(false), argv...), environ(env)
	}
	wrapped := append([]string{s.bwrap}, namespaces...)
	wrapped = append(wrapped, "--die-with-parent")
	if s.policy.network {
		wrapped = append(wrapped, "--share-net")
	}
	wrapped = append(wrapped, s.mounts...)
	wrapped = append(wrapped, "--chdir", cwd, "--clearenv")
	for _, k := range sortedKeys(env) {
		wrapped = append(wrapped, "--setenv", k, env[k])
	}
	wrapped = append(wrapped, "--")
	wrapped = append(wrapped, s.rlimits(true)...)
	// bwrap runs outside the sandbox: none of the agent's variables; GODEL_RUN_ID lets a later
	// worker recognize (and kill) the tree if this one dies.
	return append(wrapped, argv...), []string{"PATH=" + sandboxPath, "GODEL_RUN_ID=" + s.runID}
}

// exitCode: bwrap reports a signal N of the command as 128 + N; -N means killed by signal N.
func (s *sandbox) exitCode(code int) int {
	if s.bwrap != "" && code > 128 && code < 160 {
		return 128 - code
	}
	return code
}

// sandboxes probes bubblewrap once, then makes each run's sandbox.
type sandboxes struct {
	cfg     *Config
	bwrap   string
	prlimit string
	system  []string
}

func newSandboxes(cfg *Config) *sandboxes {
	prlimit, _ := exec.LookPath("prlimit")
	return &sandboxes{cfg: cfg, prlimit: prlimit, system: systemMounts()}
}

// check makes sure agents can be sandboxed here (unless GODEL_SANDBOX=off).
func (s *sandboxes) check(ctx context.Context) error {
	if s.cfg.Sandbox == "off" {
		logger.Warn("UNSAFE: GODEL_SANDBOX=off: agents run WITHOUT a sandbox, with this worker's rights")
		return nil
	}
	path, err := exec.LookPath(s.cfg.Bwrap)
	if err != nil {
		return fmt.Errorf("bubblewrap (%q) is not installed: install it (Debian: apt-get install bubblewrap) or set GODEL_SANDBOX=off to run agents unsandboxed (unsafe)", s.cfg.Bwrap)
	}
	probe := &sandbox{runID: "probe", policy: &policy{}, bwrap: path, mounts: append(append([]string{}, s.system...), "--proc", "/proc", "--dev", "/dev")}
	argv, env := probe.command([]string{"sh", "-c", `test ! -e "$1" || { echo "$1 is visible in the sandbox"; exit 1; }`, "sh", s.cfg.Home}, map[string]string{"PATH": sandboxPath}, "/")
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("bubblewrap (%s) does not work here: %s", path, or(strings.TrimSpace(trunc(string(out), 500)), err.Error()))
	}
	s.bwrap = path
	if s.prlimit == "" {
		logger.Warn("prlimit not found: sandboxed runs get no rlimits, only the limits watchdog")
	}
	return nil
}

// forRun builds one run's sandbox (it creates git's writable directories).
func (s *sandboxes) forRun(runID string, c *godelv1.AgentConfig, wt *worktree) (*sandbox, error) {
	p, err := s.cfg.policyFor(c)
	if err != nil {
		return nil, err
	}
	if s.cfg.Sandbox == "off" {
		return &sandbox{runID: runID, policy: p, prlimit: s.prlimit}, nil
	}
	mounts := append(append([]string{}, s.system...), "--proc", "/proc", "--dev", "/dev")
	if p.limits.memoryMB > 0 {
		mounts = append(mounts, "--size", strconv.Itoa(p.limits.memoryMB*mib))
	}
	mounts = append(mounts, "--tmpfs", "/tmp", "--ro-bind", wt.common, wt.common)
	writable, err := wt.writable()
	if err != nil {
		return nil, err
	}
	for _, d := range writable {
		mounts = append(mounts, "--bind", d, d)
	}
	for _, d := range wt.alternates() {
		mounts = append(mounts, "--ro-bind-try", d, d)
	}
	if st, err := os.Stat(filepath.Join(wt.common, worktreeLockName)); err == nil && st.Mode().IsRegular() {
		mounts = append(mounts, "--ro-bind", "/dev/null", filepath.Join(wt.common, worktreeLockName))
	}
	for _, d := range p.readPaths {
		mounts = append(mounts, "--ro-bind", d, d)
	}
	for _, d := range p.writePaths {
		mounts = append(mounts, "--bind", d, d)
	}
	mounts = append(mounts, "--bind", wt.path, wt.path)
	return &sandbox{runID: runID, policy: p, bwrap: s.bwrap, mounts: mounts, prlimit: s.prlimit}, nil
}

func under(limit, asked int) int {
	if asked > 0 && limit > 0 {
		return min(asked, limit)
	}
	if asked > 0 {
		return asked
	}
	return limit
}

func resolve(p string) string {
	abs, _ := filepath.Abs(p)
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r
	}
	return abs
}

func within(path, root string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

func environ(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for _, k := range sortedKeys(env) {
		out = append(out, k+"="+env[k])
	}
	return out
}

func readLines(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}
