"""`make down`: stops exactly the processes the last `make up` started (data is kept)."""

from __future__ import annotations

from godel_deploy import state
from godel_deploy.up import home


def main() -> int:
    state_file = home() / "mesh.json"
    if not state_file.exists():
        print("Godel is not up (no state file); nothing to stop.")
        return 0
    started, _ = state.load(state_file)
    for p in reversed(started):
        if state.stop(p):
            print(f"stopped {p.name} (pid {p.pid})")
        else:
            print(f"{p.name} (pid {p.pid}) was not running")
    state_file.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
