"""Print the table of a ``bench.run --json`` file, as text or as Markdown (for
docs/benchmarks.md):

    .venv/bin/python -m bench.report results.json [--markdown | --summary]

Several files of the same command (e.g. run again on a shared machine) are merged:
their runs are pooled and the medians taken again; ``--max-foreign PCT`` first drops
the runs during whose send phase other programs used more than PCT % of a benchmark
core (the ``foreign CPU %`` figures), and says how many runs of each target are left:

    .venv/bin/python -m bench.report a.json b.json --max-foreign 10 --summary
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import markdown_table, median_metrics, summary_table, table

FOREIGN = ("other_cpu_pct_server_core", "other_cpu_pct_load_core")


def disturbed(run: dict[str, Any], max_foreign: float) -> bool:
    return any(run.get(k, 0) > max_foreign for k in FOREIGN)


def merge(docs: list[dict[str, Any]], max_foreign: float | None) -> dict[str, Any]:
    """The scenarios of ``docs`` with their runs pooled (and, with ``max_foreign``, the
    disturbed runs dropped: ``kept`` says how many of how many are left)."""
    out: dict[str, Any] = {}
    for doc in docs:
        for name, r in doc["scenarios"].items():
            into = out.setdefault(name, {**r, "runs": {}, "kept": {}})
            for k in ("skipped",):
                if k in r:
                    into.setdefault(k, {}).update(r[k])
            for t, runs in r["runs"].items():
                into["runs"].setdefault(t, []).extend(runs)
    for r in out.values():
        for t, runs in r["runs"].items():
            ok = [x for x in runs if max_foreign is None or not disturbed(x, max_foreign)]
            r["kept"][t] = [len([x for x in ok if "error" not in x]), len(runs)]
            r["runs"][t] = ok
        r["median"] = {t: median_metrics(runs) for t, runs in r["runs"].items()}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("json_file", nargs="+")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--summary", action="store_true",
                    help="one row per scenario and target (Markdown): the Peers table")
    ap.add_argument("--max-foreign", type=float, metavar="PCT",
                    help="drop runs during which other programs used more than PCT %% of "
                         "a benchmark core")
    args = ap.parse_args(argv)
    docs = [json.loads(Path(f).read_text()) for f in args.json_file]
    for doc in docs:
        print(f"{doc['date']} · `{doc['command']}` · {doc['machine']['cpus']} cores · "
              f"runs={doc['runs']} (median) · {doc['elapsed_s'] / 60:.1f} min")
    print()
    if len(docs) == 1 and args.max_foreign is None:
        results = docs[0]["scenarios"]
    else:
        results = merge(docs, args.max_foreign)
        for name, r in results.items():
            print(f"{name} runs used (of all): " + ", ".join(
                f"{t} {k}/{n}" for t, (k, n) in r["kept"].items()))
        print()
    targets = sorted({t for r in results.values() for t in r["runs"]})
    if args.summary:
        print(summary_table(results))
    else:
        print(markdown_table(results) if args.markdown else table(results, targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
