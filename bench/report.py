"""Print the table of a ``bench.run --json`` file, as text or as Markdown (for
docs/benchmarks.md):

    .venv/bin/python -m bench.report results.json [--markdown | --summary]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import markdown_table, summary_table, table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("json_file")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--summary", action="store_true",
                    help="one row per scenario and target (Markdown): the Peers table")
    args = ap.parse_args(argv)
    doc = json.loads(Path(args.json_file).read_text())
    results = doc["scenarios"]
    targets = sorted({t for r in results.values() for t in r["runs"]})
    print(f"{doc['date']} · `{doc['command']}` · {doc['machine']['cpus']} cores · "
          f"runs={doc['runs']} (median) · {doc['elapsed_s'] / 60:.1f} min\n")
    if args.summary:
        print(summary_table(results))
    else:
        print(markdown_table(results) if args.markdown else table(results, targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
