"""A bounded websocket frame fuzz against the real ``pushgate serve`` (issue #15).

~50 sessions send random and malformed frames for a bounded time — random text and
binary payloads, random JSON values, frames of every client type with random field
values (huge and negative integers, wrong types, long strings, deep nesting),
fragmentation at random points with control frames in between, random opcodes and
reserved bits, unmasked and oversize frames, malformed close frames — while a session
of another user keeps receiving sends. After each fuzz frame the session sends a
``ping`` and waits for its ``pong`` (or the close), so every close is tied to the frame
that caused it.

What must hold: a session is only ever closed with a documented code for a bad frame
(1002, 1007, 1009, 4104; never 1000 or 1011, which tell SDKs to reconnect, and never
without a close frame), an ``error`` frame has the documented shape, the server answers
every frame or closes (it never hangs), the bystander gets every send answered 200
exactly once and in order, the server still answers ``/healthz`` and its log has no
traceback.

The seed is fixed (``PUSHGATE_FUZZ_SEED`` overrides it) and printed; the fuzz is
bounded by time (``FUZZ_SECONDS``), so a run covers as many frames as the machine
manages (the frames each session sends follow from the seed; their interleaving does
not).

Two cases have tests of their own: huge and negative integers in every numeric field
(#15 item 2: an error naming the field or the normal answer, never a close), and
invalid UTF-8 in text frames (1007 without a traceback in the log: the random text
of the fuzz stays valid UTF-8 so that the main run is not tied to that one).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import re
import string
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    ConnectionEnded,
    Frame,
    RawWs,
    close_payload,
    frame,
    raw_frame,
)
from tests.support.server import ServerProcess, running_server
from tests.support.waiting import wait_for
from tests.support.ws import ws_client

SEED = int(os.environ.get("PUSHGATE_FUZZ_SEED", "20151206"))
SESSIONS = 50
FUZZ_SECONDS = 10.0
MAX_FRAME = 8192
#: close codes the server may use for a bad frame (docs/protocol.md, close codes)
BAD_FRAME_CODES = {1002, 1007, 1009, 4104}
ANSWER_TIMEOUT = 10.0  # the server answers (or closes) within this, even when busy
TRACEBACK_MARKS = ("Traceback", "Exception in ASGI application")

CLIENT_TYPES = ["ack", "fetch", "read", "read_state", "send", "ping", "register_device",
                "unregister_device"]


def fuzz_server(tmp_path: Path) -> Any:
    # fuzz sessions reconnect after every close: no per-IP connection limits here
    return running_server(tmp_path, "--max-frame-bytes", str(MAX_FRAME),
                          PUSHGATE_MAX_CONNECTIONS_PER_IP="0", PUSHGATE_CONNECT_RATE_PER_IP="0")


def traceback_lines(log: str) -> list[str]:
    """The log's traceback marks and exception lines (``OverflowError: ...``)."""
    lines = log.splitlines()
    if not any(m in line for line in lines for m in TRACEBACK_MARKS):
        return []
    return [line for line in lines if any(m in line for m in TRACEBACK_MARKS)
            or re.match(r"^[\w.]+(Error|Exception)\b", line)]


# -- random values ---------------------------------------------------------------------


