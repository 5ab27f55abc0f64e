from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClientRef(_message.Message):
    __slots__ = ("workspace", "account", "device", "application")
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    workspace: str
    account: str
    device: str
    application: str
    def __init__(self, workspace: _Optional[str] = ..., account: _Optional[str] = ..., device: _Optional[str] = ..., application: _Optional[str] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("target", "find_any", "exclude")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    FIND_ANY_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_FIELD_NUMBER: _ClassVar[int]
    target: ClientRef
    find_any: bool
    exclude: _containers.RepeatedCompositeFieldContainer[ClientRef]
    def __init__(self, target: _Optional[_Union[ClientRef, _Mapping]] = ..., find_any: _Optional[bool] = ..., exclude: _Optional[_Iterable[_Union[ClientRef, _Mapping]]] = ...) -> None: ...

class SendRequest(_message.Message):
    __slots__ = ("users", "filter", "body", "ttl_s", "id", "device", "push", "ack", "ack_timeout_ms", "tag")
    USERS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    PUSH_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    ACK_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedScalarFieldContainer[str]
    filter: Filter
    body: bytes
    ttl_s: int
    id: str
    device: str
    push: bytes
    ack: bool
    ack_timeout_ms: int
    tag: int
    def __init__(self, users: _Optional[_Iterable[str]] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., body: _Optional[bytes] = ..., ttl_s: _Optional[int] = ..., id: _Optional[str] = ..., device: _Optional[str] = ..., push: _Optional[bytes] = ..., ack: _Optional[bool] = ..., ack_timeout_ms: _Optional[int] = ..., tag: _Optional[int] = ...) -> None: ...

class UserResult(_message.Message):
    __slots__ = ("user", "seq", "sessions", "duplicate", "acked_by", "push")
    USER_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    ACKED_BY_FIELD_NUMBER: _ClassVar[int]
    PUSH_FIELD_NUMBER: _ClassVar[int]
    user: str
    seq: int
    sessions: int
    duplicate: bool
    acked_by: str
    push: str
    def __init__(self, user: _Optional[str] = ..., seq: _Optional[int] = ..., sessions: _Optional[int] = ..., duplicate: _Optional[bool] = ..., acked_by: _Optional[str] = ..., push: _Optional[str] = ...) -> None: ...

class SendReply(_message.Message):
    __slots__ = ("results", "sessions", "tag", "error", "report")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[UserResult]
    sessions: int
    tag: int
    error: Error
    report: str
    def __init__(self, results: _Optional[_Iterable[_Union[UserResult, _Mapping]]] = ..., sessions: _Optional[int] = ..., tag: _Optional[int] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., report: _Optional[str] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: str
    def __init__(self, report: _Optional[str] = ...) -> None: ...

class ListReportsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ReportUserRequest(_message.Message):
    __slots__ = ("report", "user")
    REPORT_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    report: str
    user: str
    def __init__(self, report: _Optional[str] = ..., user: _Optional[str] = ...) -> None: ...

class Report(_message.Message):
    __slots__ = ("report", "created_at", "updated_at", "expires_at", "addressed", "stored", "duplicates", "delivered", "acked", "pushed", "push_failed", "read", "failed_by_reason")
    class FailedByReasonEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    REPORT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ADDRESSED_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    PUSHED_FIELD_NUMBER: _ClassVar[int]
    PUSH_FAILED_FIELD_NUMBER: _ClassVar[int]
    READ_FIELD_NUMBER: _ClassVar[int]
    FAILED_BY_REASON_FIELD_NUMBER: _ClassVar[int]
    report: str
    created_at: float
    updated_at: float
    expires_at: float
    addressed: int
    stored: int
    duplicates: int
    delivered: int
    acked: int
    pushed: int
    push_failed: int
    read: int
    failed_by_reason: _containers.ScalarMap[str, int]
    def __init__(self, report: _Optional[str] = ..., created_at: _Optional[float] = ..., updated_at: _Optional[float] = ..., expires_at: _Optional[float] = ..., addressed: _Optional[int] = ..., stored: _Optional[int] = ..., duplicates: _Optional[int] = ..., delivered: _Optional[int] = ..., acked: _Optional[int] = ..., pushed: _Optional[int] = ..., push_failed: _Optional[int] = ..., read: _Optional[int] = ..., failed_by_reason: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ReportsReply(_message.Message):
    __slots__ = ("reports",)
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[Report]
    def __init__(self, reports: _Optional[_Iterable[_Union[Report, _Mapping]]] = ...) -> None: ...

class ReportUser(_message.Message):
    __slots__ = ("report", "user", "seq", "created_at", "expires_at", "delivered", "acked", "read")
    REPORT_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    READ_FIELD_NUMBER: _ClassVar[int]
    report: str
    user: str
    seq: int
    created_at: float
    expires_at: float
    delivered: bool
    acked: bool
    read: bool
    def __init__(self, report: _Optional[str] = ..., user: _Optional[str] = ..., seq: _Optional[int] = ..., created_at: _Optional[float] = ..., expires_at: _Optional[float] = ..., delivered: _Optional[bool] = ..., acked: _Optional[bool] = ..., read: _Optional[bool] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message", "field", "retryable", "extra", "kind")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    field: str
    retryable: bool
    extra: bytes
    kind: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., field: _Optional[str] = ..., retryable: _Optional[bool] = ..., extra: _Optional[bytes] = ..., kind: _Optional[str] = ...) -> None: ...

class UserRequest(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: str
    def __init__(self, user: _Optional[str] = ...) -> None: ...

class FetchRequest(_message.Message):
    __slots__ = ("user", "after", "limit")
    USER_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    user: str
    after: int
    limit: int
    def __init__(self, user: _Optional[str] = ..., after: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("seq", "id", "body", "created_at", "expires_at")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    seq: int
    id: str
    body: bytes
    created_at: float
    expires_at: float
    def __init__(self, seq: _Optional[int] = ..., id: _Optional[str] = ..., body: _Optional[bytes] = ..., created_at: _Optional[float] = ..., expires_at: _Optional[float] = ...) -> None: ...

class FetchReply(_message.Message):
    __slots__ = ("events", "head", "more")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    head: int
    more: bool
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., head: _Optional[int] = ..., more: _Optional[bool] = ...) -> None: ...

class Range(_message.Message):
    __slots__ = ("first", "last")
    FIRST_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    first: int
    last: int
    def __init__(self, first: _Optional[int] = ..., last: _Optional[int] = ...) -> None: ...

class MarkReadRequest(_message.Message):
    __slots__ = ("user", "seqs", "ranges")
    USER_FIELD_NUMBER: _ClassVar[int]
    SEQS_FIELD_NUMBER: _ClassVar[int]
    RANGES_FIELD_NUMBER: _ClassVar[int]
    user: str
    seqs: _containers.RepeatedScalarFieldContainer[int]
    ranges: _containers.RepeatedCompositeFieldContainer[Range]
    def __init__(self, user: _Optional[str] = ..., seqs: _Optional[_Iterable[int]] = ..., ranges: _Optional[_Iterable[_Union[Range, _Mapping]]] = ...) -> None: ...

class ReadStateReply(_message.Message):
    __slots__ = ("head", "live", "unread", "read")
    HEAD_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    UNREAD_FIELD_NUMBER: _ClassVar[int]
    READ_FIELD_NUMBER: _ClassVar[int]
    head: int
    live: int
    unread: int
    read: bytes
    def __init__(self, head: _Optional[int] = ..., live: _Optional[int] = ..., unread: _Optional[int] = ..., read: _Optional[bytes] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("session_id", "user", "hub", "connected_at", "workspace", "device", "application")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    HUB_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_AT_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    user: str
    hub: str
    connected_at: float
    workspace: str
    device: str
    application: str
    def __init__(self, session_id: _Optional[str] = ..., user: _Optional[str] = ..., hub: _Optional[str] = ..., connected_at: _Optional[float] = ..., workspace: _Optional[str] = ..., device: _Optional[str] = ..., application: _Optional[str] = ...) -> None: ...

class SessionsReply(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[Session]
    def __init__(self, sessions: _Optional[_Iterable[_Union[Session, _Mapping]]] = ...) -> None: ...

class DeviceRequest(_message.Message):
    __slots__ = ("user", "app", "platform", "token")
    USER_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    user: str
    app: str
    platform: str
    token: str
    def __init__(self, user: _Optional[str] = ..., app: _Optional[str] = ..., platform: _Optional[str] = ..., token: _Optional[str] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("user", "app", "platform", "token", "updated_at")
    USER_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    user: str
    app: str
    platform: str
    token: str
    updated_at: float
    def __init__(self, user: _Optional[str] = ..., app: _Optional[str] = ..., platform: _Optional[str] = ..., token: _Optional[str] = ..., updated_at: _Optional[float] = ...) -> None: ...

class RemoveDeviceReply(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    def __init__(self, removed: _Optional[bool] = ...) -> None: ...

class DevicesReply(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    def __init__(self, devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ...) -> None: ...

class TransportRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TransportReply(_message.Message):
    __slots__ = ("framed_port",)
    FRAMED_PORT_FIELD_NUMBER: _ClassVar[int]
    framed_port: int
    def __init__(self, framed_port: _Optional[int] = ...) -> None: ...

class HubMessage(_message.Message):
    __slots__ = ("hello", "online", "offline", "acks", "heartbeat", "broadcast_done", "sends", "left")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_FIELD_NUMBER: _ClassVar[int]
    ACKS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    BROADCAST_DONE_FIELD_NUMBER: _ClassVar[int]
    SENDS_FIELD_NUMBER: _ClassVar[int]
    LEFT_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    online: Online
    offline: Offline
    acks: Acks
    heartbeat: Heartbeat
    broadcast_done: BroadcastDone
    sends: SendBatch
    left: Left
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., online: _Optional[_Union[Online, _Mapping]] = ..., offline: _Optional[_Union[Offline, _Mapping]] = ..., acks: _Optional[_Union[Acks, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., broadcast_done: _Optional[_Union[BroadcastDone, _Mapping]] = ..., sends: _Optional[_Union[SendBatch, _Mapping]] = ..., left: _Optional[_Union[Left, _Mapping]] = ...) -> None: ...

class Left(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SendBatch(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[SendRequest]
    def __init__(self, items: _Optional[_Iterable[_Union[SendRequest, _Mapping]]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("hub_id", "sessions", "snapshot_at", "authorization", "match_only")
    HUB_ID_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_AT_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    MATCH_ONLY_FIELD_NUMBER: _ClassVar[int]
    hub_id: str
    sessions: _containers.RepeatedCompositeFieldContainer[Session]
    snapshot_at: float
    authorization: str
    match_only: bool
    def __init__(self, hub_id: _Optional[str] = ..., sessions: _Optional[_Iterable[_Union[Session, _Mapping]]] = ..., snapshot_at: _Optional[float] = ..., authorization: _Optional[str] = ..., match_only: _Optional[bool] = ...) -> None: ...

class Online(_message.Message):
    __slots__ = ("rid", "session")
    RID_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    rid: int
    session: Session
    def __init__(self, rid: _Optional[int] = ..., session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class Offline(_message.Message):
    __slots__ = ("user", "session_id")
    USER_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    user: str
    session_id: str
    def __init__(self, user: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("user", "device", "session_id", "seq")
    USER_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    user: str
    device: str
    session_id: str
    seq: int
    def __init__(self, user: _Optional[str] = ..., device: _Optional[str] = ..., session_id: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class Acks(_message.Message):
    __slots__ = ("acks",)
    ACKS_FIELD_NUMBER: _ClassVar[int]
    acks: _containers.RepeatedCompositeFieldContainer[Ack]
    def __init__(self, acks: _Optional[_Iterable[_Union[Ack, _Mapping]]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("stats",)
    STATS_FIELD_NUMBER: _ClassVar[int]
    stats: NodeStats
    def __init__(self, stats: _Optional[_Union[NodeStats, _Mapping]] = ...) -> None: ...

class BroadcastDone(_message.Message):
    __slots__ = ("rid", "sessions", "session_ids")
    RID_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    SESSION_IDS_FIELD_NUMBER: _ClassVar[int]
    rid: int
    sessions: int
    session_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, rid: _Optional[int] = ..., sessions: _Optional[int] = ..., session_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RouterMessage(_message.Message):
    __slots__ = ("deliveries", "kick", "broadcast", "online_done", "resync", "replies", "leaving", "heartbeat", "refused")
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    KICK_FIELD_NUMBER: _ClassVar[int]
    BROADCAST_FIELD_NUMBER: _ClassVar[int]
    ONLINE_DONE_FIELD_NUMBER: _ClassVar[int]
    RESYNC_FIELD_NUMBER: _ClassVar[int]
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    LEAVING_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    deliveries: Deliveries
    kick: Kick
    broadcast: Broadcast
    online_done: OnlineDone
    resync: Resync
    replies: SendReplies
    leaving: Leaving
    heartbeat: Heartbeat
    refused: Error
    def __init__(self, deliveries: _Optional[_Union[Deliveries, _Mapping]] = ..., kick: _Optional[_Union[Kick, _Mapping]] = ..., broadcast: _Optional[_Union[Broadcast, _Mapping]] = ..., online_done: _Optional[_Union[OnlineDone, _Mapping]] = ..., resync: _Optional[_Union[Resync, _Mapping]] = ..., replies: _Optional[_Union[SendReplies, _Mapping]] = ..., leaving: _Optional[_Union[Leaving, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., refused: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class Leaving(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SendReplies(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[SendReply]
    def __init__(self, items: _Optional[_Iterable[_Union[SendReply, _Mapping]]] = ...) -> None: ...

class Delivery(_message.Message):
    __slots__ = ("session_ids", "frame", "seq", "sent_at", "want_ack")
    SESSION_IDS_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    WANT_ACK_FIELD_NUMBER: _ClassVar[int]
    session_ids: _containers.RepeatedScalarFieldContainer[str]
    frame: str
    seq: int
    sent_at: float
    want_ack: bool
    def __init__(self, session_ids: _Optional[_Iterable[str]] = ..., frame: _Optional[str] = ..., seq: _Optional[int] = ..., sent_at: _Optional[float] = ..., want_ack: _Optional[bool] = ...) -> None: ...

class Deliveries(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Delivery]
    def __init__(self, items: _Optional[_Iterable[_Union[Delivery, _Mapping]]] = ...) -> None: ...

class Kick(_message.Message):
    __slots__ = ("session_id", "by")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    by: str
    def __init__(self, session_id: _Optional[str] = ..., by: _Optional[str] = ...) -> None: ...

class Broadcast(_message.Message):
    __slots__ = ("rid", "filter", "frame", "counter", "sent_at", "match_only")
    RID_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    COUNTER_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    MATCH_ONLY_FIELD_NUMBER: _ClassVar[int]
    rid: int
    filter: Filter
    frame: str
    counter: int
    sent_at: float
    match_only: bool
    def __init__(self, rid: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., frame: _Optional[str] = ..., counter: _Optional[int] = ..., sent_at: _Optional[float] = ..., match_only: _Optional[bool] = ...) -> None: ...

class OnlineDone(_message.Message):
    __slots__ = ("rid", "kicked", "error")
    RID_FIELD_NUMBER: _ClassVar[int]
    KICKED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    rid: int
    kicked: int
    error: Error
    def __init__(self, rid: _Optional[int] = ..., kicked: _Optional[int] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class Resync(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeStats(_message.Message):
    __slots__ = ("id", "kind", "version", "started_at", "stats", "age_s", "address")
    class StatsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    AGE_S_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    version: str
    started_at: float
    stats: _containers.ScalarMap[str, float]
    age_s: float
    address: str
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., version: _Optional[str] = ..., started_at: _Optional[float] = ..., stats: _Optional[_Mapping[str, float]] = ..., age_s: _Optional[float] = ..., address: _Optional[str] = ...) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("router", "hubs")
    ROUTER_FIELD_NUMBER: _ClassVar[int]
    HUBS_FIELD_NUMBER: _ClassVar[int]
    router: NodeStats
    hubs: _containers.RepeatedCompositeFieldContainer[NodeStats]
    def __init__(self, router: _Optional[_Union[NodeStats, _Mapping]] = ..., hubs: _Optional[_Iterable[_Union[NodeStats, _Mapping]]] = ...) -> None: ...
