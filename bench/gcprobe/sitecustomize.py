"""Injected into a server under test by ``bench.run --gc-probe`` (via PYTHONPATH):
times every cyclic-GC collection of the process; on SIGUSR2 it writes the totals since
the previous SIGUSR2 to $BENCH_GC_PROBE_OUT ("{pid}" replaced by the process id) and
starts counting again. Diagnostic only; it costs about a microsecond per collection."""

import gc
import json
import os
import signal
import time

_out = os.environ.get("BENCH_GC_PROBE_OUT")
if _out:
    def _zero() -> dict:
        return {g: {"count": 0, "total_s": 0.0, "max_s": 0.0, "collected": 0} for g in range(3)}

    _stats = _zero()
    _start = [0.0]
    _perf = time.perf_counter

    def _cb(phase: str, info: dict) -> None:
        if phase == "start":
            _start[0] = _perf()
            return
        d = _perf() - _start[0]
        s = _stats[info["generation"]]
        s["count"] += 1
        s["total_s"] += d
        s["collected"] += info.get("collected", 0)
        if d > s["max_s"]:
            s["max_s"] = d

    def _dump(*_: object) -> None:
        global _stats
        snap, _stats = _stats, _zero()
        path = _out.replace("{pid}", str(os.getpid()))
        try:
            with open(path + ".tmp", "w") as f:
                json.dump({"pid": os.getpid(), "time": time.time(), "gens": snap,
                           "tracked_objects": len(gc.get_objects()),
                           "thresholds": gc.get_threshold()}, f)
            os.replace(path + ".tmp", path)
        except OSError:
            pass

    gc.callbacks.append(_cb)
    try:
        signal.signal(signal.SIGUSR2, _dump)
    except (ValueError, OSError):
        pass
