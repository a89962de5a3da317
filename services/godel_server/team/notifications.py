"""Teams and workflows may name notification channels (TeamConfig.notify_channels,
WorkflowDefinition.notify_channels) that the cluster service tells when they end: their final
events carry the names (cluster/alerts/outcomes.py sends). Naming channels routes messages into
them, so it needs the permission that routing an alert rule to channels needs: alert:create."""

from __future__ import annotations

from collections.abc import Sequence

from godel_server.runtime.context import current_caller
from godel_server.runtime.rbac import require_permission
from godel_server.runtime.validation import Violations

MAX_CHANNEL_NAME = 255  # NotificationChannel.name


def check_notify_channels(v: Violations, field: str, names: Sequence[str]) -> None:
    """Each name given, bounded, and named once (the channels themselves are the cluster
    service's: a name that matches none is skipped when the team or workflow ends)."""
    seen: set[str] = set()
    for i, name in enumerate(names):
        v.require(f"{field}[{i}]", name, max_len=MAX_CHANNEL_NAME)
        if name in seen:
            v.add(f"{field}[{i}]", f"{name!r} is named twice")
        seen.add(name)


def require_notify_permission(names: Sequence[str]) -> None:
    """PERMISSION_DENIED when the caller names channels without permission alert:create."""
    if names:
        require_permission(
            current_caller(), "alert", "create", what="name notification channels (notify_channels)"
        )
