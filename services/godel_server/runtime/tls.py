"""The one place gRPC connections between Godel's processes are made: plaintext, or mutual TLS when
GODEL_TLS_* name a CA, a certificate and its key (see runtime/config.py). Servers then accept only
clients whose certificate the CA signed, and clients verify the server's name against its
certificate, so a process reached at `agent:50051` needs a certificate for `agent`."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any

import grpc

from godel_server.runtime import tracing
from godel_server.runtime.config import TlsSettings


def _read(tls: TlsSettings) -> tuple[bytes, bytes, bytes]:
    assert tls.ca_file and tls.cert_file and tls.key_file, "TLS is not configured"
    return tls.ca_file.read_bytes(), tls.cert_file.read_bytes(), tls.key_file.read_bytes()


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials:
    """TLS with the process's certificate; clients must present one signed by the mesh CA."""
    ca, cert, key = _read(tls)
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def channel_credentials(tls: TlsSettings) -> grpc.ChannelCredentials:
    """Verifies the server with the mesh CA and presents the process's certificate."""
    ca, cert, key = _read(tls)
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def add_port(server: grpc.aio.Server, address: str, tls: TlsSettings) -> int:
    """Binds the server's port, with TLS when configured; returns the bound port (0 on failure)."""
    if tls.enabled:
        return int(server.add_secure_port(address, server_credentials(tls)))
    return int(server.add_insecure_port(address))


def server_ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """The same mutual TLS for a plain TLS server (the event service's WebSocket port)."""
    assert tls.ca_file and tls.cert_file and tls.key_file, "TLS is not configured"
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tls.ca_file))
    context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def open_channel(
    address: str, tls: TlsSettings, options: Sequence[tuple[str, Any]] | None = None
) -> grpc.aio.Channel:
    """An asyncio channel to another process of the mesh (carrying the trace, runtime/tracing.py)."""
    interceptors = tracing.client_interceptors()
    if tls.enabled:
        return grpc.aio.secure_channel(
            address, channel_credentials(tls), options=options, interceptors=interceptors
        )
    return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)


def open_sync_channel(address: str, tls: TlsSettings) -> grpc.Channel:
    """A blocking channel (probes and tools outside an event loop)."""
    if tls.enabled:
        return grpc.secure_channel(address, channel_credentials(tls))
    return grpc.insecure_channel(address)
