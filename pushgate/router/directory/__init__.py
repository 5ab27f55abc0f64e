"""Session directory backends, chosen by URL (``memory://``; ``redis://``,
``redis+cluster://``, ``redis+sentinel://`` in the cluster: see ``engines.py``)."""

from __future__ import annotations

from pushgate.router.directory.base import Directory, DirectoryUnavailable


def open_directory(url: str, prefix: str = "pushgate:") -> Directory:
    if url.startswith("memory://"):
        from pushgate.router.directory.memory import MemoryDirectory

        return MemoryDirectory()
    from pushgate.router.directory.engines import SCHEMES

    if url.startswith(SCHEMES):
        from pushgate.router.directory.redis import RedisDirectory

        return RedisDirectory(url, prefix)
    raise ValueError(f"directory_url {url!r}: unsupported scheme (use memory://, redis://, "
                     "redis+cluster:// or redis+sentinel://)")


__all__ = ["Directory", "DirectoryUnavailable", "open_directory"]