class Gen:
    """Random frames from one ``random.Random`` (one per session, derived from SEED)."""

    def __init__(self, rng: random.Random) -> None:
        self.r = rng
        self.desc = b""  # what the last frame carries, unmasked (for failure messages)

    def integer(self) -> int:
        r = self.r
        return r.choice([
            r.randint(-3, 3), r.randint(0, 1000), r.randint(-(2**31), 2**31),
            r.choice([2**31 - 1, 2**31, 2**32, 2**53 - 1, 2**53, 2**53 + 1, 2**62, 2**63 - 1,
                      2**63, 2**64 - 1, 2**64, 10**30, -(2**63), -(2**63) - 1, -(2**64)]),
        ])

    def text(self, n: int | None = None) -> str:
        r = self.r
        n = r.choice([0, 1, 5, 20, 300]) if n is None else n
        alphabet = r.choice([string.ascii_letters, string.printable, "\x00\x01\x1f\x7f é€😀\u2028",
                             "".join(map(chr, range(0x20, 0x3000, 97)))])
        return "".join(r.choice(alphabet) for _ in range(n))

    def scalar(self) -> Any:
        r = self.r
        return r.choice([
            None, True, False, self.integer(), r.uniform(-1, 1) * 10.0 ** r.randint(0, 308), -0.0,
            1e-300, 0.5,
            self.text(), "", r.choice(["ack", "fetch", "apns", "fcm", "default", "x" * 300]),
        ])

    def value(self, depth: int = 0) -> Any:
        r = self.r
        roll = r.random()
        if depth > 3 or roll < 0.5:
            return self.scalar()
        if roll < 0.7:
            return [self.value(depth + 1) for _ in range(r.randint(0, 4))]
        if roll < 0.9:
            return {self.text(r.randint(0, 8)): self.value(depth + 1) for _ in range(r.randint(0, 4))}
        return self.nested(r.randint(10, 600))

    def nested(self, depth: int) -> Any:
        v: Any = self.scalar()
        for _ in range(depth):
            v = [v] if self.r.random() < 0.5 else {"k": v}
        return v

    def sometimes(self, good: Callable[[], Any]) -> Any:
        """A plausible value most of the time, anything otherwise."""
        return good() if self.r.random() < 0.6 else self.value()

    def seqs(self) -> list[Any]:
        return [self.sometimes(lambda: self.r.randint(1, 50)) for _ in range(self.r.randint(0, 5))]

    def fields(self, kind: str) -> dict[str, Any]:
        r, s = self.r, self.sometimes
        f: dict[str, Any] = {}
        if kind == "ack":
            f["seq"] = s(self.integer)
        elif kind == "fetch":
            f["after"] = s(self.integer)
            f["limit"] = s(self.integer)
        elif kind == "read":
            f["seqs"] = s(self.seqs)
            f["ranges"] = s(lambda: [[s(self.integer), s(self.integer)]
                                     for _ in range(r.randint(0, 3))])
        elif kind == "send":
            users = lambda: [self.sometimes(lambda: f"u{r.randint(0, 9)}")  # noqa: E731
                             for _ in range(r.randint(0, 3))]
            if r.random() < 0.7:
                f["users"] = s(users)
            else:
                f["filter"] = s(lambda: {k: self.sometimes(self.text) for k in r.sample(
                    ["workspace", "device", "application", "account", "exclude", "find_any"],
                    r.randint(0, 3))})
            f["body"] = self.value()
            for key, good in (("ttl", lambda: r.choice([0, 60, 3600])), ("id", self.text),
                              ("device", self.text), ("ack", lambda: r.random() < 0.5),
                              ("ack_timeout_ms", lambda: r.randint(1, 200)),
                              ("push", lambda: {"title": self.text(), "badge": self.integer()})):
                if r.random() < 0.3:
                    f[key] = s(good)
        elif kind in ("register_device", "unregister_device"):
            f["platform"] = s(lambda: r.choice(["apns", "fcm"]))
            f["token"] = s(self.text)
            if r.random() < 0.5:
                f["app"] = s(self.text)
        if r.random() < 0.7:
            f["rid"] = s(lambda: r.choice([self.integer(), self.text(r.randint(0, 80))]))
        if r.random() < 0.2:
            f[self.text(6)] = self.value()  # unknown fields
        return f

    def typed_message(self) -> bytes:
        r = self.r
        kind = r.choice(CLIENT_TYPES) if r.random() < 0.9 else self.text(r.randint(0, 12))
        obj = {"type": kind, **self.fields(kind)}
        self.desc = json.dumps(obj, ensure_ascii=r.random() < 0.5).encode()
        return self.desc

    # -- frames: (bytes on the wire, kind) ------------------------------------------------

    def item(self) -> tuple[bytes, str]:
        r = self.r
        kind = r.choices(list(ITEMS), weights=[w for w, _ in ITEMS.values()])[0]
        self.desc = b""
        data = ITEMS[kind][1](self)
        return data, kind

    def typed(self) -> bytes:
        return frame(OP_TEXT, self.typed_message())

    def json_value(self) -> bytes:
        self.desc = json.dumps(self.value()).encode()
        return frame(OP_TEXT, self.desc)

    def random_text(self) -> bytes:
        self.desc = self.text(self.r.randint(0, 200)).encode()
        return frame(OP_TEXT, self.desc)

    def random_binary(self) -> bytes:
        return frame(OP_BINARY, self.r.randbytes(self.r.randint(0, 300)))

    def fragmented(self) -> bytes:
        r = self.r
        msg = self.typed_message() if r.random() < 0.8 else self.text(50).encode()
        self.desc = msg
        cuts = sorted(r.randint(0, len(msg)) for _ in range(r.randint(1, 5)))
        parts = [msg[a:b] for a, b in zip([0, *cuts], [*cuts, len(msg)], strict=True)]
        out = []
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if last and r.random() < 0.1:
                break  # left unfinished: the next data frame is a protocol error
            out.append(frame(OP_CONT if i else OP_TEXT, part, fin=last))
            if not last and r.random() < 0.3:
                out.append(frame(r.choice([OP_PING, OP_PONG]), r.randbytes(r.randint(0, 125))))
        return b"".join(out)

    def random_frame(self) -> bytes:
        r = self.r
        opcode = r.choice([o for o in range(16) if o != OP_CLOSE])
        rsv = r.choice([0, 0, r.randint(1, 7)])
        n = r.randint(0, 125 if opcode >= 8 else 300)
        # a text payload stays valid UTF-8 here: invalid UTF-8 has its own test below
        payload = self.text(n).encode()[:n] if opcode == OP_TEXT else r.randbytes(n)
        if opcode == OP_TEXT:
            payload = payload.decode(errors="ignore").encode()
        fin = r.random() < 0.9
        self.desc = f"opcode {opcode:#x} rsv {rsv} fin {fin} ".encode() + payload
        return raw_frame(opcode, payload, fin=fin, rsv=rsv)

    def bad_close(self) -> bytes:
        r = self.r
        return raw_frame(OP_CLOSE, r.choice([
            b"\x03",
            close_payload(r.choice([0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000,
                                    65535]), self.text(5)),
            close_payload(1000, b"\xff\xfe" + r.randbytes(3)),
        ]))

    def unmasked(self) -> bytes:
        return raw_frame(OP_TEXT, self.typed_message(), mask=False)

    def oversize(self) -> bytes:
        return frame(OP_TEXT, json.dumps({"type": "ping", "pad": "x" * MAX_FRAME}).encode())

    def control(self) -> bytes:
        r = self.r
        if r.random() < 0.8:
            return frame(r.choice([OP_PING, OP_PONG]), r.randbytes(r.randint(0, 125)))
        return raw_frame(OP_PING, r.randbytes(r.randint(126, 300)))  # too long


