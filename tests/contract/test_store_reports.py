"""The ReportStore contract: batched counter deltas, delivered/acked marks counted once,
read marks, per-user status, latest reports and cleanup with the events' TTL; run on
every backend of conftest.py."""

from __future__ import annotations

from pushgate.store import NewEvent, ReportDelta, SqlEventStore
from pushgate.store.base import DELIVERED
from pushgate.store.cleanup import Cleaner

from .conftest import TTL, FakeClock, StoreFactory


def rev(user: str, report: str, id: str | None = None, ttl: int = TTL) -> NewEvent:
    return NewEvent(user=user, body=b'{"n":1}', ttl_s=ttl, id=id, report=report)


async def test_deltas_add_up_and_acks_count_once(store: SqlEventStore, clock: FakeClock) -> None:
    appended = await store.append([rev(u, "r1") for u in ("a", "b", "c")])
    seqs = {a.user: a.seq for a in appended}
    await store.record_reports({"r1": ReportDelta(addressed=3, stored=3, delivered=2,
                                                  expires_at=clock.now + TTL)}, [], [])
    # two processes flush the same ack (two sessions, a second router): counted once
    await store.record_reports({}, [], [("a", seqs["a"]), ("a", seqs["a"])])
    await store.record_reports({"r1": ReportDelta(addressed=1, duplicates=1)},
                               [], [("a", seqs["a"]), ("zz", 9)])

    r = await store.report("r1")
    assert r is not None
    assert (r.addressed, r.stored, r.duplicates, r.delivered, r.acked, r.read) == (4, 3, 1, 2, 1, 0)
    assert r.expires_at == clock.now + TTL and r.created_at == clock.now
    assert await store.report("nope") is None


async def test_sends_counts_add_up_with_repeats_and_deltas_in_one_flush(
        store: SqlEventStore, clock: FakeClock) -> None:
    """A flush carries the sends as they came (a retried send's id twice, the bridge's
    delta of the same report beside them): every count adds up, the expiry is the
    latest."""
    exp = clock.now + TTL
    t = clock.now
    await store.record_reports({"s1": ReportDelta(pushed=2, expires_at=exp)}, [], [], [
        ("s1", 3, 3, 0, 2, exp, t), ("s2", 1, 0, 0, 1, exp + 5, t),
        ("s1", 3, 0, 3, 1, exp + 9, t)])
    await store.record_reports({}, [], [], [("s2", 2, 2, 0, 0, exp, t)])
    s1, s2 = await store.report("s1"), await store.report("s2")
    assert s1 is not None and s2 is not None
    assert (s1.addressed, s1.stored, s1.duplicates, s1.delivered, s1.pushed) == (6, 3, 3, 3, 2)
    assert s1.expires_at == exp + 9
    assert (s2.addressed, s2.stored, s2.delivered, s2.expires_at) == (3, 2, 1, exp + 5)
    assert {r.report for r in await store.latest_reports(10)} == {"s1", "s2"}


async def test_user_status_from_the_event_marks(store: SqlEventStore) -> None:
    # a written with the DELIVERED mark (the sender knew its session), b without
    (a,) = await store.append([NewEvent("a", b"1", TTL, None, "r2", DELIVERED)])
    (b,) = await store.append([rev("b", "r2")])
    (c,) = await store.append([NewEvent("c", b"1", TTL, None, "r2", DELIVERED)])
    # the flush corrects marks: b was delivered after all, c was not
    await store.record_reports({}, [("b", b.seq, True), ("c", c.seq, False)], [("a", a.seq)])

    r = await store.report("r2")
    assert r is not None and (r.delivered, r.acked) == (0, 1)  # delivered comes in deltas
    status = {u: await store.report_user("r2", u) for u in ("a", "b", "c")}
    assert {u: (s.delivered, s.acked, s.read) for u, s in status.items() if s} == {
        "a": (True, True, False), "b": (True, False, False), "c": (False, False, False)}
    assert status["a"] is not None and status["a"].seq == a.seq
    assert await store.report_user("r2", "d") is None
    assert await store.report_user("other", "a") is None


