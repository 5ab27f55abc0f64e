"""Regenerate the settings table of docs/configuration.md from ``Settings.model_fields``.

Usage: python scripts/gen_config_doc.py [--check]   (--check: exit 1 if the doc is stale)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pushgate.settings import Settings

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
BEGIN, END = "<!-- settings-table:begin -->", "<!-- settings-table:end -->"
SYM = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}


def _type(ann: Any) -> str:
    if get_origin(ann) is Literal:
        return " \\| ".join(f"`{a}`" for a in get_args(ann))
    if get_origin(ann) is list:
        return "list of str"
    args = [a for a in get_args(ann) if a is not type(None)]
    if len(args) == 1 and type(None) in get_args(ann):
        return f"{args[0].__name__} or null"
    return {"PosixPath": "path", "Path": "path"}.get(ann.__name__, ann.__name__)


def table() -> str:
    rows = ["| setting | env var | flag | type | default | meaning |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name, f in Settings.model_fields.items():
        d = f.get_default(call_default_factory=True)
        if d is None:
            shown = "unset"
        elif isinstance(d, list):
            shown = "`" + ",".join(d) + "`" if d else "empty"
        else:
            shown = f"`{d}`"
        cons = [f"{SYM[k]} {getattr(m, k)}" for m in f.metadata for k in SYM
                if getattr(m, k, None) is not None]
        kind = _type(f.annotation) + (f" ({', '.join(cons)})" if cons else "")
        desc = (f.description or "").replace("|", "\\|")
        rows.append(f"| `{name}` | `PUSHGATE_{name.upper()}` | `--{name.replace('_', '-')}` "
                    f"| {kind} | {shown} | {desc} |")
    return "\n".join(rows)


def main() -> int:
    text = DOC.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{table()}\n{END}{tail}"
    if "--check" in sys.argv:
        if new != text:
            print(f"{DOC} is stale: run python scripts/gen_config_doc.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