ITEMS: dict[str, tuple[float, Callable[[Gen], bytes]]] = {
    "typed": (40, Gen.typed),
    "json-value": (6, Gen.json_value),
    "random-text": (4, Gen.random_text),
    "random-binary": (3, Gen.random_binary),
    "fragmented": (15, Gen.fragmented),
    "random-frame": (6, Gen.random_frame),
    "bad-close": (3, Gen.bad_close),
    "unmasked": (2, Gen.unmasked),
    "oversize": (2, Gen.oversize),
    "control": (8, Gen.control),
}


# -- the fuzz ----------------------------------------------------------------------------


@dataclass
class Tally:
    frames: collections.Counter[str] = field(default_factory=collections.Counter)
    closes: collections.Counter[tuple[str, int]] = field(default_factory=collections.Counter)
    answers: collections.Counter[str] = field(default_factory=collections.Counter)
    problems: list[str] = field(default_factory=list)


def check_server_frame(f: Frame, tally: Tally, where: str) -> Any:
    """One frame the server sent to a fuzz session: well-formed, of a documented type."""
    if f.masked or f.rsv or not f.fin:
        tally.problems.append(f"{where}: malformed server frame {f}")
    if f.opcode != OP_TEXT:
        return None
    msg = f.json()
    kind = msg.get("type")
    tally.answers[kind] += 1
    if kind == "error":
        if not (isinstance(msg.get("code"), str) and isinstance(msg.get("message"), str)
                and isinstance(msg.get("retryable"), bool)):
            tally.problems.append(f"{where}: error frame without code/message/retryable: {msg}")
    elif kind not in ("reply", "pong", "event", "head"):
        tally.problems.append(f"{where}: unexpected frame {msg}")
    return msg


