"""PNG plots of a benchmark result: latency CDF and throughput over time per scenario,
one line per target (the run whose p99 is the median of the runs).

    .venv/bin/python -m bench.plots out.json --out plots/     # or: bench.run --plots DIR

Needs matplotlib: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    ok = [r for r in runs if "series" in r and r["series"]["latency_cdf"]]
    if not ok:
        return None
    ok.sort(key=lambda r: r.get("p99_ms", 0.0))
    return ok[len(ok) // 2]


def write_plots(doc: dict[str, Any], out: Path) -> list[Path]:
    """Write ``<scenario>-latency-cdf.png`` and ``<scenario>-throughput.png`` for every
    scenario that has latency series. Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, sc in doc["scenarios"].items():
        picked = {t: _median_run(runs) for t, runs in sc["runs"].items()}
        picked = {t: r for t, r in picked.items() if r is not None}
        if not picked:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for t, r in picked.items():
            cdf = r["series"]["latency_cdf"]
            ax.plot([p[0] for p in cdf], [p[1] for p in cdf], label=t)
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log scale)")
        ax.set_ylabel("fraction of deliveries")
        ax.set_title(f"{name}: latency CDF — {sc['title'][:60]}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        path = out / f"{name}-latency-cdf.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

        fig, ax = plt.subplots(figsize=(7, 4.2))
        for t, r in picked.items():
            rate = r["series"]["throughput"]
            ax.plot([p[0] for p in rate], [p[1] for p in rate], label=t, linewidth=0.9)
        ax.set_xlabel("seconds since the first send")
        ax.set_ylabel("deliveries/s (100 ms buckets)")
        ax.set_title(f"{name}: throughput over time", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend()
        path = out / f"{name}-throughput.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.plots", description=__doc__.split("\n\n")[0])
    ap.add_argument("json", type=Path, help="a file written by bench.run --json")
    ap.add_argument("--out", type=Path, default=Path("bench-plots"))
    args = ap.parse_args(argv)
    try:
        files = write_plots(json.loads(args.json.read_text()), args.out)
    except ImportError:
        print("matplotlib is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 1
    for f in files:
        print(f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
