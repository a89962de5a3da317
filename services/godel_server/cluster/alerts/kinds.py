"""The alert enums of the contract as the cluster service stores them, each with its mapper to and
from the proto (runtime/enums.py checks that the two name the same values)."""

from __future__ import annotations

from enum import StrEnum

from godel.v1 import alert_pb2
from godel_server.runtime.enums import ProtoEnum


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertState(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class ChannelType(StrEnum):
    WEBHOOK = "webhook"
    EVENT = "event"
    OPENCLAW = "openclaw"


SEVERITY = ProtoEnum(alert_pb2.AlertSeverity, Severity)
ALERT_STATE = ProtoEnum(alert_pb2.AlertState, AlertState)
CHANNEL_TYPE = ProtoEnum(alert_pb2.ChannelType, ChannelType)
