"""``python -m bench.link_micro``: every HubLink transport carries every round trip (a lost
message would leave the hub side waiting until its timeout) and the tool reports a CPU
figure for each."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_every_transport_round_trips_and_reports() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.link_micro", "--rounds", "1", "--seconds", "0.5",
         "--rate", "400"],
        cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = re.findall(r"round 1 (grpc|tcp|framed) *: +([0-9.]+) µs CPU per round trip",
                       proc.stdout)
    assert [mode for mode, _ in lines] == ["grpc", "tcp", "framed"], proc.stdout
    assert all(float(us) >= 0 for _, us in lines)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
