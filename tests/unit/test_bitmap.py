"""pushgate.store.bitmap: pure read-state bitmap helpers."""

from __future__ import annotations

import time

import pytest
from pyroaring import BitMap

from pushgate.store import bitmap


def test_build_from_seqs_and_inclusive_ranges() -> None:
    assert set(bitmap.build([9, 1, 1], [(3, 5), (4, 6)])) == {1, 3, 4, 5, 6, 9}
    assert len(bitmap.build([], [])) == 0


def test_build_clips_to_bounds() -> None:
    built = bitmap.build([0, -3, 2, 50, 2**40], [(-5, 3), (8, 10**12)], lo=1, hi=10)
    assert set(built) == {1, 2, 3, 8, 9, 10}


def test_build_rejects_inverted_range() -> None:
    with pytest.raises(ValueError, match=r"range \(7, 3\) is inverted"):
        bitmap.build([], [(7, 3)])
    with pytest.raises(ValueError, match="inverted"):  # even when entirely out of bounds
        bitmap.build([], [(70, 30)], hi=10)


def test_build_rejects_too_many_seqs() -> None:
    with pytest.raises(ValueError, match="more than 1000000 seqs"):
        bitmap.build([], [(1, 1_000_001)])
    with pytest.raises(ValueError, match="more than 10 seqs"):
        bitmap.build([], [(1, 6), (11, 16)], max_size=10)
    with pytest.raises(ValueError, match="more than 3 seqs"):
        bitmap.build([1, 2, 3, 4], [], max_size=3)
    # a huge range is fine once clipped to what exists
    assert len(bitmap.build([], [(1, 2**32 - 1)], hi=5)) == 5


def test_serialize_roundtrip_and_empty() -> None:
    original = bitmap.build([1, 5, 2**32 - 1], [(100, 100_000)])
    data = bitmap.serialize(original)
    assert isinstance(data, bytes)
    assert bitmap.deserialize(data) == original
    assert bitmap.deserialize(b"") == BitMap()
    assert bitmap.deserialize(bitmap.serialize(BitMap())) == BitMap()


def test_serialize_is_run_optimized() -> None:
    runs = BitMap(range(1, 200_001))  # built element-wise: bitset containers
    data = bitmap.serialize(runs)
    assert len(data) < 100
    assert bitmap.deserialize(data) == BitMap(range(1, 200_001))


def test_deserialize_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        bitmap.deserialize(b"not a roaring bitmap")


def test_to_ranges() -> None:
    assert bitmap.to_ranges(BitMap()) == []
    assert bitmap.to_ranges(BitMap([0, 1, 2, 7, 9, 10, 2**32 - 1])) == [
        (0, 2),
        (7, 7),
        (9, 10),
        (2**32 - 1, 2**32 - 1),
    ]
    assert bitmap.to_ranges(bitmap.build([], [(1, 65_536), (65_537, 70_000)])) == [(1, 70_000)]


def test_to_ranges_of_huge_runs_is_fast() -> None:
    big = BitMap()
    big.add_range(1, 500_000_001)
    big.add_range(600_000_000, 900_000_000)
    big.run_optimize()
    started = time.perf_counter()
    assert bitmap.to_ranges(big) == [(1, 500_000_000), (600_000_000, 899_999_999)]
    assert time.perf_counter() - started < 1.0  # element-wise would take minutes
