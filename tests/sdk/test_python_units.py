"""The SDK's pure parts: ordering / dedupe, backoff, token expiry, close-code rule."""

from __future__ import annotations

import base64
import json
import random

import pytest
from pushgate_client import Backoff, Event, Inbox, should_reconnect, token_expiry, ws_url
from pushgate_client.client import _Buffer
from pushgate_client.token import refresh_at, refresh_window


def ev(seq: int) -> Event:
    return Event(seq, None, {"n": seq}, 0.0)


def seqs(events: list[Event]) -> list[int | None]:
    return [e.seq for e in events]


def test_in_order_events_flow_through_and_duplicates_are_dropped() -> None:
    box = Inbox(0)
    assert seqs(box.add(ev(1))) == [1]
    assert seqs(box.add(ev(2))) == [2]
    assert box.add(ev(2)) == [] and box.add(ev(1)) == []
    assert box.last_seq == 2 and box.next_fetch() is None


def test_a_gap_holds_later_events_until_a_fetch_fills_it() -> None:
    box = Inbox(3)
    assert box.add(ev(6)) == [] and box.add(ev(5)) == []
    req = box.next_fetch()
    assert req is not None and req.after == 3
    assert box.next_fetch() is None  # one fetch in flight
    assert seqs(box.add(ev(4))) == [4, 5, 6]  # a live event may fill the gap first
    out = box.on_fetch_reply([ev(4), ev(5), ev(6), ev(7)], head=7, more=False)
    assert seqs(out) == [7] and box.last_seq == 7 and box.next_fetch() is None


def test_missing_seqs_up_to_the_reply_head_are_holes() -> None:
    box = Inbox(0)
    box.add(ev(9))
    assert box.next_fetch() is not None
    out = box.on_fetch_reply([ev(4)], head=9, more=False)  # 1-3, 5-8 expired
    assert seqs(out) == [4, 9] and box.last_seq == 9


def test_a_partial_page_covers_only_up_to_its_last_event() -> None:
    box = Inbox(0)
    box.on_head(10)
    assert box.next_fetch() is not None
    out = box.on_fetch_reply([ev(1), ev(3)], head=10, more=True)
    assert seqs(out) == [1, 3] and box.last_seq == 3  # seq 2 expired, 4.. still to come
    req = box.next_fetch()
    assert req is not None and req.after == 3


def test_a_reply_that_brings_nothing_counts_as_a_stall() -> None:
    box = Inbox(5)
    box.add(ev(8))
    box.next_fetch()
    assert box.on_fetch_reply([], head=0, more=False) == []  # store error: head 0
    assert box.stalls == 1 and box.last_seq == 5
    box.next_fetch()
    assert seqs(box.on_fetch_reply([ev(6), ev(7)], head=8, more=False)) == [6, 7, 8]
    assert box.stalls == 0


def test_random_arrival_orders_give_each_seq_once_in_order() -> None:
    rng = random.Random(7)
    for _ in range(200):
        n = rng.randint(1, 40)
        arrivals = [ev(s) for s in range(1, n + 1) for _ in range(rng.randint(1, 2))]
        rng.shuffle(arrivals)
        box = Inbox(0)
        out: list[Event] = []
        for e in arrivals[: rng.randint(0, len(arrivals))]:
            out += box.add(e)
        box.on_head(n)
        while (req := box.next_fetch()) is not None:
            page = [ev(s) for s in range(req.after + 1, min(n, req.after + 5) + 1)]
            out += box.on_fetch_reply(page, head=n, more=page[-1].seq < n)  # type: ignore[operator]
        assert seqs(out) == list(range(1, n + 1))


def test_backoff_is_full_jitter_within_a_capped_exponential_window() -> None:
    b = Backoff(0.5, 4.0, random.Random(1))
    windows = [b.window(n) for n in range(6)]
    assert windows == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    delays = [Backoff(0.5, 4.0, random.Random(i)).next() for i in range(2000)]
    assert 0 <= min(delays) < 0.01 and 0.49 < max(delays) <= 0.5  # the whole window is used
    b.attempt = 10_000
    assert b.next() <= 4.0
    with pytest.raises(ValueError):
        Backoff(0, 1)


def _jwt(claims: dict[str, object]) -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'HS256'})}.{part(claims)}.sig"


def test_token_expiry_is_read_without_verifying() -> None:
    assert token_expiry(_jwt({"sub": "a", "exp": 1700000000})) == 1700000000.0
    assert token_expiry(_jwt({"sub": "a"})) is None
    assert token_expiry("garbage") is None
    assert refresh_at(1000, 2800, 30) == 2770  # 30 s before a 30 min token expires
    assert refresh_at(1000, 1010, 30) == 1005  # never before half its life


def test_refresh_window_is_margin_to_1_5_margin_before_exp_never_before_half_life() -> None:
    assert refresh_window(1000, 2800, 30) == (2755, 2770)  # a 30 min token: 45 s to 30 s
    assert refresh_window(1000, 1080, 30) == (1040, 1050)  # the early end moved to half
    assert refresh_window(1000, 1010, 30) == (1005, 1005)  # shorter than 2 margins: half
    assert refresh_window(1000, 1000, 30) == (1000, 1000)


async def test_the_apps_resume_point_counts_only_events_it_took() -> None:
    buf = _Buffer(10, 0)
    await buf.put(ev(1))
    await buf.put(ev(2))
    buf.advance(2)
    await buf.put(Event(None, None, "typing", 0.0))  # transient
    buf.advance(5)  # 3-5 expired (a fetch reply said so)
    assert buf.position == 0  # nothing taken yet
    assert (await buf.get()).seq == 1 and buf.position == 1
    assert (await buf.get()).seq == 2 and buf.position == 2
    assert (await buf.get()).seq is None and buf.position == 5
    buf.advance(7)  # nothing buffered: at once
    assert buf.position == 7


def test_close_code_rule_and_urls() -> None:
    assert all(should_reconnect(c) for c in (1000, 1001, 1006, 1011, 1012, 4000, 4001, 4099))
    assert not any(should_reconnect(c) for c in (1009, 4100, 4102, 4103, 4104, 4200, 4999))
    assert ws_url("http://h:1") == "ws://h:1/v1/ws"
    assert ws_url("https://h/base/") == "wss://h/base/v1/ws"
    assert ws_url("ws://h/v1/ws") == "ws://h/v1/ws"
    with pytest.raises(ValueError):
        ws_url("ftp://h")
