"""Session directory backends, chosen by URL (``memory://``; ``redis://`` in the cluster)."""

from __future__ import annotations

from pushgate.router.directory.base import Directory


def open_directory(url: str) -> Directory:
    if url.startswith("memory://"):
        from pushgate.router.directory.memory import MemoryDirectory

        return MemoryDirectory()
    raise ValueError(f"directory_url {url!r}: unsupported scheme (use memory://)")


__all__ = ["Directory", "open_directory"]
