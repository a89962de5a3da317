// The "command" runtime's argv template (services/godel_server/worker/runtimes/command.py):
// {task}, {worktree}, {agent_id} and {model} are substituted; inside the script of
// `sh -c SCRIPT` the values are shell-quoted unless the placeholder is the whole script.
const PLACEHOLDER = /\{(task|worktree|agent_id|model)\}/g;
const SHELLS = new Set(["sh", "bash", "dash", "zsh", "ksh", "mksh", "ash"]);
const VALUED = new Set(["-o", "+o", "-O", "+O"]);

export function shellScriptIndex(argv: string[]): number {
  if (argv.length === 0 || !SHELLS.has(argv[0]!.split("/").pop()!)) return -1;
  for (let i = 1; i < argv.length; ) {
    const arg = argv[i]!;
    if (VALUED.has(arg)) i += 2;
    else if (arg === "--" || arg.length < 2 || (arg[0] !== "-" && arg[0] !== "+")) return -1;
    else if (arg[0] === "-" && arg[1] !== "-" && arg.slice(1).includes("c")) return i + 1 < argv.length ? i + 1 : -1;
    else i++;
  }
  return -1;
}

/** Python's shlex.quote. */
export function shellQuote(s: string): string {
  if (s === "") return "''";
  if (/^[\w@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replaceAll("'", `'"'"'`)}'`;
}

export function renderArgv(template: string[], values: Record<string, string>): string[] {
  const script = shellScriptIndex(template);
  return template.map((part, i) => {
    const whole = /^\{(task|worktree|agent_id|model)\}$/.test(part);
    return part.replace(PLACEHOLDER, (_, name: string) => (i === script && !whole ? shellQuote(values[name]!) : values[name]!));
  });
}