async def test_a_users_expired_event_is_no_status_before_the_cleanup_removes_it(
        store: SqlEventStore, clock: FakeClock) -> None:
    """http-api.md: the per-user route is 404 when the user's event expired. It answered
    stored:true until the cleanup round deleted the row (~60 s later)."""
    await store.append([rev("a", "r7", ttl=10)])
    assert await store.report_user("r7", "a") is not None
    clock.advance(11)
    assert await store.report_user("r7", "a") is None


async def test_a_flush_marks_many_events_of_many_users(store: SqlEventStore) -> None:
    """Cluster mode: every delivered event's mark comes with the flush (one statement
    per chunk, not one per event); a repeat is harmless, off is applied after on."""
    users = [f"u{i}" for i in range(200)]
    appended = await store.append([rev(u, "r9") for u in users])
    on = [(a.user, a.seq, True) for a in appended]
    await store.record_reports({}, on + on[:10] + [("u0", appended[0].seq, False)], [])
    delivered = {}
    for u in users:
        st = await store.report_user("r9", u)
        assert st is not None
        delivered[u] = st.delivered
    assert delivered == {u: u != "u0" for u in users}


async def test_read_marks_count_per_report(store: SqlEventStore) -> None:
    await store.append([rev("a", "r3"), rev("a", "r4"), NewEvent("a", b"1", TTL)])
    await store.mark_read("a", [1, 3], [])
    await store.mark_read("a", [1, 2], [])  # 1 again: counted once

    r3, r4 = await store.report("r3"), await store.report("r4")
    assert r3 is not None and r3.read == 1
    assert r4 is not None and r4.read == 1
    u = await store.report_user("r3", "a")
    assert u is not None and u.read


async def test_the_latest_reports_are_newest_send_first_within_one_flush(
        store: SqlEventStore, clock: FakeClock) -> None:
    # http-api.md: the latest reports, newest first — by when they were sent, also when
    # one flush carries several sends (created_at is the send's time, not the flush's),
    # and a report sent again later keeps its first send's time
    exp, t = clock.now + TTL, clock.now - 5
    await store.record_reports({}, [], [], [
        ("z-first", 1, 1, 0, 0, exp, t), ("a-second", 1, 1, 0, 0, exp, t + 1),
        ("m-third", 1, 1, 0, 0, exp, t + 2)])
    await store.record_reports({}, [], [], [("z-first", 1, 0, 1, 0, exp, t + 3)])
    latest = await store.latest_reports(10)
    assert [r.report for r in latest] == ["m-third", "a-second", "z-first"]
    assert [r.created_at for r in latest] == [t + 2, t + 1, t]


async def test_reasons_that_differ_only_in_case_are_two_reasons(store: SqlEventStore,
                                                                 clock: FakeClock) -> None:
    # APNs' Unregistered and FCM's UNREGISTERED: one report, two reasons on every backend
    await store.record_reports({"r": ReportDelta(
        push_failed=3, reasons={"Unregistered": 1, "UNREGISTERED": 2},
        expires_at=clock.now + TTL)}, [], [])
    await store.record_reports({"r": ReportDelta(push_failed=1, reasons={"Unregistered": 1})},
                               [], [])
    report = await store.report("r")
    assert report is not None
    assert report.failed_by_reason == {"Unregistered": 2, "UNREGISTERED": 2}


async def test_push_failures_by_reason_and_latest(store: SqlEventStore, clock: FakeClock) -> None:
    await store.record_reports({"old": ReportDelta(addressed=1, expires_at=clock.now + TTL)}, [], [])
    clock.advance(1)
    await store.record_reports({"new": ReportDelta(
        pushed=2, push_failed=3, reasons={"Unregistered": 1, "BadDeviceToken": 2},
        expires_at=clock.now + TTL)}, [], [])
    await store.record_reports({"new": ReportDelta(push_failed=1, reasons={"Unregistered": 1})},
                               [], [])

    new = await store.report("new")
    assert new is not None and (new.pushed, new.push_failed) == (2, 4)
    assert new.failed_by_reason == {"Unregistered": 2, "BadDeviceToken": 2}
    assert [r.report for r in await store.latest_reports(10)] == ["new", "old"]
    assert [r.report for r in await store.latest_reports(1)] == ["new"]


