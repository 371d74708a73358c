"""A Python gRPC client, generated from proto/ with grpcio-tools, talking to a
running azora: it creates a user and reads it back.

Usage: identity_client.py HOST:PORT ADMIN_KEY PROTO_DIR
"""

import importlib
import sys
import tempfile

import grpc
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
