"""Ids in request paths (``/v1/users/{user}/events``, ``/v1/notifications/{report}``).

Ids may hold ``/`` (docs/http-api.md: 1-255 characters without control characters), sent
percent-encoded as ``%2F``. uvicorn decodes the whole path before routing, so such an id
spans several decoded segments: the routes match those with Starlette's ``path``
converter, and :func:`path_id` takes the id from the request target as received (the
ASGI ``raw_path``), one segment percent-decoded, so that ``a%2Fb`` is the id ``a/b``.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.exceptions import HTTPException
from starlette.requests import Request

from pushgate.auth import check_id
from pushgate.errors import InvalidRequest


def raw_segments(request: Request) -> list[bytes] | None:
    """The request target's path split at ``/`` as received (still percent-encoded), or
    ``None`` when the server gave no ``raw_path``."""
    raw = request.scope.get("raw_path")
    if raw is None:
        return None
    return bytes(raw).split(b"?", 1)[0].split(b"/")


def path_id(request: Request, name: str, index: int, count: int) -> str:
    """The id ``name``: segment ``index`` of the received path, percent-decoded (UTF-8),
    checked as an id (400 naming ``name``). A received path of another number of
    segments than the route's ``count`` is an unknown path (404 ``not_found``, as for
    any other): ``/v1/notifications/r/extra`` is not the report ``r``, and an id that
    holds ``/`` is sent as ``%2F``."""
    segments = raw_segments(request)
    if segments is None:
        return check_id(request.path_params[name], name)
    if len(segments) != count:
        raise HTTPException(404, "Not Found")
    try:
        value = unquote_to_bytes(segments[index]).decode()
    except UnicodeDecodeError:
        raise InvalidRequest(f"{name} is not UTF-8 once percent-decoded", field=name) from None
    return check_id(value, name)
