"""config.env is write-only: its values (where users put tokens) reach only the agent's own
processes, through the worker that runs it. Every RPC and event shows the names with ENV_MASK for
the values (mask_env, in the agent service), and the worker masks the values in what it reports of
a run (Scrubber: log lines, session messages, result, errors, safety blocks), so an agent that
prints its token does not publish it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from godel.v1 import agent_pb2
from godel_server.runtime.text import map_json_strings

ENV_MASK = "********"
# Shorter values are not masked in a run's reports: masking every "true" or "8080" in a log would
# hide more than it keeps secret, and a secret that short is no secret.
MIN_SECRET_CHARS = 8


def mask_env(config: agent_pb2.AgentConfig) -> agent_pb2.AgentConfig:
    """The config with each config.env value replaced by ENV_MASK (the names stay)."""
    for name in config.env:
        config.env[name] = ENV_MASK
    return config


class Scrubber:
    """Masks a run's config.env values (those of MIN_SECRET_CHARS or more) in text."""

    def __init__(self, env: Mapping[str, str]) -> None:
        values = sorted({v for v in env.values() if len(v) >= MIN_SECRET_CHARS}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(ENV_MASK, text)

    def data(self, value: Any) -> Any:
        """A JSON-like value with every key and string masked."""
        return value if self._pattern is None else map_json_strings(value, self)
