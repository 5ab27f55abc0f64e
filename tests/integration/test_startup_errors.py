"""``pushgate serve`` refuses to start on an unreachable store the way
docs/configuration.md says every bad input is answered: one ``pushgate: …`` line
naming the setting (the password masked), exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from deploy.local.cluster import pushgate_bin
from tests.support.server import server_env


def test_serve_with_an_unreachable_store_is_one_line_and_exit_2(tmp_path: Path) -> None:
    url = "mysql+asyncmy://root:s3cret@127.0.0.1:1/nodb"  # nothing listens on port 1
    cmd = [pushgate_bin(), "serve", "--port", "0", "--data-dir", str(tmp_path / "data"),
           "--store-url", url]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=server_env(), capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert time.monotonic() - t0 < 30
    assert "Traceback" not in out and "s3cret" not in out, out
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith(
        "pushgate: store_url mysql+asyncmy://root:***@127.0.0.1:1/nodb: OperationalError"), out
    assert "Can't connect" in lines[-1]