async def fuzz_session(srv: ServerProcess, i: int, deadline: float, tally: Tally) -> None:
    gen = Gen(random.Random(SEED * 1000 + i))
    user = f"fuzz-{i}"
    n = 0
    while time.monotonic() < deadline:
        ws = await RawWs.connect(srv.port, f"/v1/ws?token={srv.token(user)}")
        try:
            hello = await ws.recv_json()
            if hello.get("type") != "hello":
                tally.problems.append(f"{user}: first frame {hello}")
            seen = 1
            while time.monotonic() < deadline:
                data, kind = gen.item()
                tally.frames[kind] += 1
                n += 1
                ws.write(data)
                rid = f"sync-{n}"
                ws.send_json({"type": "ping", "rid": rid})
                closed = None
                try:
                    while True:
                        f = await ws.next_frame(ANSWER_TIMEOUT)
                        seen += 1
                        if f.opcode == OP_CLOSE:
                            closed = f
                            break
                        msg = check_server_frame(f, tally, f"{user} after {kind}")
                        if msg == {"type": "pong", "rid": rid}:
                            break
                except ConnectionEnded as e:
                    what = "hung" if not ws.ended else "ended without a close frame"
                    tally.problems.append(f"{user}: {what} after a {kind} frame "
                                          f"{gen.desc[:200]!r}: {e}")
                    break
                if closed is not None:
                    code, reason = closed.close
                    tally.closes[(kind, code)] += 1
                    if code not in BAD_FRAME_CODES:
                        tally.problems.append(f"{user}: closed {code} {reason!r} after a {kind} "
                                              f"frame {gen.desc[:300]!r}")
                    ws.write(frame(OP_CLOSE, close_payload(code)))
                    try:
                        await ws.wait_ended(ANSWER_TIMEOUT)
                    except ConnectionEnded:
                        tally.problems.append(f"{user}: TCP not closed after close {code}")
                    break
        finally:
            ws.abort()


@dataclass
class Bystander:
    sent: list[tuple[int, int]] = field(default_factory=list)  # (seq, n) answered 200
    got: list[tuple[int, int]] = field(default_factory=list)  # stored events received


async def test_frame_fuzz_keeps_sessions_and_the_bystander_safe(tmp_path: Path) -> None:
    print(f"fuzz seed {SEED} (PUSHGATE_FUZZ_SEED), {SESSIONS} sessions, {FUZZ_SECONDS:g} s")
    tally, by = Tally(), Bystander()
    with fuzz_server(tmp_path) as srv:
        async with srv.http() as http:
            for i in range(SESSIONS):  # every fuzz user has an inbox: fetch/read reach the store
                r = await http.post("/v1/notifications", json={"users": [f"fuzz-{i}"], "body": i})
                assert r.status_code == 200, r.text
            bystander = f"bystander-{SEED}"
            async with ws_client(srv, bystander, max_queue=None) as watcher:
                stop = asyncio.Event()

                async def send_to_bystander() -> None:
                    n = 0
                    while not stop.is_set():
                        n += 1
                        r = await http.post("/v1/notifications",
                                            json={"users": [bystander], "body": {"n": n}})
                        if r.status_code == 200:
                            by.sent.append((r.json()["results"][0]["seq"], n))

                async def watch() -> None:
                    while True:
                        msg = await watcher.recv(timeout=3600)
                        if msg["type"] == "event" and msg["seq"] is not None:  # not a filter send
                            by.got.append((msg["seq"], msg["body"]["n"]))

                deadline = time.monotonic() + FUZZ_SECONDS
                watching = asyncio.create_task(watch())
                sending = asyncio.create_task(send_to_bystander())
                try:
                    await asyncio.gather(*(fuzz_session(srv, i, deadline, tally)
                                           for i in range(SESSIONS)))
                finally:
                    stop.set()
                    await sending
                try:
                    await wait_for(lambda: len(by.got) >= len(by.sent) or watching.done(), 15,
                                   "the bystander's events")
                finally:
                    died = watching.done() and not watching.cancelled() and watching.exception()
                    watching.cancel()
                if died:
                    raise AssertionError("the bystander's session failed") from died
            health = await http.get("/healthz")
        log = srv.log_text()

    print(f"frames sent: {sum(tally.frames.values())} {dict(tally.frames)}")
    print(f"closes (frame kind, code): {dict(tally.closes)}")
    print(f"answers: {dict(tally.answers)}; bystander: {len(by.sent)} sent, {len(by.got)} got")
    assert not tally.problems, "\n".join(tally.problems[:30])
    assert sum(tally.frames.values()) > 10 * SESSIONS, "the fuzz hardly ran"
    assert by.sent, "no send to the bystander was answered 200"
    assert by.got == by.sent, "the bystander lost, duplicated or reordered sends"
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert not traceback_lines(log), "\n".join(traceback_lines(log)[:20])


