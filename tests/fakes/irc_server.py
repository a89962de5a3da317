"""A minimal IRC server on loopback (RFC 1459/2812 registration, JOIN, PING, PRIVMSG) that records
what clients say: a chat channel an OpenClaw Gateway can host in a test (its IRC plugin).

    with FakeIrc() as irc:
        irc.port                     # plain-text IRC on 127.0.0.1:<port>
        irc.privmsgs                 # [(nick, target, text), ...] in order
        irc.joined                   # {channel: {nick, ...}}
"""

from __future__ import annotations

import socketserver
import threading
from typing import Any

SERVER = "irc.test"


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        nick = "*"
        registered = False
        user_seen = False
        for raw in self.rfile:
            line = raw.decode(errors="replace").rstrip("\r\n")
            if not line:
                continue
            self.server.owner.lines.append(line)
            command, params = _parse(line)
            if command == "NICK" and params:
                nick = params[0]
            elif command == "USER":
                user_seen = True
            elif command == "CAP":
                if params and params[0] == "LS":
                    self._send(f":{SERVER} CAP * LS :")
                elif params and params[0] == "REQ":
                    self._send(f":{SERVER} CAP * NAK :{params[-1]}")
            elif command == "PING":
                self._send(f":{SERVER} PONG {SERVER} :{params[-1] if params else ''}")
            elif command == "JOIN" and params:
                for channel in params[0].split(","):
                    self.server.owner.joined.setdefault(channel, set()).add(nick)
                    self._send(f":{nick}!{nick}@127.0.0.1 JOIN {channel}")
                    self._send(f":{SERVER} 366 {nick} {channel} :End of /NAMES list.")
            elif command in ("PRIVMSG", "NOTICE") and len(params) >= 2:
                self.server.owner.privmsgs.append((nick, params[0], params[1]))
            elif command == "QUIT":
                return
            if not registered and user_seen and nick != "*":
                registered = True
                for reply in (
                    f"001 {nick} :Welcome to the test IRC network {nick}",
                    f"002 {nick} :Your host is {SERVER}",
                    f"003 {nick} :This server was created today",
                    f"004 {nick} {SERVER} test o o",
                    f"005 {nick} CHANTYPES=# NICKLEN=30 :are supported by this server",
                    f"375 {nick} :- {SERVER} Message of the day -",
                    f"376 {nick} :End of /MOTD command.",
                ):
                    self._send(f":{SERVER} {reply}")

    def _send(self, line: str) -> None:
        try:
            self.wfile.write(f"{line}\r\n".encode())
            self.wfile.flush()
        except OSError:
            pass


def _parse(line: str) -> tuple[str, list[str]]:
    if line.startswith(":"):
        line = line.split(" ", 1)[1] if " " in line else ""
    head, sep, trailing = line.partition(" :")
    parts = head.split()
    if not parts:
        return "", []
    params = parts[1:] + ([trailing] if sep else [])
    return parts[0].upper(), params


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: FakeIrc


class FakeIrc:
    def __init__(self) -> None:
        self.privmsgs: list[tuple[str, str, str]] = []
        self.joined: dict[str, set[str]] = {}
        self.lines: list[str] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="fake-irc")
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeIrc:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
