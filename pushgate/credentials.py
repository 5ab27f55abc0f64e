"""Credentials for a laptop start (the Redis key formats are elsewhere:
``pushgate/router/directory/keys.py``): when no JWT secret / API key is configured, one is
generated once into ``<data_dir>/secrets.json`` (mode 0600) and reused by ``serve``,
``token`` and ``api-key``. Production sets ``PUSHGATE_JWT_SECRET`` / ``PUSHGATE_API_KEYS``."""

from __future__ import annotations

import json
import os

from pushgate.auth import new_secret
from pushgate.settings import Settings, SettingsError


def ensure_secrets(settings: Settings) -> tuple[Settings, bool]:
    """Return settings with generated secrets filled in, and whether a file was created."""
    need_secret = settings.jwt_secret is None and any(
        a.startswith("HS") for a in settings.jwt_algorithms)
    need_key = not settings.api_keys
    if not (need_secret or need_key):
        return settings, False
    path = settings.data_dir / "secrets.json"
    created = False
    try:
        stored = json.loads(path.read_text())
    except FileNotFoundError:
        stored = {"jwt_secret": new_secret(), "api_key": new_secret()}
        try:
            _create_atomically(path, json.dumps(stored).encode())
        except FileExistsError:  # another command created it meanwhile: use that one
            return ensure_secrets(settings)
        except OSError as e:
            raise SettingsError(f"data_dir: cannot write {path}: {e.strerror or e}") from None
        created = True
    except (OSError, ValueError) as e:
        raise SettingsError(f"data_dir: cannot read {path}: {e} (delete the file to "
                            "generate new secrets)") from None
    update: dict[str, object] = {}
    for name, wanted, setting in (("jwt_secret", need_secret, "jwt_secret"),
                                  ("api_key", need_key, "api_keys")):
        value = stored.get(name) if isinstance(stored, dict) else None
        if not wanted:
            continue
        if not isinstance(value, str) or not value:
            raise SettingsError(f"data_dir: {path} has no {name!r} string: set {setting}, or "
                                f"delete the file to generate new secrets")
        update[setting] = value if name == "jwt_secret" else [value]
    return settings.model_copy(update=update), created


def _create_atomically(path: os.PathLike[str] | str, data: bytes) -> None:
    """Create ``path`` with ``data`` (mode 0600) whole or not at all: written and synced
    under a temporary name, then linked into place (``FileExistsError`` if ``path``
    exists, like ``O_EXCL``). A full disk or a crash leaves no empty or partial file
    that every later start would refuse."""
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)
    finally:
        os.unlink(tmp)
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
