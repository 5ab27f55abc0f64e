"""Conversions between the gRPC messages (``pushgate.rpc``) and the routing core's types.

Requests from the wire go through the same validation as the HTTP API
(:func:`pushgate.router.requests.parse_send`), so a business server calling a router
directly gets the same rules and the same error codes as one calling a hub.
Errors travel as a serialized :class:`pb.Error` in the ``pushgate-error-bin`` trailer.
"""

from __future__ import annotations

from typing import Any

import orjson

from pushgate import errors
from pushgate.errors import InvalidRequest, PayloadTooLarge, PushgateError
from pushgate.protocol import public_id
from pushgate.router.base import SendResult, UserResult
from pushgate.router.directory.quota import SessionInfo
from pushgate.router.requests import Limits, SendRequest
from pushgate.router.routing import ClientRef, Filter
from pushgate.rpc import pushgate_pb2 as pb
from pushgate.store.base import Device, Event, ReadState, Report, ReportUser

ERROR_TRAILER = "pushgate-error-bin"
#: the metadata key a hub's Gateway calls carry (its id): their errors are the hub's to
#: count (``pushgate_errors_total``), as it answers its client with them
HUB_METADATA = "x-pushgate-hub"

# -- sessions -------------------------------------------------------------------------------


def session_to_pb(s: SessionInfo) -> pb.Session:
    return pb.Session(session_id=s.session_id, user=s.user, hub=s.hub,
                      connected_at=s.connected_at, workspace=s.workspace, device=s.device,
                      application=s.application)


def session_from_pb(m: pb.Session) -> SessionInfo:
    return SessionInfo(m.session_id, m.user, m.hub, m.connected_at, m.workspace, m.device,
                       m.application)


# -- filters --------------------------------------------------------------------------------


def _ref_to_pb(r: ClientRef) -> pb.ClientRef:
    out = pb.ClientRef()
    for name in ("workspace", "account", "device", "application"):
        value = getattr(r, name)
        if value is not None:
            setattr(out, name, value)
    return out


def _ref_to_dict(m: pb.ClientRef) -> dict[str, Any]:
    return {name: getattr(m, name) for name in ("workspace", "account", "device", "application")
            if m.HasField(name)}


def _ref_from_pb(m: pb.ClientRef) -> ClientRef:
    return ClientRef(**_ref_to_dict(m))


def filter_to_pb(f: Filter) -> pb.Filter:
    return pb.Filter(target=_ref_to_pb(f.target), find_any=f.find_any,
                     exclude=[_ref_to_pb(x) for x in f.exclude])


def filter_from_pb(m: pb.Filter) -> Filter:
    """For filters the router itself built (HubLink broadcasts): no validation."""
    return Filter(_ref_from_pb(m.target), m.find_any, tuple(_ref_from_pb(x) for x in m.exclude))


# -- sends ----------------------------------------------------------------------------------


def send_to_pb(req: SendRequest, tag: int = 0) -> pb.SendRequest:
    out = pb.SendRequest(users=req.users, body=req.body, ttl_s=req.ttl_s, ack=req.ack,
                         ack_timeout_ms=req.ack_timeout_ms, tag=tag)
    if req.filter is not None:
        out.filter.CopyFrom(filter_to_pb(req.filter))
    if req.id is not None:
        out.id = req.id
    if req.device is not None:
        out.device = req.device
    if req.push is not None:
        out.push = orjson.dumps(req.push)
    return out


