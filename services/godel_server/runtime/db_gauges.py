"""Gauges read from a service's database when /metrics is scraped (a Prometheus custom collector):
counts such as agents per status, spend per model or tasks waiting per team are facts of the
database, the same whichever replica is asked and right after a restart, which a counter kept in
one process's memory is not. The admin port serves /metrics from its own thread; the reading runs
on the service's event loop (its database engine lives there) with a deadline."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncSession

from godel_server.runtime.db import Database

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT_SECONDS = 3.0

# One gauge's samples: label values (in the family's label order) -> value.
Samples = Mapping[tuple[str, ...], float]
# What a service reads: gauge name -> its samples (a family left out has no samples).
Readings = Mapping[str, Samples]
Reader = Callable[[AsyncSession], Awaitable[Readings]]


@dataclass(frozen=True)
class GaugeSpec:
    """What a service reads at each scrape: its gauges and the function that reads them."""

    families: Sequence[GaugeFamily]
    read: Reader


@dataclass(frozen=True)
class GaugeFamily:
    name: str
    documentation: str
    labels: tuple[str, ...] = ()

    def metric(self, samples: Samples | None = None) -> GaugeMetricFamily:
        family = GaugeMetricFamily(self.name, self.documentation, labels=list(self.labels))
        for values, value in (samples or {}).items():
            family.add_metric(list(values), value)
        return family


def total(samples: Iterable[tuple[tuple[str, ...], float]]) -> dict[tuple[str, ...], float]:
    """Sums rows of (labels, value) that share their labels (a GROUP BY that split one series)."""
    out: dict[tuple[str, ...], float] = {}
    for labels, value in samples:
        out[labels] = out.get(labels, 0.0) + float(value)
    return out


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class DatabaseGauges(Collector):
    """Registered in the process's default registry while the service runs (`register`/`unregister`)."""

    def __init__(self, db: Database, spec: GaugeSpec) -> None:
        self._db = db
        self._families = tuple(spec.families)
        self._read = spec.read
        self._loop: asyncio.AbstractEventLoop | None = None

    def describe(self) -> Iterable[Metric]:
        """The names, without reading (the registry checks them for duplicates when registering)."""
        return [family.metric() for family in self._families]

    def collect(self) -> Iterable[Metric]:
        readings = self._readings()
        return [family.metric(readings.get(family.name)) for family in self._families]

    def _readings(self) -> Readings:
        loop = self._loop
        if loop is None or loop.is_closed() or _running_loop() is loop:
            return {}  # never wait for the loop on the loop itself
        try:
            return asyncio.run_coroutine_threadsafe(self._read_all(), loop).result(SCRAPE_TIMEOUT_SECONDS)
        except Exception as exc:
            log.warning("database gauges not read", extra={"error": repr(exc)})
            return {}

    async def _read_all(self) -> Readings:
        async with self._db.reader() as session:
            return await self._read(session)

    def register(self) -> DatabaseGauges:
        self._loop = asyncio.get_running_loop()
        REGISTRY.register(self)
        return self

    def unregister(self) -> None:
        self._loop = None
        REGISTRY.unregister(self)
