"""Godel server: the four deployable services (agent, team, event, cluster) and their shared runtime."""

__version__ = "0.1.0"
