"""A real IRC server for the tests (Debian's `ngircd`, apt-get install ngircd) on a free loopback
port with a config of our own, and a small IRC client that joins a channel and collects what is
said there: the chat channel an OpenClaw Gateway sends Godel's alerts to in a test.

    with IrcServer(tmp_path) as server, IrcClient(server.port, "watcher") as client:
        client.join("#alerts")
        ...  # something says "hello" in #alerts
        client.wait_for_message("#alerts", lambda text: "hello" in text, 60, "hello")
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from godel_deploy.ports import LOOPBACK, free_port, port_open
from godel_deploy.process import ManagedProcess
from tests.waits import wait_for

START_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Privmsg:
    sender: str  # nick!user@host
    target: str  # a channel or a nick
    text: str


def _config(port: int) -> str:
    # PAM, ident and DNS lookups off: a loopback client registers at once.
    return "\n".join(
        [
            "[Global]",
            "\tName = irc.godel.test",
            "\tInfo = Godel test IRC server",
            "\tAdminInfo1 = Godel tests",
            "\tAdminInfo2 = loopback",
            "\tAdminEMail = root@localhost",
            f"\tListen = {LOOPBACK}",
            f"\tPorts = {port}",
            "\tMotdPhrase = Godel tests",
            "[Limits]",
            # OpenClaw sends from a second connection whose nick is its own plus "_" (one more
            # for each send under way): the default 9 characters are too few.
            "\tMaxNickLength = 30",
            "\tPingTimeout = 300",
            "\tPongTimeout = 60",
            "[Options]",
            "\tPAM = no",
            "\tIdent = no",
            "\tDNS = no",
            "",
        ]
    )


class IrcServer:
    """`ngircd --nodaemon` with its own config under `home`, listening on 127.0.0.1:<port>."""

    def __init__(self, home: Path, port: int | None = None) -> None:
        self.home = home
        self.port = port or free_port()
        self.process: ManagedProcess | None = None

    def start(self) -> IrcServer:
        binary = shutil.which("ngircd") or "/usr/sbin/ngircd"
        if not Path(binary).is_file():
            raise RuntimeError("ngircd is not installed (apt-get install -y ngircd; .ci/run does)")
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.home / "ngircd.conf"
        config.write_text(_config(self.port))
        self.process = ManagedProcess(
            [binary, "--nodaemon", "--config", str(config)], self.home / "ngircd.log", name="ngircd"
        )
        self.process.start()
        self.process.wait_for(
            lambda: port_open(self.port), START_TIMEOUT_SECONDS, f"ngircd on port {self.port}"
        )
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=10.0)

    def __enter__(self) -> IrcServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class IrcClient:
    """One IRC connection: registers as `nick`, answers PINGs, and records every PRIVMSG it sees
    (a reader thread), so a test can wait for a line said in a channel it joined."""

    def __init__(self, port: int, nick: str) -> None:
        self.port = port
        self.nick = nick
        self.messages: list[Privmsg] = []
        self._lines: list[str] = []
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()

    def connect(self) -> IrcClient:
        self._sock = socket.create_connection((LOOPBACK, self.port), timeout=30)
        self._sock.settimeout(0.5)
        self._reader = threading.Thread(target=self._read, name=f"irc-{self.nick}", daemon=True)
        self._reader.start()
        self._send(f"NICK {self.nick}", f"USER {self.nick} 0 * :Godel test client")
        wait_for(lambda: self._seen(" 001 "), 30, f"IRC welcome of {self.nick}", describe=self.transcript)
        return self

    def join(self, channel: str) -> None:
        self._send(f"JOIN {channel}")
        # 366: end of the channel's names list, sent once the join is done.
        wait_for(
            lambda: self._seen(f" 366 {self.nick} {channel} "),
            30,
            f"joining {channel}",
            describe=self.transcript,
        )

    def wait_for_message(
        self, channel: str, match: Callable[[str], bool], timeout: float, what: str
    ) -> Privmsg:
        def said() -> Privmsg | None:
            with self._lock:
                return next((m for m in self.messages if m.target == channel and match(m.text)), None)

        return wait_for(said, timeout, f"{what} in {channel}", describe=self.transcript)

    def transcript(self) -> str:
        with self._lock:
            return "\n".join(self._lines[-30:])

    def _seen(self, needle: str) -> bool:
        with self._lock:
            return any(needle in line for line in self._lines)

    def _send(self, *lines: str) -> None:
        assert self._sock is not None
        self._sock.sendall("".join(f"{line}\r\n" for line in lines).encode())

    def _read(self) -> None:
        assert self._sock is not None
        pending = b""
        while True:
            try:
                chunk = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            pending += chunk
            *lines, pending = pending.split(b"\r\n")
            for raw in lines:
                self._line(raw.decode(errors="replace"))

    def _line(self, line: str) -> None:
        if line.startswith("PING"):
            with contextlib.suppress(OSError):
                self._send("PONG" + line[4:])
            return
        message = None
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[0].startswith(":") and parts[1] == "PRIVMSG":
            message = Privmsg(parts[0][1:], parts[2], parts[3].removeprefix(":"))
        with self._lock:
            self._lines.append(line)
            if message is not None:
                self.messages.append(message)

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._send("QUIT :bye")
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        if self._reader is not None:
            self._reader.join(timeout=5)

    def __enter__(self) -> IrcClient:
        return self if self._sock is not None else self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()
