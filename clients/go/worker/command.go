package worker

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"syscall"
)

// The "command" runtime's argv template (services/godel_server/worker/runtimes/command.py).

var (
	placeholder = regexp.MustCompile(`\{(task|worktree|agent_id|model)\}`)
	shells      = map[string]bool{"sh": true, "bash": true, "dash": true, "zsh": true, "ksh": true, "mksh": true, "ash": true}
	valued      = map[string]bool{"-o": true, "+o": true, "-O": true, "+O": true}
	shellSafe   = regexp.MustCompile(`^[\w@%+=:,./-]+$`)
)

// shellScriptIndex is the index of SCRIPT in `<shell> [options] -c SCRIPT [name [args...]]`,
// or -1 for any other argv.
func shellScriptIndex(argv []string) int {
	if len(argv) == 0 || !shells[filepath.Base(argv[0])] {
		return -1
	}
	for i := 1; i < len(argv); {
		arg := argv[i]
		switch {
		case valued[arg]:
			i += 2
		case arg == "--" || len(arg) < 2 || (arg[0] != '-' && arg[0] != '+'):
			return -1
		case arg[0] == '-' && arg[1] != '-' && strings.Contains(arg[1:], "c"):
			if i+1 < len(argv) {
				return i + 1
			}
			return -1
		default:
			i++
		}
	}
	return -1
}

// shellQuote is Python's shlex.quote.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

// renderArgv substitutes {task}, {worktree}, {agent_id} and {model}; inside the script of
// `sh -c SCRIPT` the values are shell-quoted, unless the placeholder is the whole script.
func renderArgv(template []string, values map[string]string) []string {
	script := shellScriptIndex(template)
	out := make([]string, len(template))
	for i, part := range template {
		quote := i == script && !fullMatch(part)
		out[i] = placeholder.ReplaceAllStringFunc(part, func(m string) string {
			v := values[m[1:len(m)-1]]
			if quote {
				return shellQuote(v)
			}
			return v
		})
	}
	return out
}

func fullMatch(s string) bool {
	loc := placeholder.FindStringIndex(s)
	return loc != nil && loc[0] == 0 && loc[1] == len(s)
}

// executable: whether argv[0] can be started (relative to the worktree, or on the run's PATH).
func executable(program, cwd, path string) bool {
	if strings.Contains(program, "/") {
		if !filepath.IsAbs(program) {
			program = filepath.Join(cwd, program)
		}
		return syscall.Access(program, 1) == nil
	}
	for _, dir := range filepath.SplitList(path) {
		candidate := filepath.Join(dir, program)
		if st, err := os.Stat(candidate); err == nil && !st.IsDir() && syscall.Access(candidate, 1) == nil {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
