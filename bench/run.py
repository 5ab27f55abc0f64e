"""pushgate benchmark: run scenarios against pushgate and the hand-written baseline.

    .venv/bin/python -m bench.run [S1 S2 S4 ...] [--runs 3] [--json out.json]

Each scenario x run x target starts a fresh server pinned to core 0 (``taskset``),
opens the sessions from load processes pinned to core 1, runs the send phase and
measures it; servers and load processes are always stopped. The table shows the
median of the runs. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import platform
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import batch, campaign, cluster, fanout, idle, peers, store_scenario, unicast
from bench.procs import core_busy_seconds
from bench.scenarios import SCENARIOS, Criterion, Env, Scenario
from bench.targets import TARGETS, Pushgate
from bench.wsload import LoadWorkers

_REGISTERED = (unicast, batch, fanout, idle, cluster, campaign, store_scenario)  # S1-S8
_PEERS = peers.PEERS  # bench.peers adds nchan, nchan-multi, socketio to TARGETS
DEFAULT_SCENARIOS = ["S1", "S2", "S4"]
_ip_counter = [0]


def _src_ips(n: int) -> list[str]:
    out = []
    for _ in range(n):
        out.append(f"127.0.0.{2 + _ip_counter[0] % 250}")
        _ip_counter[0] += 1
    return out


def _say(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


async def wait_quiet(cores: list[int], max_wait: float, log: Any, limit: float = 10.0) -> float:
    """Wait (at most ``max_wait`` s) until the benchmark cores are idle: the machine may
    be shared, and other programs' CPU use disturbs every figure. Returns the last busy %
    seen (of the busiest core)."""
    deadline = time.monotonic() + max_wait
    warned = False
    while True:
        b0 = core_busy_seconds(cores)
        await asyncio.sleep(1.0)
        b1 = core_busy_seconds(cores)
        busy = max((b1[c] - b0[c]) * 100 for c in cores)
        if busy <= limit or time.monotonic() >= deadline:
            if busy > limit:
                log(f"WARNING: cores still {busy:.0f}% busy with other programs; going on")
            return busy
        if not warned:
            log(f"other programs use {busy:.0f}% of a benchmark core; waiting up to "
                f"{max_wait:.0f}s for them to finish")
            warned = True


async def run_one(sc: Scenario, target_name: str, label: str, workdir: Path,
                  server_core: int, load_core: int, gc_probe: bool = False,
                  ws_client: str = "raw", quiet_wait: float = 0.0,
                  profile: Path | None = None) -> dict[str, Any]:
    def log(msg: str) -> None:
        _say(f"[{label}] {msg}")

    target = None
    workers = None
    try:
        busy_before = None
        if quiet_wait > 0:
            busy_before = await wait_quiet([server_core, load_core], quiet_wait, log)
        log("starting server")
        target = TARGETS[target_name].start(workdir, server_core, gc_probe)
        for note in target.notes:
            log(f"note: {note}")
        workers = LoadWorkers(sc.n_workers(), load_core)
        env = Env(target, workers, _src_ips(sc.n_workers()), log, [os.getpid()], ws_client,
                  server_core, load_core, profile)
        m = await sc.run(env)
        if busy_before is not None:
            m["foreign_busy_pct_before"] = busy_before
        other = max(m.get("other_cpu_pct_server_core", 0), m.get("other_cpu_pct_load_core", 0))
        if other > 10:
            log(f"WARNING: other processes used up to {other:.0f}% of a benchmark core during "
                f"the send phase; this run's figures are disturbed")
        problems = target.server.stderr_problems()
        if problems:
            m["server_log_problems"] = len(problems)
            m["server_log_samples"] = problems[:5]
            log(f"server logged {len(problems)} warning/error lines, e.g. {problems[0][:200]}")
        if target.notes:
            m["notes"] = target.notes
        log(summary(m))
        return m
    finally:
        if workers is not None:
            workers.stop()
        if target is not None:
            rc = target.server.stop()
            if rc not in (0, -signal.SIGTERM, None):
                log(f"server exit code {rc}")


def run_standalone(sc: Scenario, label: str, workdir: Path, **kw: Any) -> dict[str, Any]:
    def log(msg: str) -> None:
        _say(f"[{label}] {msg}")

    try:
        m = sc.run_standalone(workdir, log, **kw)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # record and go on with the other runs
        log(f"FAILED: {type(e).__name__}: {e}")
        return {"error": f"{type(e).__name__}: {e}"}
    return {k: v for k, v in m.items() if not k.startswith("_")} | {"detail": m.get("_detail")}


def summary(m: dict[str, Any]) -> str:
    return (f"cpu {m['cpu_us_per_delivery']:.1f} µs/delivery, {m['deliveries_per_s']:.0f}/s, "
            f"p50 {m['p50_ms']:.2f} p99 {m['p99_ms']:.2f} max {m['max_ms']:.1f} ms, "
            f"lost {m['lost']}, dups {m['duplicates']}, http errors {m['http_errors']}, "
            f"rss {m['rss_kb_per_session']:.1f} KB/session, load core {m['load_cpu_pct']:.0f}%")


def median_metrics(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    out: dict[str, Any] = {}
    if not ok:
        return out
    for k in ok[0]:
        vals = [r[k] for r in ok if isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)]
        vals = [v for v in vals if not (isinstance(v, float) and math.isnan(v))]
        if vals:
            out[k] = statistics.median(vals)
    return out


def fmt(v: Any, f: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f.format(v)


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or not b or math.isnan(a) or math.isnan(b):
        return "-"
    return f"{a / b:.2f}"


# value columns besides pushgate and baseline, in this order, each with "vs <label>"
# (pushgate / it); then any other target that ran
_EXTRA = [("pushgate-ref", "ref"), ("nchan", "nchan"), ("nchan-multi", "nchan-multi"),
          ("socketio", "socketio")]


def _extra_columns(results: dict[str, Any]) -> list[tuple[str, str]]:
    ran = {t for r in results.values() for t in r["median"] if r["median"][t]}
    known = [(t, label) for t, label in _EXTRA if t in ran]
    other = sorted(ran - {"pushgate", "baseline"} - {t for t, _ in _EXTRA})
    return known + [(t, t) for t in other]


def check_criteria(crits: list[Criterion], med: dict[str, dict[str, Any]]) -> str:
    """'yes' / 'NO' / 'n/a' for the criteria of one metric (all must hold; n/a when a
    criterion's reference target did not run and none failed)."""
    res = [c.check(med.get("pushgate", {}).get(c.metric), med.get(c.ref, {}).get(c.metric))
           for c in crits]
    if any(r is False for r in res):
        return "NO"
    if all(r is None for r in res):
        return "n/a"
    return "yes" if all(r is True for r in res) else "yes (rest n/a)"


def table(results: dict[str, Any], targets: list[str]) -> str:
    extra = _extra_columns(results)
    head = ["scenario", "metric", "pushgate", "baseline", "ratio"]
    for _, label in extra:  # e.g. --ref: the other commit's figures and pushgate / ref
        head += [label, f"vs {label}"]
    head += ["target", "met?"]
    rows: list[list[str]] = []
    for name, r in results.items():
        sc_cls = SCENARIOS[name]
        med = r["median"]
        pg, base = (med.get(t, {}) for t in ("pushgate", "baseline"))
        crit: dict[str, list[Criterion]] = {}
        for c in sc_cls.criteria:
            crit.setdefault(c.metric, []).append(c)
        for key, label, f in sc_cls.metrics(sc_cls()):
            a, b = pg.get(key), base.get(key)
            others = [med.get(t, {}).get(key) for t, _ in extra]
            if a is None and b is None and all(o is None for o in others):
                continue
            cs = crit.get(key, [])
            met = check_criteria(cs, med) if cs else "-"
            row = [name, label, fmt(a, f), fmt(b, f), _ratio(a, b)]
            for o in others:
                row += [fmt(o, f), _ratio(a, o)]
            row += ["; ".join(c.text for c in cs), met]
            rows.append(row)
        for t in targets:
            errs = [x["error"] for x in r["runs"].get(t, []) if "error" in x]
            if errs:
                rows.append([name, f"{t}: runs failed", str(len(errs)),
                             *[""] * (len(head) - 4), "see below"])
        for t in r.get("skipped", {}):
            rows.append([name, f"{t}: not run", "", *[""] * (len(head) - 4), "see below"])
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(head)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)),
             "-|-".join("-" * w for w in widths)]
    prev = None
    for row in rows:
        if prev is not None and row[0] != prev:
            lines.append("-|-".join("-" * w for w in widths))
        prev = row[0]
        numeric = len(head) - 2  # the last two columns (target, met?) are text
        lines.append(" | ".join(c.ljust(w) if i < 2 else c.rjust(w) if i < numeric else c.ljust(w)
                                for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    return "\n".join(lines)


# the figures of docs/benchmarks.md "Peers": one row per scenario and target; the
# send scenarios (S1-S4) and the idle one (S5) have their own columns
SUMMARY = [("cpu_us_per_delivery", "server CPU µs/delivery", "{:.1f}"),
           ("rss_kb_per_session", "RSS KB/session", "{:.1f}"),
           ("p50_ms", "p50 ms", "{:.2f}"), ("p99_ms", "p99 ms", "{:.2f}"),
           ("lost", "lost", "{:.0f}"), ("duplicates", "dup", "{:.0f}"),
           ("deliveries_per_s", "deliveries/s", "{:.0f}")]
SUMMARY_IDLE = [("connected", "sessions held", "{:.0f}"),
                ("hubs", "server processes", "{:.0f}"),
                ("rss_kb_per_session", "RSS KB/session", "{:.1f}"),
                ("idle_cpu_pct", "idle CPU % of a core", "{:.1f}"),
                ("connect_cpu_ms_per_session", "connect CPU ms/session", "{:.2f}"),
                ("connect_failed", "connect failures", "{:.0f}"),
                ("sessions_closed", "closed", "{:.0f}")]
SUMMARY_ORDER = ["pushgate", "pushgate-ref", "baseline", "nchan", "nchan-multi", "socketio"]


def summary_table(results: dict[str, Any]) -> str:
    """Markdown: one row per scenario and target that ran (pushgate first), the main
    figures (:data:`SUMMARY`, S5: :data:`SUMMARY_IDLE`) and pushgate's CPU per delivery
    (S5: RSS per session) divided by the target's."""
    out: list[str] = []
    for cols, key in ((SUMMARY, "cpu_us_per_delivery"), (SUMMARY_IDLE, "rss_kb_per_session")):
        idle = cols is SUMMARY_IDLE
        names = [n for n in results if SCENARIOS[n].standalone == idle]
        if not names:
            continue
        label = "pushgate RSS ÷ this" if idle else "pushgate CPU ÷ this"
        head = ["scenario", "target", *(c[1] for c in cols), label]
        out += ["| " + " | ".join(head) + " |",
                "| --- | --- | " + " | ".join("---:" for _ in head[2:]) + " |"]
        for name in names:
            r = results[name]
            med = r["median"]
            ts = sorted((t for t in med if med[t]), key=lambda t: (
                SUMMARY_ORDER.index(t) if t in SUMMARY_ORDER else len(SUMMARY_ORDER), t))
            pg = med.get("pushgate", {}).get(key)
            for t in ts:
                row = [name, t, *(fmt(med[t].get(k), f) for k, _, f in cols),
                       _ratio(pg, med[t].get(key))]
                out.append("| " + " | ".join(row) + " |")
            for t, why in r.get("skipped", {}).items():
                out.append("| " + " | ".join([name, t, f"not run: {why}",
                                              *[""] * (len(head) - 3)]) + " |")
        out.append("")
    return "\n".join(out).rstrip("\n")


def markdown_table(results: dict[str, Any]) -> str:
    lines = table(results, []).splitlines()
    head = [c.strip() for c in lines[0].split(" | ")]
    out = ["| " + " | ".join(head) + " |",
           "| " + " | ".join("---" if i < 2 or i >= len(head) - 2 else "---:"
                             for i in range(len(head))) + " |"]
    for line in lines[2:]:
        if set(line) <= {"-", "|", " "}:
            continue
        out.append("| " + " | ".join(c.strip() for c in line.split(" | ")) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                    help=f"scenarios to run (default: {' '.join(DEFAULT_SCENARIOS)}; "
                         f"'all' = {' '.join(sorted(SCENARIOS))}, ~70 min at 3 runs)")
    ap.add_argument("--runs", type=int, default=3, help="runs per scenario and target (median)")
    ap.add_argument("--json", metavar="FILE", help="write all results as JSON")
    ap.add_argument("--targets", default="pushgate,baseline",
                    help="comma-separated targets (default: pushgate,baseline; known: "
                         + ", ".join(TARGETS) + ")")
    ap.add_argument("--peers", action="store_true",
                    help=f"also run the real peers ({', '.join(_PEERS)}: nginx + nchan, "
                         f"Socket.IO on Node; installed on first use, see bench/peers)")
    ap.add_argument("--ref", metavar="DIR", type=Path,
                    help="also run the pushgate of source tree DIR (e.g. `git worktree add "
                         "/tmp/ref <commit>`) as target 'pushgate-ref', on this checkout's "
                         "dependencies: a same-run comparison between two commits")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply session and send counts (for a quick smoke run, e.g. 0.1)")
    ap.add_argument("--server-core", type=int, default=0)
    ap.add_argument("--load-core", type=int, default=1)
    ap.add_argument("--ws-client", choices=["raw", "websockets"], default="raw",
                    help="load-side websocket client: the built-in minimal one (default, "
                         "cheapest per frame) or the websockets library's asyncio client")
    ap.add_argument("--gc-probe", action="store_true",
                    help="load bench/gcprobe into the servers and report their cyclic-GC "
                         "pauses during the send phase (diagnostic)")
    ap.add_argument("--quiet-wait", type=float, default=60.0, metavar="S",
                    help="before each run, wait up to S seconds until other programs leave "
                         "the two cores idle (default 60; 0 = don't check)")
    ap.add_argument("--plots", metavar="DIR",
                    help="write PNG plots (latency CDF, throughput over time) to DIR "
                         "(needs matplotlib: pip install -e '.[bench]')")
    ap.add_argument("--profile", metavar="DIR", type=Path,
                    help="S1-S4: sample the server with py-spy during each measured send "
                         "phase; collapsed stacks and a summary per run in DIR "
                         "(see bench/profile.py)")
    ap.add_argument("--keep-logs", action="store_true",
                    help="keep the servers' stdout/stderr and data dirs (printed path)")
    args = ap.parse_args(argv)

    names = [s.upper() for s in args.scenarios] or DEFAULT_SCENARIOS
    if names == ["ALL"]:
        names = sorted(SCENARIOS)
    unknown = [s for s in names if s not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s) {unknown}; known: {' '.join(sorted(SCENARIOS))} or all")
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if args.peers:
        targets += [t for t in _PEERS if t not in targets]
    if args.ref is not None:
        if not (args.ref / "pushgate" / "cli.py").is_file():
            ap.error(f"--ref {args.ref}: no pushgate/cli.py there")
        TARGETS["pushgate-ref"] = Pushgate("pushgate-ref", args.ref.resolve())
        targets.append("pushgate-ref")
    for t in targets:
        if t not in TARGETS:
            ap.error(f"unknown target {t!r}; known: {' '.join(TARGETS)}")
    if args.runs < 1:
        ap.error("--runs must be >= 1")

    # this process (HTTP senders) and the load processes run on the load core
    os.sched_setaffinity(0, {args.load_core})
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run

    unavailable: dict[str, str] = {}
    for t in list(targets):  # install what the peers need (once), or say why they can't run
        why = TARGETS[t].prepare(_say)
        if why is not None:
            _say(f"target {t} cannot run here, skipped: {why}")
            unavailable[t] = why
            targets.remove(t)

    workdir = Path(tempfile.mkdtemp(prefix="pushgate-bench-"))
    started = dt.datetime.now(dt.UTC)
    command = " ".join([Path(sys.executable).name, "-m", "bench.run", *(argv or sys.argv[1:])])
    results: dict[str, Any] = {}
    t_start = time.monotonic()
    try:
        for name in names:
            sc = SCENARIOS[name](scale=args.scale)
            _say(f"== {name}: {sc.title} {sc.params()}")
            skipped = {t: why for t in targets
                       if (why := TARGETS[t].skip_reason(name)) is not None}
            skipped.update(unavailable)
            if sc.standalone and not getattr(sc, "uses_targets", False):
                skipped.update({t: "this scenario runs pushgate only" for t in targets
                                if t != "pushgate"})
            for t, why in skipped.items():
                _say(f"[{name}] {t} not run: {why}")
            here = [t for t in targets if t not in skipped]
            runs: dict[str, list[dict[str, Any]]] = {t: [] for t in here}
            if sc.standalone:
                multi = getattr(sc, "uses_targets", False)
                who = here if multi else ["pushgate"]
                kw = {"server_core": args.server_core, "load_core": args.load_core}
                runs = {t: [] for t in who}
                for r in range(args.runs):
                    for t in (who if r % 2 == 0 else list(reversed(who))):
                        runs[t].append(run_standalone(
                            sc, f"{name} run {r + 1}/{args.runs} {t}", workdir,
                            **({"target": t, **kw} if multi else {})))
            for r in range(0 if sc.standalone else args.runs):
                order = here if r % 2 == 0 else list(reversed(here))
                for t in order:
                    label = f"{name} run {r + 1}/{args.runs} {t}"
                    spy = None
                    if args.profile is not None:
                        args.profile.mkdir(parents=True, exist_ok=True)
                        spy = args.profile / f"{name}-{t}-run{r + 1}.txt"
                    try:
                        m = runner(run_one(sc, t, label, workdir, args.server_core,
                                           args.load_core, args.gc_probe, args.ws_client,
                                           args.quiet_wait, spy))
                    except KeyboardInterrupt:
                        raise
                    except Exception as e:  # record and go on with the other runs
                        _say(f"[{label}] FAILED: {type(e).__name__}: {e}")
                        m = {"error": f"{type(e).__name__}: {e}"}
                    runs[t].append(m)
            results[name] = {"title": sc.title, "params": sc.params(), "runs": runs,
                             "median": {t: median_metrics(runs[t]) for t in runs},
                             "criteria": [c.__dict__ for c in sc.criteria],
                             **({"skipped": skipped} if skipped else {})}
    except KeyboardInterrupt:
        _say("interrupted; servers and load processes stopped")
        return 130
    finally:
        if args.keep_logs:
            _say(f"server logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    elapsed = time.monotonic() - t_start
    print()
    print(f"pushgate benchmark, {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
          f"runs={args.runs} (median), {elapsed / 60:.1f} min")
    print(table(results, targets))
    if any(t not in ("pushgate", "baseline", "pushgate-ref") for t in targets):
        print("\nsummary (docs/benchmarks.md, Peers):\n")
        print(summary_table(results))
    for name, r in results.items():
        for t, why in r.get("skipped", {}).items():
            print(f"{name} {t} not run: {why}")
        for t, runs in r["runs"].items():
            for i, x in enumerate(runs):
                if "error" in x:
                    print(f"{name} {t} run {i + 1} failed: {x['error'].splitlines()[0][:300]}")
                    for line in x["error"].splitlines()[1:][-4:]:
                        print(f"    {line[:300]}")
                for key in ("http_error_samples", "close_samples", "connect_fail_samples",
                            "server_log_samples"):
                    for sample in x.get(key, [])[:2]:
                        print(f"{name} {t} run {i + 1} {key[:-8]}: {sample[:300]}")
    doc = None
    if args.json or args.plots:
        for name, r in results.items():
            r["checks"] = []
            for c in SCENARIOS[name].criteria:
                pg = r["median"].get("pushgate", {}).get(c.metric)
                base = r["median"].get("baseline", {}).get(c.metric)
                ref = r["median"].get(c.ref, {}).get(c.metric)
                r["checks"].append({"metric": c.metric, "target": c.text, "pushgate": pg,
                                    "baseline": base, "ref": c.ref, c.ref: ref,
                                    "met": c.check(pg, ref)})
        doc = {"date": started.isoformat(timespec="seconds"), "command": command,
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                           "python": platform.python_version()},
               "runs": args.runs, "scale": args.scale, "elapsed_s": round(elapsed, 1),
               "scenarios": results}
    if args.json and doc is not None:
        Path(args.json).write_text(json.dumps(doc, indent=2, default=str))
        print(f"\nJSON written to {args.json}")
    if args.plots and doc is not None:
        try:
            from bench.plots import write_plots

            files = write_plots(json.loads(json.dumps(doc, default=str)), Path(args.plots))
            print(f"plots: {' '.join(str(f) for f in files)}")
        except ImportError:
            print("--plots: matplotlib is not installed (pip install -e '.[bench]')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
