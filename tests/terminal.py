"""Programs on a pseudo-terminal, as a user runs them: `Terminal` starts one with its standard
streams on a pty (so it sees a TTY), reads what it printed and types keys; `Screen` replays what a
terminal was sent (text, CR/LF, cursor up, erase below) into the lines a user would see."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios

ESCAPE = re.compile(r"\x1b\[(\d*)([A-Za-z])")


class Terminal:
    """A process on a pseudo-terminal (of `columns` x `rows`): what it printed so far, and keys
    typed to it."""

    def __init__(self, argv: list[str], env: dict[str, str], columns: int = 120, rows: int = 40) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.master = master
        self.process = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
        )
        os.close(slave)
        self.screen = ""

    def read(self) -> str:
        while select.select([self.master], [], [], 0.05)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the process ended and closed the terminal
                break
            if not chunk:
                break
            self.screen += chunk.decode(errors="replace")
        return self.screen

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        os.close(self.master)


class Screen:
    """Replays what a terminal was sent: text, CR/LF, cursor-up-N-lines (F) and erase-below (J).
    ``frames`` holds the screen as it stood each time it was erased (what the user saw)."""

    def __init__(self, text: str) -> None:
        self.rows = [""]
        self.row = self.col = 0
        self.frames: list[str] = []
        position = 0
        for match in ESCAPE.finditer(text):
            self._text(text[position : match.start()])
            self._escape(int(match[1] or 1), match[2])
            position = match.end()
        self._text(text[position:])

    def _text(self, text: str) -> None:
        for char in text:
            if char == "\r":
                self.col = 0
            elif char == "\n":
                self.row += 1
                if self.row == len(self.rows):
                    self.rows.append("")
            else:
                line = self.rows[self.row].ljust(self.col)
                self.rows[self.row] = line[: self.col] + char + line[self.col + 1 :]
                self.col += 1

    def _escape(self, count: int, command: str) -> None:
        if command == "F":
            self.row, self.col = max(0, self.row - count), 0
        elif command == "J":
            self.frames.append(self.text)
            self.rows = [*self.rows[: self.row], self.rows[self.row][: self.col]]
        else:
            raise AssertionError(f"unexpected escape sequence {command!r}")

    @property
    def text(self) -> str:
        return "\n".join(self.rows).rstrip("\n")