# -- cases on their own ----------------------------------------------------------------------


HUGE = [2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**30, -1, -(2**63), -(2**63) - 1, -(2**64)]


def huge_int_frames(v: int) -> Iterator[tuple[dict[str, Any], str]]:
    """Frames with ``v`` in each numeric field, and the field an error must name."""
    yield {"type": "fetch", "after": v, "rid": "f"}, "after"
    yield {"type": "fetch", "limit": v, "rid": "l"}, "limit"
    yield {"type": "ack", "seq": v}, "seq"
    yield {"type": "read", "seqs": [v], "rid": "r"}, "seqs"
    yield {"type": "read", "ranges": [[1, v]], "rid": "rr"}, "ranges"
    yield {"type": "ping", "rid": v}, "rid"
    yield {"type": "send", "users": ["huge"], "body": 1, "ttl": v, "rid": "s1"}, "ttl"
    yield {"type": "send", "users": ["huge"], "body": 1, "ack": True, "ack_timeout_ms": v,
           "rid": "s2"}, "ack_timeout_ms"
    yield {"type": "send", "users": ["huge"], "body": 1, "push": {"title": "t", "badge": v},
           "rid": "s3"}, "push.badge"


async def test_huge_and_negative_integers_in_every_numeric_field(tmp_path: Path) -> None:
    """Each frame gets a documented error naming its field, or its normal answer; the
    session stays open and the log has no traceback."""
    with fuzz_server(tmp_path) as srv:
        async with srv.http() as http:  # an inbox, so fetch and read reach the store
            r = await http.post("/v1/notifications", json={"users": ["huge"], "body": 0})
            assert r.status_code == 200
        ws = await RawWs.connect(srv.port, f"/v1/ws?token={srv.token('huge')}")
        failures = []
        try:
            assert (await ws.recv_json())["type"] == "hello"
            for i, (obj, name) in enumerate(f for v in HUGE for f in huge_int_frames(v)):
                ws.send_text(json.dumps(obj))  # stdlib json: integers of any size
                ws.send_json({"type": "ping", "rid": f"sync-{i}"})
                try:
                    answers = []
                    while (msg := await ws.recv_json()) != {"type": "pong", "rid": f"sync-{i}"}:
                        if msg["type"] != "event":
                            answers.append(msg)
                except ConnectionEnded:
                    failures.append(f"{obj}: closed {ws.close_frame and ws.close_frame.close}")
                    ws.abort()
                    ws = await RawWs.connect(srv.port, f"/v1/ws?token={srv.token('huge')}")
                    assert (await ws.recv_json())["type"] == "hello"
                    continue
                for a in answers:
                    if a["type"] == "error" and (a["code"] != "invalid_request"
                                                 or a.get("field") != name):
                        failures.append(f"{obj}: error not naming {name!r}: {a}")
                    elif a["type"] not in ("error", "reply", "pong"):
                        failures.append(f"{obj}: answered {a}")
        finally:
            ws.abort()
        log = srv.log_text()
    assert not failures, "\n".join(failures)
    assert not traceback_lines(log), "\n".join(traceback_lines(log)[:20])


async def test_invalid_utf8_closes_1007_without_a_traceback(tmp_path: Path) -> None:
    with fuzz_server(tmp_path) as srv:
        rng = random.Random(SEED)
        for _ in range(5):
            ws = await RawWs.connect(srv.port, f"/v1/ws?token={srv.token('utf8')}")
            try:
                assert (await ws.recv_json())["type"] == "hello"
                bad = rng.randbytes(20) + b"\xff"  # 0xff never occurs in UTF-8
                ws.write(frame(OP_TEXT, bad))
                code, _ = await ws.finish_close()
                assert code == 1007
            finally:
                ws.abort()
        async with srv.http() as http:
            assert (await http.get("/healthz")).status_code == 200
        log = srv.log_text()
    assert not traceback_lines(log), "\n".join(traceback_lines(log)[:20])
