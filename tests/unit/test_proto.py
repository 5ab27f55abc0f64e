"""The committed gRPC stubs match proto/ (regenerated with the pinned grpcio-tools line)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The generator stamps its own version into the stubs (`GRPC_GENERATED_VERSION = '1.85.1'`,
# `# Protobuf Python Version: …`, the runtime check's numbers). A patch release of
# grpcio-tools within the pinned line changes only these stamps; what the test guards is
# the code generated from proto/, so the stamps are compared as placeholders.
_STAMPS = (
    re.compile(rb"^GRPC_GENERATED_VERSION = '[^']*'$", re.M),
    re.compile(rb"^# Protobuf Python Version: .*$", re.M),
    re.compile(rb"_runtime_version\.ValidateProtobufRuntimeVersion\([^)]*\)", re.S),
)


def _without_stamps(code: bytes) -> bytes:
    for stamp in _STAMPS:
        code = stamp.sub(b"<generator version>", code)
    return code


def test_generated_stubs_are_up_to_date(tmp_path: Path) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "gen_proto.sh"), str(tmp_path)], check=True,
                   env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*_pb2*"))
    assert generated, "protoc produced nothing"
    stale = [str(rel) for rel in generated
             if _without_stamps((ROOT / rel).read_bytes())
             != _without_stamps((tmp_path / rel).read_bytes())]
    assert not stale, f"stale stubs {stale}: run `make proto` and commit the result"


def test_stamp_mask_still_sees_a_changed_stub() -> None:
    stub = (ROOT / "pushgate" / "rpc" / "pushgate_pb2_grpc.py").read_bytes()
    patched = stub.replace(b"GRPC_GENERATED_VERSION = '", b"GRPC_GENERATED_VERSION = '9")
    assert patched != stub and _without_stamps(patched) == _without_stamps(stub)
    assert _without_stamps(stub.replace(b"class GatewayStub", b"class GatewayStub2")) \
        != _without_stamps(stub)


def test_stubs_import_and_round_trip() -> None:
    from pushgate.rpc import pushgate_pb2 as pb

    msg = pb.SendRequest(users=["alice"], body=b'{"x":1}', ttl_s=0)
    back = pb.SendRequest.FromString(msg.SerializeToString())
    assert back.HasField("ttl_s") and back.ttl_s == 0 and list(back.users) == ["alice"]
