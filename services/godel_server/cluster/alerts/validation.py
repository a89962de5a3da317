"""Checks of the alert and autonomic requests: every field bounded, every violation named."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Protocol
from urllib.parse import urlsplit

from google.protobuf import duration_pb2

from godel_server.cluster.snapshot import OPERATOR
from godel_server.runtime.validation import Violations

METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
MAX_NAME = 255
MAX_TEXT = 2000
MAX_LABELS = 20
MAX_CHANNELS = 20
MAX_URL = 2048
MAX_REQUEST_ID = 100
DAY = 86400.0


def check_name(v: Violations, field: str, value: str) -> None:
    v.require(field, value, max_len=MAX_NAME)


def check_labels(v: Violations, field: str, labels: Mapping[str, str], *, required: bool = False) -> None:
    if required and not labels:
        v.add(field, "must name at least one label")
    if len(labels) > MAX_LABELS:
        v.add(field, f"must have at most {MAX_LABELS} labels")
    for key, value in labels.items():
        if not LABEL_NAME.match(key) or len(key) > MAX_NAME:
            v.add(f"{field}[{key[:50]!r}]", "is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)")
        elif len(value) > MAX_NAME:
            v.add(f"{field}[{key!r}]", f"must be at most {MAX_NAME} characters")


def check_metric(v: Violations, field: str, metric: str) -> None:
    if not metric:
        v.add(field, "is required")
    elif len(metric) > MAX_NAME or not METRIC_NAME.match(metric):
        v.add(field, "is not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)")


def check_threshold(v: Violations, field: str, value: float) -> None:
    if not math.isfinite(value):
        v.add(field, "must be a finite number")


class Threshold(Protocol):
    """What an AlertCondition and a MetricTrigger share: a threshold on a metric's series."""

    @property
    def metric(self) -> str: ...
    @property
    def operator(self) -> int: ...
    @property
    def threshold(self) -> float: ...
    @property
    def labels(self) -> Mapping[str, str]: ...


def check_threshold_condition(v: Violations, field: str, c: Threshold) -> None:
    check_metric(v, f"{field}.metric", c.metric)
    if OPERATOR.get(c.operator) is None:
        v.add(f"{field}.operator", "must be GT, LT, EQ or NE")
    check_threshold(v, f"{field}.threshold", c.threshold)
    check_labels(v, f"{field}.labels", c.labels)


def check_duration(
    v: Violations, field: str, value: duration_pb2.Duration, *, maximum: float, minimum: float = 0.0
) -> float:
    seconds = value.seconds + value.nanos / 1e9
    if not minimum <= seconds <= maximum:
        v.add(field, f"must be between {minimum:g}s and {maximum:g}s")
    return seconds


def check_request_id(v: Violations, value: str) -> None:
    v.max_len("request_id", value, MAX_REQUEST_ID)


def check_channel_names(v: Violations, field: str, names: Sequence[str]) -> None:
    if len(names) > MAX_CHANNELS:
        v.add(field, f"must name at most {MAX_CHANNELS} channels")
    for i, name in enumerate(names):
        if not name or len(name) > MAX_NAME:
            v.add(f"{field}[{i}]", f"must be a channel name of 1 to {MAX_NAME} characters")


def check_webhook_url(v: Violations, field: str, url: str) -> None:
    parts = urlsplit(url)
    if not url:
        v.add(field, "is required for a webhook channel")
    elif len(url) > MAX_URL:
        v.add(field, f"must be at most {MAX_URL} characters")
    elif parts.scheme not in ("http", "https") or not parts.hostname:
        v.add(field, "must be an http(s) URL")
    elif parts.username or parts.password:
        v.add(field, "must not carry credentials (give a secret to sign the requests)")


MAX_OPENCLAW_CHANNEL = 64
MAX_TARGET = 512


class OpenClawChannelRequest(Protocol):
    @property
    def url(self) -> str: ...
    @property
    def openclaw_channel(self) -> str: ...
    @property
    def target(self) -> str: ...


def check_openclaw_channel(v: Violations, request: OpenClawChannelRequest) -> None:
    """An OpenClaw channel: the Gateway's ws(s) URL, its chat channel and a recipient."""
    parts = urlsplit(request.url)
    if not request.url:
        v.add("url", "is required for an OpenClaw channel (the Gateway's ws:// or wss:// URL)")
    elif len(request.url) > MAX_URL:
        v.add("url", f"must be at most {MAX_URL} characters")
    elif parts.scheme not in ("ws", "wss") or not parts.hostname:
        v.add("url", "must be the OpenClaw Gateway's ws:// or wss:// URL")
    elif parts.username or parts.password:
        v.add("url", "must not carry credentials (give the Gateway's token as the secret)")
    v.require("openclaw_channel", request.openclaw_channel, max_len=MAX_OPENCLAW_CHANNEL)
    v.require("target", request.target, max_len=MAX_TARGET)
