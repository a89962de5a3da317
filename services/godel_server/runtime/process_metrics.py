"""Memory figures of every Godel process (spec §9.1 godel_memory_usage_bytes), and the share of its
host's memory in use, which the autonomic loop's default rebalance policy watches (memory > 90%).
Read from /proc at every scrape; on a system without /proc the family has no samples."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PROC = Path("/proc")


def resident_bytes(proc: Path = PROC) -> int | None:
    """The process's resident memory (the second field of /proc/self/statm, in pages)."""
    try:
        pages = int((proc / "self" / "statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def host_memory_ratio(proc: Path = PROC) -> float | None:
    """1 - MemAvailable / MemTotal of /proc/meminfo: the share of the host's memory in use."""
    try:
        fields = dict(
            line.split(":", 1) for line in (proc / "meminfo").read_text().splitlines() if ":" in line
        )
        total = int(fields["MemTotal"].split()[0])
        available = int(fields["MemAvailable"].split()[0])
    except (OSError, ValueError, KeyError, IndexError):
        return None
    return 1.0 - available / total if total > 0 else None


class ProcessMemory(Collector):
    def collect(self) -> Iterable[Metric]:
        rss = GaugeMetricFamily("godel_memory_usage_bytes", "Resident memory of this process")
        ratio = GaugeMetricFamily("godel_memory_usage_ratio", "Share of the host's memory in use, 0-1")
        if (value := resident_bytes()) is not None:
            rss.add_metric([], value)
        if (share := host_memory_ratio()) is not None:
            ratio.add_metric([], share)
        return [rss, ratio]


REGISTRY.register(ProcessMemory())
