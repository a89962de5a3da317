"""Merges the Prometheus expositions of the four services into one, with a `service` label."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from godel_server.runtime.config import ROLES, Settings


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _render(sample: Sample) -> str:
    labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(sample.labels.items()))
    return f"{sample.name}{{{labels}}} {sample.value!r}"


async def merged_exposition(settings: Settings) -> str:
    async with httpx.AsyncClient(timeout=2.0) as client:

        async def fetch(addr: str) -> str:
            try:
                response = await client.get(f"http://{addr}/metrics")
                return response.text if response.status_code == 200 else ""
            except httpx.HTTPError:
                return ""

        texts = await asyncio.gather(*(fetch(settings.admin_addrs[r]) for r in ROLES))
    families: dict[str, tuple[str, str, list[str]]] = {}
    for role, text in zip(ROLES, texts, strict=True):
        for family in text_string_to_metric_families(text):
            _, _, lines = families.setdefault(family.name, (family.documentation, family.type, []))
            for sample in family.samples:
                lines.append(_render(Sample(sample.name, {**sample.labels, "service": role}, sample.value)))
    out: list[str] = []
    for name, (doc, kind, lines) in sorted(families.items()):
        out.append(f"# HELP {name} {_escape(doc)}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(lines)
    return "\n".join(out) + "\n"