def _json(raw: bytes, field: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(f"'{field}' must be UTF-8 JSON", field=field) from None


def send_to_dict(m: pb.SendRequest) -> dict[str, Any]:
    """The HTTP-shaped body of a wire send, for :func:`parse_send` to validate. Empty
    ``body`` bytes are no body at all ('body' is required); JSON null is ``b"null"``."""
    out: dict[str, Any] = {"body": _json(m.body, "body")} if m.body else {}
    if m.users:
        out["users"] = list(m.users)
    if m.HasField("filter"):
        flt: dict[str, Any] = _ref_to_dict(m.filter.target)
        flt["find_any"] = m.filter.find_any
        flt["exclude"] = [_ref_to_dict(x) for x in m.filter.exclude]
        out["filter"] = flt
    if m.HasField("ttl_s"):
        out["ttl"] = m.ttl_s
    if m.HasField("id"):
        out["id"] = m.id
    if m.HasField("device"):
        out["device"] = m.device
    if m.push:
        out["push"] = _json(m.push, "push")
    if m.ack:
        out["ack"] = True
    if m.HasField("ack_timeout_ms"):
        out["ack_timeout_ms"] = m.ack_timeout_ms
    return out


def send_from_hub(m: pb.SendRequest, limits: Limits) -> SendRequest:
    """A send a hub batched on its HubLink: the hub validated it with :func:`parse_send`
    already (and hubs authenticate with an API key), so only the limits that protect the
    router are checked again; the body is not parsed a second time."""
    if len(m.body) > limits.max_body_bytes:
        raise PayloadTooLarge(f"'body' is {len(m.body)} bytes; the limit is "
                              f"{limits.max_body_bytes}", field="body")
    if len(m.users) > limits.max_users:
        raise InvalidRequest(f"'users' has {len(m.users)} entries; the limit is "
                             f"{limits.max_users}", field="users")
    if bool(m.users) == m.HasField("filter"):
        raise InvalidRequest("give exactly one of 'users' or 'filter'", field="users")
    return SendRequest(
        body=m.body, users=tuple(m.users),
        filter=filter_from_pb(m.filter) if m.HasField("filter") else None,
        ttl_s=m.ttl_s if m.users else 0, id=m.id if m.HasField("id") else None,
        device=m.device if m.HasField("device") else None,
        push=_json(m.push, "push") if m.push else None, ack=m.ack,
        ack_timeout_ms=m.ack_timeout_ms)


def result_to_pb(r: SendResult, tag: int = 0) -> pb.SendReply:
    out = pb.SendReply(sessions=r.sessions, tag=tag, report=r.report or "")
    for u in r.results:
        item = out.results.add(user=u.user, sessions=u.sessions, duplicate=u.duplicate)
        if u.seq is not None:
            item.seq = u.seq
        if u.acked_by is not None:
            item.acked_by = u.acked_by
        if u.push is not None:
            item.push = u.push
    return out


def result_from_pb(m: pb.SendReply) -> SendResult:
    return SendResult(
        [UserResult(u.user, u.seq if u.HasField("seq") else None, u.sessions, u.duplicate,
                    u.acked_by if u.HasField("acked_by") else None,
                    u.push if u.HasField("push") else None) for u in m.results],
        m.sessions, m.report or None)


def report_to_pb(r: Report) -> pb.Report:
    return pb.Report(report=r.report, created_at=r.created_at, updated_at=r.updated_at,
                     expires_at=r.expires_at, addressed=r.addressed, stored=r.stored,
                     duplicates=r.duplicates, delivered=r.delivered, acked=r.acked,
                     pushed=r.pushed, push_failed=r.push_failed, read=r.read,
                     failed_by_reason=r.failed_by_reason)


def report_from_pb(m: pb.Report) -> Report:
    return Report(m.report, m.created_at, m.updated_at, m.expires_at, m.addressed, m.stored,
                  m.duplicates, m.delivered, m.acked, m.pushed, m.push_failed, m.read,
                  dict(m.failed_by_reason))


def report_user_to_pb(u: ReportUser) -> pb.ReportUser:
    return pb.ReportUser(report=u.report, user=u.user, seq=u.seq, created_at=u.created_at,
                         expires_at=u.expires_at, delivered=u.delivered, acked=u.acked,
                         read=u.read)


def report_user_from_pb(m: pb.ReportUser) -> ReportUser:
    return ReportUser(m.report, m.user, m.seq, m.created_at, m.expires_at, m.delivered,
                      m.acked, m.read)


def device_to_pb(d: Device) -> pb.Device:
    return pb.Device(user=d.user, app=d.app, platform=d.platform, token=d.token,
                     updated_at=d.updated_at)


def device_from_pb(m: pb.Device) -> Device:
    return Device(m.user, m.app, m.platform, m.token, m.updated_at)


# -- inbox ----------------------------------------------------------------------------------


def event_to_pb(e: Event) -> pb.Event:
    out = pb.Event(seq=e.seq, body=e.body, created_at=e.created_at, expires_at=e.expires_at)
    shown = public_id(e.id)
    if shown is not None:
        out.id = shown
    return out


def event_from_pb(user: str, m: pb.Event) -> Event:
    return Event(user, m.seq, m.id if m.HasField("id") else None, m.body, m.created_at,
                 m.expires_at)


def read_state_to_pb(rs: ReadState) -> pb.ReadStateReply:
    return pb.ReadStateReply(head=rs.head, live=rs.live, unread=rs.unread, read=rs.read or b"")


def read_state_from_pb(m: pb.ReadStateReply) -> ReadState:
    return ReadState(head=m.head, live=m.live, unread=m.unread, read=m.read)


# -- errors ---------------------------------------------------------------------------------

_BY_KIND: dict[str, type[PushgateError]] = {}


def _collect(cls: type[PushgateError]) -> None:
    _BY_KIND.setdefault(cls.kind, cls)
    for sub in cls.__subclasses__():
        _collect(sub)


_collect(PushgateError)


def error_to_pb(e: PushgateError) -> pb.Error:
    return pb.Error(code=e.code, message=e.message, field=e.field or "", retryable=e.retryable,
                    extra=orjson.dumps(e.extra) if e.extra else b"", kind=e.kind)


def error_from_pb(m: pb.Error) -> PushgateError:
    cls = _BY_KIND.get(m.kind, errors.Internal)
    err = cls(m.message, field=m.field or None, code=m.code or None)
    if m.extra:
        extra = orjson.loads(m.extra)
        if isinstance(extra, dict):
            err.extra.update(extra)
    return err
