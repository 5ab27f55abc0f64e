"""A private ``mariadbd`` for the store benchmark (S8): own datadir, port and socket under
a temporary directory, never the shared server; stopped and removed at the end.

Server settings are the production-like ones documented in docs/storage.md: a buffer
pool that holds the benchmark's data (2 GiB), a 512 MiB redo log, no binary log.
``flush_log_at_trx_commit``: 1 (default, every commit is fsynced: durable against a
power loss) or 2 (the redo log is written at commit and fsynced once a second: a
server crash loses nothing, an OS crash or power loss may lose the last second of
commits). Which one the figures used is part of the report.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from deploy.local import mariadb


class PrivateMariaDB(mariadb.PrivateMariaDB):
    """:class:`deploy.local.mariadb.PrivateMariaDB` with the benchmark's settings, in a
    temporary directory of its own (removed by :meth:`stop`)."""

    def __init__(self, *, buffer_pool: str = "2G", log_file_size: str = "512M",
                 flush_log_at_trx_commit: int = 1, core: int | None = None) -> None:
        super().__init__(Path(tempfile.mkdtemp(prefix="pg-s8-")), [
            f"--innodb-buffer-pool-size={buffer_pool}", f"--innodb-log-file-size={log_file_size}",
            f"--innodb-flush-log-at-trx-commit={flush_log_at_trx_commit}",
            "--max-connections=500"], core=core)

    def start(self, timeout: float = 120.0) -> None:
        try:
            self.install()
            super().start(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 60.0) -> None:
        super().stop(timeout)
        shutil.rmtree(self.base, ignore_errors=True)