async def test_reports_survive_a_restart_and_go_with_their_events(
        make_store: StoreFactory, clock: FakeClock) -> None:
    store = await make_store()
    await store.append([rev("a", "r5", ttl=10)])
    await store.record_reports({"r5": ReportDelta(addressed=1, stored=1,
                                                  expires_at=clock.now + 10)}, [], [])
    await store.close()
    again = await make_store()
    r = await again.report("r5")
    assert r is not None and r.stored == 1

    clock.advance(10)
    while await again.cleanup_expired(clock.now, 100):
        pass
    assert await again.report("r5") is not None  # the events are gone, the reports next
    while await again.cleanup_expired_reports(clock.now, 100):
        pass
    assert await again.report("r5") is None
    assert await again.report_user("r5", "a") is None


async def test_a_report_kept_alive_by_a_later_send_outlives_the_first_expiry(
        store: SqlEventStore, clock: FakeClock) -> None:
    await store.append([rev("a", "long", ttl=10), rev("a", "short", ttl=10)])
    await store.record_reports({"long": ReportDelta(addressed=1, expires_at=clock.now + 10),
                                "short": ReportDelta(addressed=1, expires_at=clock.now + 10)},
                               [], [])
    clock.advance(5)
    await store.append([rev("b", "long", ttl=100)])  # the same id again, later, longer
    await store.record_reports({"long": ReportDelta(addressed=1, expires_at=clock.now + 100)},
                               [], [])
    clock.advance(5)
    while await store.cleanup_expired(clock.now, 100) + await store.cleanup_expired_reports(
            clock.now, 100):
        pass
    assert await store.report("short") is None
    kept = await store.report("long")
    assert kept is not None and kept.addressed == 2
    clock.advance(100)
    while await store.cleanup_expired(clock.now, 100) + await store.cleanup_expired_reports(
            clock.now, 100):
        pass
    assert await store.report("long") is None


async def test_a_short_report_flushed_with_a_long_one_goes_with_its_own_events(
        store: SqlEventStore, clock: FakeClock) -> None:
    """One flush holding a report of ttl 10 and one of ttl 100,000: the short one is
    removed at its own expiry (plus the cleanup's bounded lateness), not the long one's."""
    await store.append([rev("a", "brief", ttl=10), rev("a", "lasting", ttl=100_000)])
    await store.record_reports({
        "brief": ReportDelta(addressed=1, expires_at=clock.now + 10),
        "lasting": ReportDelta(addressed=1, expires_at=clock.now + 100_000)}, [], [])
    clock.advance(10 + 60)
    while await store.cleanup_expired(clock.now, 100) + await store.cleanup_expired_reports(
            clock.now, 100):
        pass
    assert await store.report("brief") is None
    assert await store.report("lasting") is not None


async def test_the_ttl_cleaner_deletes_the_reports_after_their_events_counting_events_only(
        store: SqlEventStore, clock: FakeClock) -> None:
    await store.append([rev(u, "r9", ttl=10) for u in ("a", "b", "c")])
    await store.record_reports({"r9": ReportDelta(addressed=3, stored=3,
                                                  expires_at=clock.now + 10)}, [], [])
    counted: list[int] = []
    cleaner = Cleaner(store, batch=2, on_deleted=counted.append, clock=clock)
    assert await cleaner.run_once() == 0
    assert await store.report("r9") is not None  # not expired yet
    clock.advance(10)
    assert await cleaner.run_once() == 3  # the events; the report is not counted as one
    assert sum(counted) == 3
    assert await store.report("r9") is None
    assert await store.report_user("r9", "a") is None


async def test_one_cleanup_round_deletes_every_expired_report_of_many_flushes(
        store: SqlEventStore, clock: FakeClock) -> None:
    """Each flush of the counts lists its reports' expiry in rows of its own: a round
    takes them all, not one row a round (the reports of a busy gateway piled up)."""
    for i in range(30):  # 30 flushes of 3 reports each
        names = [f"f{i}-{k}" for k in range(3)]
        await store.append([rev(f"u{i}", n, ttl=10) for n in names])
        await store.record_reports({n: ReportDelta(addressed=1, stored=1,
                                                   expires_at=clock.now + 10)
                                    for n in names}, [], [])
    assert await store.report("f0-0") is not None
    clock.advance(11)
    await Cleaner(store, batch=1000, clock=clock).run_once()
    left = [n for i in range(30) for k in range(3)
            if await store.report(n := f"f{i}-{k}") is not None]
    assert left == []
