"""The committed gRPC stubs match proto/ (regenerated with the pinned grpcio-tools)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_stubs_are_up_to_date(tmp_path: Path) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "gen_proto.sh"), str(tmp_path)], check=True,
                   env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*_pb2*"))
    assert generated, "protoc produced nothing"
    stale = [str(rel) for rel in generated
             if (ROOT / rel).read_bytes() != (tmp_path / rel).read_bytes()]
    assert not stale, f"stale stubs {stale}: run `make proto` and commit the result"


def test_stubs_import_and_round_trip() -> None:
    from pushgate.rpc import pushgate_pb2 as pb

    msg = pb.SendRequest(users=["alice"], body=b'{"x":1}', ttl_s=0)
    back = pb.SendRequest.FromString(msg.SerializeToString())
    assert back.HasField("ttl_s") and back.ttl_s == 0 and list(back.users) == ["alice"]
