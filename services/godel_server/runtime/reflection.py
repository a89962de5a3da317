"""gRPC server reflection, v1 and v1alpha, for grpcurl and other reflection clients.

grpcio-reflection implements only `grpc.reflection.v1alpha`; clients (grpcurl first) try
`grpc.reflection.v1`, whose messages are the same on the wire under another package name. So
the v1alpha servicer answers both, and the v1 descriptor is v1alpha's with the package renamed
(reflection can then describe itself in both versions).

A process lists the services it serves. Requests that the gateway forwards carry the header
`x-godel-reflection: gateway` (set by the gateway's reflection route); they get the list of
every service the gateway routes, so `grpcurl <gateway> list` shows the whole API. Any process
can describe any godel.v1 symbol: every process loads the whole contract.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor, ServiceDescriptor
from grpc_reflection.v1alpha import _async, reflection_pb2

GATEWAY_HEADER = "x-godel-reflection"
GATEWAY_VALUE = "gateway"
_V1ALPHA = "grpc.reflection.v1alpha"
_V1 = "grpc.reflection.v1"


def _v1_file() -> FileDescriptor:
    """`grpc/reflection/v1/reflection.proto`: the v1alpha file under the v1 package name."""
    pool = descriptor_pool.Default()
    name = "grpc/reflection/v1/reflection.proto"
    try:
        return pool.FindFileByName(name)
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name, proto.package = name, _V1
    proto.ClearField("options")

    def rename(type_name: str) -> str:
        return type_name.replace(f".{_V1ALPHA}.", f".{_V1}.", 1)

    for message in proto.message_type:
        for field in message.field:
            if field.HasField("type_name"):
                field.type_name = rename(field.type_name)
    for service in proto.service:
        for method in service.method:
            method.input_type, method.output_type = rename(method.input_type), rename(method.output_type)
    return pool.AddSerializedFile(proto.SerializeToString())


REFLECTION_SERVICES: tuple[ServiceDescriptor, ...] = (
    _v1_file().services_by_name["ServerReflection"],
    reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
)


class _Reflection:
    """One reflection stream: answered from the gateway's list or from this process's list."""

    def __init__(self, served: Iterable[str], gateway: Iterable[str]) -> None:
        self._served = _async.ReflectionServicer(tuple(served))
        self._gateway = _async.ReflectionServicer(tuple(gateway))

    async def ServerReflectionInfo(
        self,
        requests: AsyncIterator[reflection_pb2.ServerReflectionRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[reflection_pb2.ServerReflectionResponse]:
        metadata = dict(context.invocation_metadata() or ())
        servicer = self._gateway if metadata.get(GATEWAY_HEADER) == GATEWAY_VALUE else self._served
        async for response in servicer.ServerReflectionInfo(requests, context):
            yield response


def enable_reflection(server: grpc.aio.Server, served: Iterable[str], gateway: Iterable[str]) -> None:
    """Serves reflection v1 and v1alpha on `server`: `served` (plus reflection itself) is what
    this process lists; `gateway` is what it lists to requests forwarded by the gateway."""
    names = tuple(s.full_name for s in REFLECTION_SERVICES)
    reflection = _Reflection((*served, *names), (*gateway, *names))
    handlers = {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            reflection.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
        )
    }
    for name in names:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
