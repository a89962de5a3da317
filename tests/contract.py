"""The contract as `make gen` builds it from all of proto/ (gateway/godel.pb), for tests that go
over every RPC: independent of which Python modules the services happen to import."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2

DESCRIPTOR_SET = Path(__file__).resolve().parents[1] / "gateway" / "godel.pb"


def contract_methods() -> list[tuple[str, descriptor_pb2.MethodDescriptorProto]]:
    """Every RPC of the godel.v1 package as ('/godel.v1.Service/Method', its descriptor)."""
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes()).file
    return [
        (f"/{f.package}.{service.name}/{method.name}", method)
        for f in files
        if f.package == "godel.v1"
        for service in f.service
        for method in service.method
    ]
