"""Progress on a terminal for the commands that follow long work (``godel do``, ``workflow run
--watch``, ``team start --watch``): the lines they print scroll as before, and below them a block
(a progress bar and a live table) is redrawn in place as the work moves, then erased when it ends.

When standard output is not a terminal (a pipe, a CI log), with ``--json``, or with ``TERM=dumb``,
only the lines are printed, exactly as before: logs and scripts see no escape sequence."""

from __future__ import annotations

import os
import shutil
import sys
from types import TracebackType

from godel_client.cli_common import out
from godel_client.table import truncate

CURSOR_UP = "\x1b[{}F"  # to the first column of the line N lines up
CLEAR_BELOW = "\x1b[J"  # erases from the cursor to the end of the screen
BAR_WIDTH = 24


def bar(done: float, total: float, width: int = BAR_WIDTH) -> str:
    """``[████████████░░░░░░░░░░░░]  50%``: the share of ``total`` that is ``done``."""
    share = min(1.0, max(0.0, done / total)) if total > 0 else 0.0
    filled = round(share * width)
    return f"[{'█' * filled}{'░' * (width - filled)}] {share:4.0%}"


def on_terminal(as_json: bool) -> bool:
    """Whether the progress block is drawn: a terminal on stdout, no --json, not TERM=dumb."""
    return not as_json and sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


class Live:
    """Lines that stay, and one block below them redrawn in place (only on a terminal).

    Used as a context manager: a normal exit erases the block (the command then prints its
    summary); an exception (Ctrl-C) leaves the last block on the screen."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._height = 0  # lines of the block on the screen now
        self._block: list[str] = []

    def __enter__(self) -> Live:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.clear()

    def line(self, text: str) -> None:
        """Prints a line that stays (above the block on a terminal)."""
        if not self.enabled:
            out(text)
            return
        self._write(self._erase() + text + "\n" + self._draw())

    def show(self, block: str) -> None:
        """Replaces the block (a no-op off a terminal)."""
        if not self.enabled:
            return
        self._block = _fit(block)
        self._write(self._erase() + self._draw())

    def clear(self) -> None:
        """Erases the block."""
        if self.enabled and self._height:
            self._block = []
            self._write(self._erase())

    def _erase(self) -> str:
        text = CURSOR_UP.format(self._height) + CLEAR_BELOW if self._height else ""
        self._height = 0
        return text

    def _draw(self) -> str:
        self._height = len(self._block)
        return "".join(row + "\n" for row in self._block)

    @staticmethod
    def _write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()


def _fit(block: str) -> list[str]:
    """The block's lines cut to the terminal's width (a wrapped line would break the redraw) and
    its height (a block taller than the screen cannot be redrawn in place)."""
    columns, rows = shutil.get_terminal_size()
    lines = [truncate(line, columns - 1) for line in block.splitlines()]
    room = max(2, rows - 2)
    if len(lines) > room:
        lines = [*lines[: room - 1], f"… {len(lines) - room + 1} more"]
    return lines
