"""Read-state bitmaps: pure helpers around pyroaring (no I/O, no project imports).

A user's read state is a roaring bitmap of seqs (32-bit: seqs above ``MAX_SEQ`` cannot
be marked read). Stored and sent to clients in the portable roaring format
(``BitMap.serialize()``), which the Java, Go, C and JS roaring libraries read too.
"""

from __future__ import annotations

from collections.abc import Iterable

from pyroaring import BitMap

MAX_SEQ = 2**32 - 1
DEFAULT_MAX_SIZE = 1_000_000  # seqs one request may name (bounds memory and the live-seq query)


def build(
    seqs: Iterable[int],
    ranges: Iterable[tuple[int, int]],
    *,
    lo: int = 1,
    hi: int = MAX_SEQ,
    max_size: int = DEFAULT_MAX_SIZE,
) -> BitMap:
    """The set of ``seqs`` plus the inclusive ``ranges``, clipped to ``[lo, hi]``.

    Seqs outside ``[lo, hi]`` are dropped and ranges are clipped to it, so a client may
    name future or long-gone seqs. Raises ``ValueError`` when a range is inverted
    (``start > end``) or when the clipped set holds more than ``max_size`` seqs.
    """
    lo, hi = max(lo, 0), min(hi, MAX_SEQ)
    result = BitMap()
    for start, end in ranges:
        if start > end:
            raise ValueError(f"range ({start}, {end}) is inverted: start must be <= end")
        start, end = max(start, lo), min(end, hi)
        if start > end:
            continue
        if end - start + 1 > max_size:
            raise ValueError(f"range ({start}, {end}) names more than {max_size} seqs")
        result.add_range(start, end + 1)
        if len(result) > max_size:
            raise ValueError(f"ranges name more than {max_size} seqs")
    result.update(s for s in seqs if lo <= s <= hi)
    if len(result) > max_size:
        raise ValueError(f"more than {max_size} seqs requested")
    return result


def serialize(bitmap: BitMap) -> bytes:
    """Portable roaring bytes of ``bitmap`` (run-optimized in place first: same set, smaller)."""
    bitmap.run_optimize()
    return bytes(bitmap.serialize())


def deserialize(data: bytes) -> BitMap:
    """Inverse of :func:`serialize`; ``b""`` is the empty set. ``ValueError`` if corrupt."""
    if not data:
        return BitMap()
    return BitMap.deserialize(data)


def to_ranges(bitmap: BitMap) -> list[tuple[int, int]]:
    """The inclusive runs of ``bitmap``, ascending: ``{1,2,3,7}`` -> ``[(1, 3), (7, 7)]``.

    Works on whole containers (set differences with the bitmap shifted by one), so the
    cost grows with the number of runs, not with the number of seqs.
    """
    starts = bitmap - bitmap.shift(1)  # x with x-1 absent
    ends = bitmap - bitmap.shift(-1)  # x with x+1 absent
    return list(zip(starts, ends, strict=True))
