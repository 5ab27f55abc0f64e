"""Microbenchmark of what a Pushca session adds per message, in-process: ``push`` of a
transient event frame to 2,000 native sessions and to 2,000 Pushca sessions over an
outlet that discards the bytes.

    .venv/bin/python -m bench.pushca_micro [--rounds 5]

- **fan-out**: the same frame ``str`` to every session (a filter send): the Pushca
  message is read from the native frame once (``pushgate.hub.pushca._message`` keeps
  the last one), then each session encodes its websocket frame;
- **distinct**: a new frame per session (user sends): every Pushca push parses the
  native JSON frame. The frame's own encoding is in both figures.

Each figure is the wall time per push, the minimum over ``--rounds`` rounds.
"""

from __future__ import annotations

import argparse
import time

from pushgate import protocol as p
from pushgate.auth import Identity
from pushgate.hub.pushca import PushcaSession
from pushgate.hub.session import Session

SESSIONS = 2000
BODY = b'{"text":"hello there, this is a message"}'


class _Discard:
    paused = False

    def write(self, data: bytes) -> None:
        pass

    def send_close(self, code: int, reason: str) -> None:
        pass

    def closing(self, session: Session) -> None:
        pass


def _per_push_us(kind: type[Session], distinct: bool, rounds: int) -> float:
    sessions = [kind(Identity(f"u{i}"), "hub", 1024, _Discard()) for i in range(SESSIONS)]
    best = float("inf")
    for _ in range(rounds):
        shared = p.encode_event(None, "id-1", BODY, 1.0)
        t = time.perf_counter()
        for s in sessions:
            s.push(p.encode_event(None, "id-1", BODY, 1.0) if distinct else shared)
        best = min(best, (time.perf_counter() - t) / SESSIONS)
    return best * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    for name, distinct in (("fan-out", False), ("distinct", True)):
        native = _per_push_us(Session, distinct, args.rounds)
        pushca = _per_push_us(PushcaSession, distinct, args.rounds)
        print(f"{name:9} native {native:.2f} us/push, pushca {pushca:.2f} us/push")


if __name__ == "__main__":
    main()
