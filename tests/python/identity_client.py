"""A Python gRPC client, generated from proto/ with grpcio-tools, talking to a
running azora: it creates a user and reads it back, retries a create with a
request id, and sends metadata at and past the nesting limit.

Usage: identity_client.py HOST:PORT ADMIN_KEY PROTO_DIR
"""

import importlib
import sys
import tempfile

import grpc
from google.protobuf import struct_pb2
from grpc_tools import protoc


def generate(proto_dir: str, out_dir: str) -> None:
    files = ["azora/type/v1/decimal.proto", "azora/identity/v1/identity.proto"]
    include = importlib.resources.files("grpc_tools") / "_proto"
    code = protoc.main(
        ["protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}"]
        + [f"{proto_dir}/{name}" for name in files]
    )
    if code != 0:
        raise SystemExit(f"protoc failed with {code}")


def main() -> None:
    address, admin_key, proto_dir = sys.argv[1:4]
    out_dir = tempfile.mkdtemp(prefix="azora_py_")
    generate(proto_dir, out_dir)
    sys.path.insert(0, out_dir)
    identity_pb2 = importlib.import_module("azora.identity.v1.identity_pb2")
    identity_grpc = importlib.import_module("azora.identity.v1.identity_pb2_grpc")

    metadata = [("authorization", f"Bearer {admin_key}")]
    with grpc.insecure_channel(address) as channel:
        stub = identity_grpc.IdentityServiceStub(channel)
        created = stub.CreateUser(
            identity_pb2.CreateUserRequest(
                username="PyUser",
                email="py@example.com",
                user_type=identity_pb2.USER_TYPE_STUDENT,
                jurisdiction="BR",
            ),
            metadata=metadata,
        ).user
        assert created.username == "pyuser", created
        fetched = stub.GetUser(identity_pb2.GetUserRequest(user_id=created.id), metadata=metadata).user
        assert fetched == created, (fetched, created)
        assert fetched.reputation_score.value == "0.0000", fetched
        assert fetched.role == identity_pb2.ROLE_MEMBER, fetched

        # Metadata nested as deep as the server allows (8 levels of objects)
        # decodes in this stock client; one level more is INVALID_ARGUMENT.
        def nested(levels: int) -> dict:
            value: object = "leaf"
            for level in range(levels - 1, 0, -1):
                value = {f"l{level}": value}
            return {"root": value}

        deep = struct_pb2.Struct()
        deep.update(nested(8))
        request = identity_pb2.CreateUserRequest(
            username="deep", user_type=identity_pb2.USER_TYPE_STUDENT, metadata=deep, request_id="py-deep-1"
        )
        first = stub.CreateUser(request, metadata=metadata).user
        assert first.metadata == deep, first.metadata
        again = stub.CreateUser(request, metadata=metadata).user
        assert again == first, (again, first)
        too_deep = struct_pb2.Struct()
        too_deep.update(nested(9))
        try:
            stub.CreateUser(
                identity_pb2.CreateUserRequest(
                    username="deeper", user_type=identity_pb2.USER_TYPE_STUDENT, metadata=too_deep
                ),
                metadata=metadata,
            )
            raise AssertionError("metadata nested 9 levels was accepted")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error

        try:
            stub.GetUser(identity_pb2.GetUserRequest(user_id="nope"), metadata=metadata)
            raise AssertionError("a malformed id was accepted")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
        try:
            stub.GetUser(identity_pb2.GetUserRequest(user_id=created.id))
            raise AssertionError("a call without a key was accepted")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error
    print(f"python client: created and read back user {created.id}")


if __name__ == "__main__":
    main()
