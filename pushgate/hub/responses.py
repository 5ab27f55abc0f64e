"""JSON bodies the hub answers with, shared by the HTTP API and the websocket replies.

:func:`error_response` is the one place where a
:class:`~pushgate.errors.PushgateError` becomes an HTTP answer:
``{"error": {"code", "message", "field", "retryable"}}`` with the status of
:data:`pushgate.errors.KINDS` (and ``Retry-After`` on a 503); :func:`unexpected_error`
the same body for an unexpected exception (a 500).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from starlette.responses import Response

from pushgate import protocol as p
from pushgate.errors import Internal, PushgateError
from pushgate.store import bitmap
from pushgate.store.base import Device, Event, ReadState, Report, ReportUser


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def error_response(e: PushgateError) -> Response:
    body: dict[str, Any] = {"error": e.to_dict(), **e.extra}
    resp = json_response(body, e.http_status)
    if e.http_status == 503:
        resp.headers["Retry-After"] = "1"
    return resp


#: the message of the 500 for an unexpected exception (a bug: the traceback is logged)
UNEXPECTED_MESSAGE = ("unexpected server error (logged); retry (a send with the same id is "
                      "not stored twice)")


def unexpected_error() -> Response:
    """The answer to an unexpected exception: ``500 internal`` in the documented error
    body (``retryable``); the caller logs the exception and closes the connection."""
    return error_response(Internal(UNEXPECTED_MESSAGE))


def events_payload(events: Sequence[Event], head: int, more: bool) -> dict[str, Any]:
    """A fetch's answer (``GET …/events`` and the websocket ``fetch`` reply)."""
    return {"events": [p.event_dict(e.seq, e.id, e.body, e.created_at) for e in events],
            "head": head, "more": more}


def device_payload(d: Device) -> dict[str, Any]:
    return {"user": d.user, "app": d.app, "platform": d.platform, "token": d.token,
            "updated_at": d.updated_at}


def read_state_payload(rs: ReadState) -> dict[str, Any]:
    bm = bitmap.deserialize(rs.read) if rs.read else None
    ranges = bitmap.to_ranges(bm) if bm is not None else []
    return {"head": rs.head, "unread": rs.unread, "live": rs.live,
            "read": p.ranges_payload(ranges)}


def report_payload(r: Report) -> dict[str, Any]:
    """A delivery report (``GET /v1/notifications/{report}`` and the list)."""
    return {"report": r.report, "created_at": r.created_at, "updated_at": r.updated_at,
            "expires_at": r.expires_at, "addressed": r.addressed, "stored": r.stored,
            "duplicates": r.duplicates, "delivered": r.delivered, "acked": r.acked,
            "pushed": r.pushed, "push_failed": r.push_failed,
            "failed_by_reason": r.failed_by_reason, "read": r.read}


def report_user_payload(u: ReportUser) -> dict[str, Any]:
    """One user's status in a report (``GET /v1/notifications/{report}/users/{user}``)."""
    return {"report": u.report, "user": u.user, "seq": u.seq, "stored": True,
            "delivered": u.delivered, "acked": u.acked, "read": u.read,
            "created_at": u.created_at, "expires_at": u.expires_at}
