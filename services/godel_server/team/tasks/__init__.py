"""The task queue: priority tasks handed to idle team members (spec §3.1 tasks)."""
