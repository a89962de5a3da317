"""The HTTP admin port of every Godel process: Prometheus `/metrics`, and the probes orchestrators
use, `/healthz` (the process runs) and `/readyz` (it serves: a service's gRPC health is SERVING, a
worker is connected to an agent-service replica). Plain HTTP on its own port, so probes work the
same when the gRPC port requires mutual TLS; it carries no secrets."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

from godel_server.runtime import process_metrics  # noqa: F401  (registers the memory figures)

PROBE_TIMEOUT_SECONDS = 3.0
# Probes must never go through an HTTP(S)_PROXY from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class AdminServer:
    """Serves the admin port from a daemon thread; `ready` is read on every `/readyz`."""

    def __init__(self, host: str, port: int, ready: Callable[[], bool]) -> None:
        self._ready = ready
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="admin-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> AdminServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        ready = self._ready

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                    self._reply(200, encoder(REGISTRY), content_type)
                elif path == "/healthz":
                    self._reply(200, b"ok\n")
                elif path == "/readyz":
                    ok = ready()
                    self._reply(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
                else:
                    self._reply(404, b"not found\n")

            def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Probes every few seconds would flood the log."""

        return Handler


def probe(address: str, path: str = "/readyz") -> tuple[bool, str]:
    """GETs `http://address/path`; (answered 200, what it said)."""
    try:
        with _DIRECT.open(f"http://{address}{path}", timeout=PROBE_TIMEOUT_SECONDS) as reply:
            return reply.status == 200, reply.read().decode(errors="replace").strip()
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, str(getattr(exc, "reason", exc))
