"""Runtimes that execute a run inside its worktree: "command", "openai" and "openclaw"."""

from __future__ import annotations

from godel_server.runtime.agent_rules import RUNTIMES
from godel_server.worker.runtimes.base import Outcome, RunContext, Runtime


def runtime_name(config_runtime: str) -> str:
    """The runtime an AgentConfig asks for ("" means "command")."""
    return config_runtime.strip().lower() or "command"


def make_runtime(name: str) -> Runtime:
    if name == "command":
        from godel_server.worker.runtimes.command import CommandRuntime

        return CommandRuntime()
    if name == "openai":
        from godel_server.worker.runtimes.openai import OpenAIRuntime

        return OpenAIRuntime()
    if name == "openclaw":
        from godel_server.worker.runtimes.openclaw import OpenClawRuntime

        return OpenClawRuntime()
    raise ValueError(f"unknown runtime {name!r}")


__all__ = ["RUNTIMES", "Outcome", "RunContext", "Runtime", "make_runtime", "runtime_name"]
