#!/usr/bin/env python3
"""Spawn a Godel agent over the REST API and wait for it (the tool of the OpenClaw `godel` skill).

Standard library only (the OpenClaw host needs python3 and nothing else). GODEL_URL is the Godel
REST gateway (Envoy, e.g. http://127.0.0.1:7373) and GODEL_API_KEY a `godel_sk_...` key, sent as
the X-API-Key header. Prints one JSON object; see SKILL.md for its fields and the exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

STATE_PREFIX = "LIFECYCLE_STATE_"
POLL_SECONDS = 1.0


class RequestFailed(Exception):
    pass


def call(method: str, url: str, key: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("x-api-key", key)
    request.add_header("accept", "application/json")
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, Any] = json.loads(response.read() or b"{}")
            return answer
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise RequestFailed(f"{method} {url}: HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise RequestFailed(f"{method} {url}: {exc}") from None


def state_of(agent: dict[str, Any]) -> str:
    return str(agent.get("lifecycleState", "")).removeprefix(STATE_PREFIX)


def ended(agent: dict[str, Any]) -> bool:
    """Completed or killed, or failed with no retry to come (a retrying agent has no completedAt)."""
    state = state_of(agent)
    return state in ("COMPLETED", "KILLED") or (state == "FAILED" and bool(agent.get("completedAt")))


def summary(agent: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": agent.get("id", ""),
        "state": state_of(agent),
        "result": agent.get("result", ""),
        "error": agent.get("lastError", ""),
        "commits": agent.get("commits", []),
        "worktree": agent.get("worktree", ""),
        "cost": agent.get("budgetConsumed", 0),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("--runtime", default="")
    parser.add_argument("--model", default="")
    parser.add_argument("--endpoint", default="", help="the runtime's endpoint (config.endpoint)")
    parser.add_argument("--label", default="openclaw")
    parser.add_argument("--budget", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--no-wait", action="store_true")
    args = parser.parse_args(argv)
    base, key = os.environ.get("GODEL_URL", "").rstrip("/"), os.environ.get("GODEL_API_KEY", "")
    if not base or not key:
        print(json.dumps({"error": "GODEL_URL and GODEL_API_KEY must be set"}))
        return 2
    body: dict[str, Any] = {"task": args.task, "label": args.label}
    config = {"runtime": args.runtime, "endpoint": args.endpoint}
    if any(config.values()):
        body["config"] = {k: v for k, v in config.items() if v}
    if args.model:
        body["model"] = args.model
    if args.budget > 0:
        body["budgetLimit"] = args.budget
    try:
        agent = call("POST", f"{base}/api/v1/agents", key, body)
        deadline = time.monotonic() + args.timeout
        while not args.no_wait and not ended(agent):
            if time.monotonic() >= deadline:
                print(json.dumps(summary(agent)))
                return 3
            time.sleep(POLL_SECONDS)
            agent = call("GET", f"{base}/api/v1/agents/{agent['id']}", key)
    except RequestFailed as exc:
        print(json.dumps({"error": str(exc)}))
        return 2
    print(json.dumps(summary(agent)))
    return 0 if args.no_wait or state_of(agent) == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main())
