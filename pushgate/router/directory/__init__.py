"""Session directory backends, chosen by URL (``memory://``; ``redis://`` in the cluster)."""

from __future__ import annotations

from pushgate.router.directory.base import Directory, DirectoryUnavailable


def open_directory(url: str, prefix: str = "pushgate:") -> Directory:
    if url.startswith("memory://"):
        from pushgate.router.directory.memory import MemoryDirectory

        return MemoryDirectory()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from pushgate.router.directory.redis import RedisDirectory

        return RedisDirectory(url, prefix)
    raise ValueError(f"directory_url {url!r}: unsupported scheme (use memory:// or redis://)")


__all__ = ["Directory", "DirectoryUnavailable", "open_directory"]
