"""The benchmark tool itself: ``python -m bench.run`` at a tiny scale starts real
servers (pushgate and the baseline), opens sessions from its load processes, sends,
and prints the table and writes the JSON that docs/benchmarks.md is made from."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("taskset") is None,
                                reason="bench.run pins processes with taskset")


@pytest.mark.timeout(300)
def test_scenarios_run_and_report_every_target(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "S1", "S3", "S4", "--scale", "0.02",
         "--runs", "1", "--quiet-wait", "0", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    doc = json.loads(out.read_text())
    assert set(doc["scenarios"]) == {"S1", "S3", "S4"}
    for name, sc in doc["scenarios"].items():
        for target in ("pushgate", "baseline"):
            run = sc["runs"][target][0]
            assert "error" not in run, (name, target, run.get("error"))
            assert run["delivered"] > 0 and run["lost"] == 0, (name, target, run)
            # CPU is read from /proc in 10 ms ticks: at this scale it may round to 0
            assert math.isfinite(run["cpu_us_per_delivery"])
        assert {c["metric"] for c in sc["checks"]} >= {"cpu_us_per_delivery"}
    # the terminal table names every scenario and its target column
    table = proc.stdout
    for name in ("S1", "S3", "S4"):
        assert f"\n{name} " in table
    assert "pushgate" in table and "baseline" in table


def test_unknown_scenario_is_refused_with_the_known_ones() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.run", "S9"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "unknown scenario(s) ['S9']" in proc.stderr and "S8" in proc.stderr
