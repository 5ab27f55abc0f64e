"""A one-line progress bar for the session ramp-up (plain periodic lines when stdout is
not a terminal, e.g. in CI logs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, label: str, stream: TextIO | None = None,
                 width: int = 30, line_every_s: float = 5.0) -> None:
        self.total = max(1, total)
        self.label = label
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.width = width
        self.line_every_s = line_every_s
        self.t0 = time.monotonic()
        self._last_line = self.t0
        self._last = (self.t0, 0)
        self.rate = 0.0

    def update(self, done: int, failed: int = 0, extra: str = "") -> None:
        now = time.monotonic()
        t_prev, n_prev = self._last
        if now - t_prev >= 1.0:
            self.rate = (done - n_prev) / (now - t_prev)
            self._last = (now, done)
        frac = min(1.0, done / self.total)
        filled = int(frac * self.width)
        text = (f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
                f"{done:,}/{self.total:,} {frac * 100:3.0f}% {self.rate:,.0f}/s "
                f"failed {failed:,} {now - self.t0:.0f}s {extra}").rstrip()
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K")
            self.stream.flush()
        elif now - self._last_line >= self.line_every_s:
            self._last_line = now
            print(f"{time.strftime('%H:%M:%S')} {text}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
