"""Scrapes the four services' admin ports and merges their Prometheus expositions into one, with a
`service` label."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from godel_server.runtime.config import Settings
from godel_server.runtime.topology import ROLES, Role


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _render(sample: Sample) -> str:
    labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(sample.labels.items()))
    return f"{sample.name}{{{labels}}} {sample.value!r}"


async def scrape(settings: Settings, roles: tuple[Role, ...] = ROLES) -> dict[Role, str]:
    """The exposition text of each role's admin port ("" for a role that does not answer)."""
    async with httpx.AsyncClient(timeout=2.0) as client:

        async def fetch(addr: str) -> str:
            try:
                response = await client.get(f"http://{addr}/metrics")
                return response.text if response.status_code == 200 else ""
            except httpx.HTTPError:
                return ""

        texts = await asyncio.gather(*(fetch(settings.admin_addrs[r]) for r in roles))
    return dict(zip(roles, texts, strict=True))


async def merged_exposition(settings: Settings) -> str:
    texts = await scrape(settings)
    families: dict[str, tuple[str, str, list[str]]] = {}
    for role, text in texts.items():
        for family in text_string_to_metric_families(text):
            _, _, lines = families.setdefault(family.name, (family.documentation, family.type, []))
            for sample in family.samples:
                lines.append(_render(Sample(sample.name, {**sample.labels, "service": role}, sample.value)))
    out: list[str] = []
    for family_name, (doc, kind, lines) in sorted(families.items()):
        # The parser names a counter's family without the `_total` its samples (and the text
        # format's HELP and TYPE lines) carry.
        name = f"{family_name}_total" if kind == "counter" else family_name
        out.append(f"# HELP {name} {_escape(doc)}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(lines)
    return "\n".join(out) + "\n"
