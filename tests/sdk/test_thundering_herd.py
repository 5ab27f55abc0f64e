"""1,000 SDK clients reconnecting after a server restart come back spread over the
backoff window (full jitter), not all in the same instant."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import statistics
import time
from collections import Counter
from pathlib import Path

from pushgate_client import Client, State

from tests.sdk.conftest import make_server

N = 1000
BASE, CAP = 1.0, 8.0
OUTAGE = 2.0  # seconds between the old process' exit and the new one's start


async def test_1000_clients_spread_their_reconnects(tmp_path: Path) -> None:
    srv = make_server(tmp_path)
    srv.start()
    connected_at: list[float] = []  # hello received
    attempted_at: list[float] = []  # the successful connection attempt began
    attempts_at_connect: list[int] = []
    clients: list[Client] = []
    all_back = asyncio.Event()

    def listener(client: Client) -> None:
        def on_state(state: State) -> None:
            if state is State.CONNECTED:
                connected_at.append(time.monotonic())
                attempted_at.append(client.attempted_at)
                attempts_at_connect.append(client.backoff.attempt)
                if len(connected_at) == N:
                    all_back.set()
        client.add_state_listener(on_state)

    try:
        for i in range(N):
            c = Client(srv.base_url, token=srv.token(f"herd-{i}"), backoff_base=BASE,
                       backoff_cap=CAP, connect_timeout=15, stable_after=1.0,
                       connect_options={"ping_interval": None})
            listener(c)
            clients.append(c)
        for k in range(0, N, 100):  # ramp up: do not herd the server ourselves
            batch = clients[k:k + 100]
            for c in batch:
                c.start()
            await asyncio.gather(*(c.wait_connected(30) for c in batch))
        await asyncio.sleep(1.1)  # > stable_after: every client starts from attempt 0
        all_back.clear()
        connected_at.clear()
        attempted_at.clear()
        attempts_at_connect.clear()

        t0 = time.monotonic()
        await asyncio.to_thread(srv.stop, signal.SIGTERM)  # every session gets 4000 at once
        t_down = time.monotonic()
        await asyncio.sleep(OUTAGE)  # clients back off while nothing listens
        await asyncio.to_thread(srv.start)
        t_up = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_back.wait(), CAP + 20)
        assert len(connected_at) == N, f"only {len(connected_at)} of {N} came back"
        assert all(c.state is State.CONNECTED for c in clients)

        window = statistics.median(min(CAP, BASE * 2 ** max(0, a - 1)) for a in attempts_at_connect)
        print(f"\nstop {t_down - t0:.2f}s, down {t_up - t_down:.2f}s, median window {window:.1f}s")
        for name, times, share in (("attempts", attempted_at, 0.20), ("hellos", connected_at, 0.20)):
            rel = sorted(t - t_up for t in times)
            buckets = Counter(int(r // 0.1) for r in rel)
            busiest = max(buckets.values())
            p10, p50, p90 = (rel[int(q * (N - 1))] for q in (0.1, 0.5, 0.9))
            print(f"{name} after start: p10 {p10:.2f}s p50 {p50:.2f}s p90 {p90:.2f}s "
                  f"last {rel[-1]:.2f}s; busiest 100 ms bucket {busiest}")
            # a herd would put (nearly) every reconnect in one bucket; a loaded CI machine
            # bunches timer wake-ups a little, hence 20 %
            assert busiest <= share * N, f"{busiest} of {N} {name} within 100 ms"
            assert p90 - p10 >= 0.3 * window, f"{name} not spread over the backoff window"
            assert rel[-1] <= CAP + 5
    finally:
        await asyncio.gather(*(c.close() for c in clients))
        srv.stop()
