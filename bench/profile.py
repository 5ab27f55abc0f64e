"""``bench.run --profile DIR``: sample the server with py-spy during the measured send
phase of S1-S4 and summarize where its CPU went.

py-spy (``pip install -e '.[bench]'``) attaches to the running server (``--pid``, all
threads, idle threads left out, ``--nonblocking`` so the server is not paused), pinned
to the load core, and writes collapsed stacks (``--format raw``: one line per distinct
stack, ``frame;frame;… count``). :func:`summarize` turns them into two lists: the
functions with the most samples of their own (self time), and the share of samples
that passed through each package or module (inclusive), which is what
docs/benchmarks.md quotes. A flame graph: ``flamegraph.pl DIR/S1-pushgate.txt`` or
load the file into https://www.speedscope.app (it reads this format).

    .venv/bin/python -m bench.profile DIR/S1-pushgate.txt   # the summary again
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

# "func (path/to/module.py:123)" as py-spy writes a Python frame
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")


def start(pid: int, out: Path, core: int | None, rate: int = 200) -> subprocess.Popen[bytes]:
    """Start sampling ``pid`` into ``out``; stop with :func:`stop`."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        raise RuntimeError("--profile needs py-spy: .venv/bin/pip install -e '.[bench]'")
    argv = [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
            "--nonblocking", "--output", str(out)]
    if core is not None:
        argv = ["taskset", "-c", str(core), *argv]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Ask py-spy to finish (SIGINT makes it write the file) and wait for it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _area(file: str) -> str:
    """The package (or top-level module) a frame's file belongs to: ``pushgate/hub/ws.py``
    -> ``pushgate.hub``; ``<frozen ...>``/builtins -> as given."""
    parts = file.replace("\\", "/").split("/")
    if parts[-1].endswith(".py"):
        parts[-1] = parts[-1][:-3]
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1:]
    parts = [p for p in parts if p not in ("", "__init__")]
    if not parts:
        return file
    return ".".join(parts[:2]) if parts[0] == "pushgate" and len(parts) > 2 else parts[0]


def _function(frame: str) -> str:
    """``func (file:line)`` -> ``func (file)``: self time per function, not per line."""
    m = _FRAME.match(frame)
    return f"{m['func']} ({m['file']})" if m else frame


def summarize(raw: Path, top: int = 25) -> str:
    total = 0
    own: Counter[str] = Counter()
    through: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[_function(frames[-1])] += n
        # a thread other than the main one starts in threading.py's _bootstrap
        threads["other threads (executors: SQLite, DNS, ...)"
                if "threading.py" in frames[0] else "main thread (event loop)"] += n
        seen = set()
        for frame in frames:
            m = _FRAME.match(frame)
            if m:
                seen.add(_area(m["file"]))
        for area in seen:
            through[area] += n
    if not total:
        return f"{raw}: no samples (did py-spy attach? it needs ptrace rights)\n"
    pct = 100 / total
    lines = [f"{raw.name}: {total} samples (running threads only; time in C code, e.g. "
             "uvloop or sqlite3, counts for the Python function that called it)", "",
             "by thread:"]
    lines += [f"  {n * pct:5.1f} %  {name}" for name, n in threads.most_common()]
    lines += ["", "self time (the function itself, or C code it called, was running):"]
    lines += [f"  {n * pct:5.1f} %  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "inclusive by package/module (samples with a frame of it anywhere):"]
    lines += [f"  {n * pct:5.1f} %  {area}" for area, n in through.most_common(top)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("raw", type=Path, help="a py-spy --format raw file")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)
    sys.stdout.write(summarize(args.raw, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
