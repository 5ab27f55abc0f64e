"""Request bodies of the HTTP API: one description for validation and OpenAPI (pure).

``pushgate.hub.openapi`` generates the request schemas of ``/openapi.json`` from these
models, and tests compare the served document with them. Fixed limits are constants
here (and schema keywords); limits from settings (``max_users_per_send``,
``max_body_bytes``, ``max_event_ttl_s``) come from the validation context (:func:`parse`
with ``limits``) and are named in descriptions.

The models validate open-connection (native and Pushca), devices and read marks over
HTTP. The send (HTTP, websocket ``send`` frame, gRPC ``Send``) stays hand-written —
``pushgate.router.requests.parse_send``, half the cost of a typical send through a model
(docs/design-notes.md §11) — as do ``from_pushca`` and the websocket frames'
``parse_read`` / ``parse_device``; differential tests hold each to its model.

Errors: :func:`validation_error` maps the first pydantic error to
:class:`~pushgate.errors.InvalidRequest` (or ``PayloadTooLarge``) with the ``field``
the hand-written validators report: the dotted path without list indexes (``users``,
``filter.exclude.account``, ``push.badge``, ``client.accountId``). Fields are declared
in the order those validators check them, so the first error is theirs too.
"""

from __future__ import annotations

import re
from collections.abc import Container
from typing import Annotated, Any, ClassVar, Literal, Protocol, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import CoreSchema, PydanticCustomError, to_json

from pushgate.errors import InvalidRequest, PayloadTooLarge

MAX_ID_LEN = 255
MAX_ACK_TIMEOUT_MS = 60_000
MAX_READ_ITEMS = 10_000
MAX_PUSH_STR = 2048
MAX_COLLAPSE_ID_BYTES = 64  # APNs limit
MAX_PUSH_TTL_S = 28 * 86400  # FCM's maximum
MAX_BADGE = 2**31 - 1
#: The largest seq a request may name (``after``, ``seq``, ``seqs``, ``ranges``): seqs are
#: signed 64-bit integers in the store, so anything above is refused before it gets there.
MAX_SEQ = 2**63 - 1
#: Device tokens: checked when stored (``pushgate.store.base.check_device``), stated here
#: for the schema.
MAX_DEVICE_TOKEN_LEN = 512

_NO_CONTROL = r"^[^\x00-\x1f\x7f-\x9f]*$"  # C0, DEL and C1
_ID_TEXT = "1..255 characters, no control characters."


def _not_blank(value: str) -> str:
    """All spaces is a typo, never an id (as ``auth.check_id`` says of the sends' ids): a
    token minted for one was refused at connect with 4100, which clients do not retry."""
    if value.isspace():
        raise _fail("is blank: an id needs a character other than spaces")
    return value


Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LEN, pattern=_NO_CONTROL),
               AfterValidator(_not_blank), Field(description=_ID_TEXT)]
# open-connection: an empty optional id means "not given" (workspace ``default``)
MaybeEmptyId = Annotated[str, StringConstraints(max_length=MAX_ID_LEN, pattern=_NO_CONTROL),
                         AfterValidator(_not_blank),
                         Field(description="Up to 255 characters, no control characters.")]


def _translated_id(nullable: bool, description: str) -> WithJsonSchema:
    """Schema of a Pushca send's id field: validated as a native id after the
    translation (``from_pushca`` + ``parse_send``), so errors name the native field."""
    return WithJsonSchema({"type": ["string", "null"] if nullable else "string", "minLength": 1,
                           "maxLength": MAX_ID_LEN, "pattern": _NO_CONTROL,
                           "description": description})


_PushcaDim = Annotated[Any, _translated_id(True, _ID_TEXT[:-1] + "; null or omitted = any.")]
_PushcaEventId = Annotated[Any, _translated_id(True, "Copied to the event's `id`: " + _ID_TEXT)]
_PushcaAccount = Annotated[Any, _translated_id(False, "The user: " + _ID_TEXT)]
_Unused = Annotated[Any, WithJsonSchema({"description": "Accepted and not used (any JSON "
                                                         "value)."})]
Seq = Annotated[int, Field(ge=1, le=MAX_SEQ)]
PushText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PUSH_STR)]
_JSON_TEXT = "Any JSON value (object, array, string, number, boolean or null)."


class SendLimits(Protocol):
    """The settings-dependent limits of a send (``pushgate.router.requests.Limits``)."""

    @property
    def max_body_bytes(self) -> int: ...
    @property
    def max_users(self) -> int: ...
    @property
    def default_ttl_s(self) -> int: ...
    @property
    def max_ttl_s(self) -> int: ...


#: ``push.apns.headers``: HTTP/2 field names (RFC 9113 8.2), lowercase on the wire; never
#: a connection-specific field or ``authorization`` (the provider token)
APNS_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
APNS_RESERVED_HEADERS = frozenset({"connection", "keep-alive", "proxy-connection",
                                   "transfer-encoding", "upgrade", "te", "host",
                                   "content-length", "authorization"})


def apns_header_error(name: str, value: Any, seen: Container[str]) -> str | None:
    """What is wrong with the ``push.apns.headers`` entry ``name: value`` (a sentence that
    names it), given the lowercase names before it; None when it is a valid HTTP/2 field:
    a token name (no pseudo-header: ``:path`` would send the push to another device) and
    a string or integer value without CR, LF or NUL. APNs resets a stream that breaks
    this (a push retried ``push_max_attempts`` times for nothing), or the connection."""
    if not name:
        return "'push.apns.headers' may not have an empty header name"
    field = f"push.apns.headers.{name}"
    low = name.lower()
    if not APNS_HEADER_NAME.fullmatch(low) or low in APNS_RESERVED_HEADERS:
        return (f"'{field}' may not be set: a header name is an HTTP token, not a "
                "pseudo-header (':path'), a connection header or 'authorization'")
    if low in seen:
        return f"'{field}' sets {low!r} twice (header names are case-insensitive)"
    if isinstance(value, bool) or not isinstance(value, str | int) \
            or any(c in str(value) for c in "\r\n\0"):
        return f"'{field}' must be a string or an integer, without CR, LF or NUL"
    return None


def _fail(message: str, field: str = "", *, sentence: bool = False,
          kind: str = "invalid") -> PydanticCustomError:
    """An error of ``field``, relative to the object being validated ("" = the object).
    ``message`` is a predicate ("must be ...") or a ``sentence`` that names the fields."""
    return PydanticCustomError(kind, message, {"field": field, "sentence": sentence})


def _limits(info: ValidationInfo) -> SendLimits | None:
    return info.context.get("limits") if isinstance(info.context, dict) else None


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _omittable(**kwargs: Any) -> Any:
    """A field that may be omitted but not null (the attribute is None when omitted)."""
    return Field(None, json_schema_extra=_no_default, **kwargs)


class _Body(BaseModel):
    """A JSON object; unknown keys rejected (naming the first, sorted) unless
    ``extra="ignore"``."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    _not_object_field: ClassVar[str] = ""  # field named when the input is not an object
    _unknown_names_object: ClassVar[bool] = False  # an unknown key names the object

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            raise _fail("must be a JSON object", cls._not_object_field)
        if cls.model_config.get("extra") == "forbid":
            unknown = sorted(set(data) - set(cls.model_fields))
            if unknown:
                raise _fail(f"has unknown field(s) {unknown}",
                            "" if cls._unknown_names_object else unknown[0])
        return cls._before(data, info)

    @classmethod
    def _before(cls, data: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Checks that precede the fields' (cross-field rules on the raw object)."""
        return data


# --- native send --------------------------------------------------------------------------


class ClientRef(_Body):
    """A (partial) client address; omitted or null = any."""

    _unknown_names_object = True

    workspace: Id | None = None
    account: Id | None = None
    device: Id | None = None
    application: Id | None = None


class Filter(ClientRef):
    """Matches live sessions on the four dimensions of their token (omitted = any). A
    filter with `account` looks up that user's sessions; one without is matched against
    every session."""

    find_any: bool = Field(False, description="Deliver to exactly one matching session, "
                                              "round-robin across calls.")
    exclude: list[ClientRef] | None = Field(None, description=(
        "Sessions matching any entry (that names at least one dimension) are skipped."))


class ApnsOverride(_Body):
    """Merged over the APNs request."""

    headers: dict[str, Any] = _omittable(
        description="APNs request headers: HTTP token names (sent in lowercase; no "
                    "pseudo-header, connection header or authorization), string or "
                    "integer values without CR, LF or NUL.")
    payload: dict[str, Any] = _omittable(description="Merged over the APNs JSON payload.")

    @field_validator("headers")
    @classmethod
    def _http2_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        seen: set[str] = set()
        for name, v in value.items():
            problem = apns_header_error(name, v, seen)
            if problem:
                raise _fail(problem, name, sentence=True)
            seen.add(name.lower())
        return value


class Push(_Body):
    """Offline push through APNs/FCM for users no live session reached
    (docs/offline-push.md). Needs a stored send (`users`, ttl > 0) and at least one of
    title, body, data, content_available."""

    title: PushText | None = None
    subtitle: PushText | None = Field(None, description="APNs only.")
    body: PushText | None = None
    sound: PushText | None = None
    collapse_id: PushText | None = Field(None, description=(
        f"At most {MAX_COLLAPSE_ID_BYTES} bytes (UTF-8); default `pushgate-<seq>`. APNs "
        "`apns-collapse-id`, FCM `android.collapse_key`."))
    app: Id | None = Field(None, description="Only devices of this app: " + _ID_TEXT)
    category: PushText | None = None
    thread_id: PushText | None = None
    content_available: bool | None = Field(None, description="Background (silent) push.")
    mutable_content: bool | None = None
    data: dict[str, Any] | None = Field(None, description=(
        "Custom keys: top level of the APNs payload (not `aps`); FCM `data` (non-strings "
        "JSON-encoded)."))
    apns: ApnsOverride | None = None
    android: dict[str, Any] | None = Field(None, description="Merged over FCM "
                                                             "`message.android`.")
    webpush: dict[str, Any] | None = Field(None, description="FCM `message.webpush`.")
    badge: Annotated[int, Field(ge=0, le=MAX_BADGE)] | None = None
    priority: Literal["high", "normal"] | None = Field(None, description="Default `high`.")
    ttl: Annotated[int, Field(ge=0, le=MAX_PUSH_TTL_S)] | None = Field(None, description=(
        "Seconds the provider keeps it for an offline device (APNs `apns-expiration`, FCM "
        "`android.ttl`); 0 = now or never."))

    @field_validator("collapse_id")
    @classmethod
    def _collapse_id_bytes(cls, value: str | None) -> str | None:
        if value is not None and len(value.encode()) > MAX_COLLAPSE_ID_BYTES:
            raise _fail(f"must be at most {MAX_COLLAPSE_ID_BYTES} bytes")
        return value

    @field_validator("data")
    @classmethod
    def _no_aps(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and "aps" in value:
            raise _fail("may not use the key 'aps' (reserved by APNs)")
        return value

    @model_validator(mode="after")
    def _has_content(self) -> Push:
        if not (self.title or self.body or self.data or self.content_available):
            raise _fail("needs a title, a body, data or content_available", "title")
        return self


class SendRequest(_Body):
    """A send (`POST /v1/notifications`, the websocket `send` frame, gRPC `Send`).
    Exactly one of `users` / `filter`."""

    # exactly one of the two is given and not null
    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"required": ["users"], "properties": {"users": {"type": "array"}}},
        {"required": ["filter"], "properties": {"filter": {"type": "object"}}}]})

    body: Annotated[Any, Field(description=(
        "The payload, any JSON; at most `max_body_bytes` (default 65536) encoded."))]
    users: Annotated[list[Id], Field(min_length=1)] | None = Field(None, description=(
        "Recipients (duplicates are merged); at most `max_users_per_send` (default 10000)."))
    filter: Filter | None = None
    ttl: int = _omittable(ge=0, description=(
        "Seconds to keep the event; 0 = transient (never stored). Default `event_ttl_s` "
        "(2592000) for `users`; at most `max_event_ttl_s` (31536000). Forced to 0 for "
        "`filter`."))
    id: Id | None = Field(None, description=(
        "Idempotency key: the same id sent again to a user stores nothing and returns the "
        "first seq with `duplicate: true`."))
    push: Push | None = None
    device: Id | None = Field(None, description=(
        "With `users`: deliver only to sessions of this device (the event is stored for the "
        "user anyway)."))
    ack: bool = Field(False, description="Wait for a client ack: needs exactly one user and "
                                         "ttl > 0.")
    ack_timeout_ms: Annotated[int, Field(ge=1, le=MAX_ACK_TIMEOUT_MS)] | None = Field(
        None, description="Ack wait; default `ack_timeout_ms` setting (5000).")

    @classmethod
    def _before(cls, data: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if "body" not in data:
            raise _fail("is required", "body")
        limits = _limits(info)
        if limits is not None:
            size = len(to_json(data["body"]))
            if size > limits.max_body_bytes:
                raise _fail(f"is {size} bytes; the limit is {limits.max_body_bytes}", "body",
                            kind="payload_too_large")
        if (data.get("users") is None) == (data.get("filter") is None):
            raise _fail("give exactly one of 'users' or 'filter'", "users", sentence=True)
        return data

    @field_validator("users")
    @classmethod
    def _users_limit(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        limits = _limits(info)
        if value is not None and limits is not None and len(value) > limits.max_users:
            raise _fail(f"has {len(value)} entries; the limit is {limits.max_users}")
        return value

    @field_validator("ttl")
    @classmethod
    def _ttl_limit(cls, value: int, info: ValidationInfo) -> int:
        limits = _limits(info)
        if limits is not None and value > limits.max_ttl_s:
            raise _fail(f"must be <= {limits.max_ttl_s}")
        return value

    @model_validator(mode="after")
    def _combination(self, info: ValidationInfo) -> SendRequest:
        users = dict.fromkeys(self.users or ())
        if self.ack and self.filter is not None:
            raise _fail("'ack' goes with a send to one of 'users', not a filter send", "ack",
                        sentence=True)
        if self.ack and len(users) != 1:
            raise _fail("must hold exactly one user in a send with 'ack' (and 'device' may "
                        "narrow it to one device)", "users")
        limits = _limits(info)
        ttl = self.ttl if "ttl" in self.model_fields_set else (
            limits.default_ttl_s if limits is not None else 1)
        if self.push is not None and (self.filter is not None or ttl == 0):
            raise _fail("'push' goes with a stored send ('users' and ttl > 0)", "push",
                        sentence=True)
        if self.device is not None and not users:
            raise _fail("'device' goes with 'users'; use filter.device in a filter send",
                        "device", sentence=True)
        return self


# --- identity, devices, read marks ---------------------------------------------------------


class OpenConnectionRequest(_Body):
    """An identity to mint a client token for."""

    user: Id = Field(description="User / account id (`sub`).")
    workspace: MaybeEmptyId | None = Field(None, description="Workspace (`ws`); empty, null "
                                                             "or omitted: `default`.")
    device: MaybeEmptyId | None = Field(None, description="Device id (`dev`).")
    application: MaybeEmptyId | None = Field(None, description="Application id (`app`).")


class DeviceBody(_Body):
    """A push token of an app install."""

    platform: Literal["apns", "fcm"]
    # the store's checks (400 naming the field) are stated in the schema, not repeated here
    token: Annotated[str, StringConstraints(min_length=1)] = Field(
        description="The provider's device token.", json_schema_extra={
            "maxLength": MAX_DEVICE_TOKEN_LEN, "pattern": "^[ -~]*$"})
    app: Id | None = Field(None, description=(
        "Application id; default: the client token's `app` claim (`POST /v1/devices`), "
        "else `default`. " + _ID_TEXT))


def _ordered(value: list[int]) -> list[int]:
    if value[0] > value[1]:
        raise _fail(f"has a range {value} with first > last")
    return value


SeqRange = Annotated[list[Seq], Field(min_length=2, max_length=2,
                                      description="[first, last], inclusive, first <= last."),
                     AfterValidator(_ordered)]


class ReadRequest(_Body):
    """Seqs to mark read: at least one of `seqs` / `ranges` non-empty, at most 10000 items
    together. Other fields are ignored."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"anyOf": [
        {"required": ["seqs"], "properties": {"seqs": {"minItems": 1}}},
        {"required": ["ranges"], "properties": {"ranges": {"minItems": 1}}}]})

    seqs: list[Seq] = Field([], max_length=MAX_READ_ITEMS)
    ranges: list[SeqRange] = Field([], max_length=MAX_READ_ITEMS)

    @classmethod
    def _before(cls, data: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # parse_read's order: both containers, then their sizes, then the items
        seqs, ranges = data.get("seqs", []), data.get("ranges", [])
        if not isinstance(seqs, list):
            raise _fail("must be a list of integers", "seqs")
        if not isinstance(ranges, list):
            raise _fail("must be a list of [first, last] pairs", "ranges")
        if not seqs and not ranges:
            raise _fail("give 'seqs' and/or 'ranges'", "seqs", sentence=True)
        if len(seqs) + len(ranges) > MAX_READ_ITEMS:
            raise _fail(f"'seqs' and 'ranges' hold at most {MAX_READ_ITEMS} items together",
                        "seqs", sentence=True)
        return data


# --- Pushca-compatible aliases -------------------------------------------------------------


class PushcaClient(_Body):
    """Pushca client address of `/open-connection` (`findAny` / `exclude` are tolerated
    and ignored)."""

    _unknown_names_object = True

    accountId: Id = Field(description="The user (`sub`).")
    workSpaceId: MaybeEmptyId | None = Field(None, description="Workspace; default "
                                                               "`default`.")
    deviceId: MaybeEmptyId | None = None
    applicationId: MaybeEmptyId | None = None
    findAny: Any = None
    exclude: Any = None


class PushcaOpenConnectionRequest(_Body):
    """`client.accountId` → `user`, `workSpaceId` → `workspace`, `deviceId` → `device`,
    `applicationId` → `application`. Other top-level fields are ignored."""

    model_config = ConfigDict(extra="ignore")
    _not_object_field = "client"

    client: PushcaClient


class PushcaRef(_Body):
    """A Pushca (partial) client address: `workSpaceId`, `accountId`, `deviceId`,
    `applicationId` → `workspace`, `account`, `device`, `application` (validated as
    native ids, errors name the native field); `findAny` / `exclude` are tolerated and
    ignored."""

    _unknown_names_object = True

    workSpaceId: _PushcaDim = None
    accountId: _PushcaDim = None
    deviceId: _PushcaDim = None
    applicationId: _PushcaDim = None
    findAny: Any = None
    exclude: Any = None

    def native(self) -> dict[str, Any]:
        """The native address; null dimensions left out."""
        dims = {"workspace": self.workSpaceId, "account": self.accountId,
                "device": self.deviceId, "application": self.applicationId}
        return {k: v for k, v in dims.items() if v is not None}


class PushcaAckClient(PushcaRef):
    """The one user (and optionally device) of a send with acknowledge;
    `workSpaceId` and `applicationId` are accepted and not used."""

    workSpaceId: _Unused = None
    accountId: _PushcaAccount
    applicationId: _Unused = None

    @model_validator(mode="after")
    def _has_account(self) -> PushcaAckClient:
        if not self.accountId:
            raise _fail("is required", "accountId")
        return self


class PushcaFilter(PushcaRef):
    """A Pushca filter: the native `filter` in camelCase."""

    findAny: bool | None = Field(None, description="`find_any`.")
    exclude: list[PushcaRef] | None = None

    def native(self) -> dict[str, Any]:
        return {**super().native(), "find_any": bool(self.findAny),
                "exclude": [x.native() for x in self.exclude or ()]}


class PushcaSendRequest(_Body):
    """`/send-notification`: a transient filter send. `message` → `body`, `id` → `id`,
    `filter` → `filter`. Other top-level fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    id: _PushcaEventId = None
    message: Annotated[Any, Field(description="The body (usually a string). " + _JSON_TEXT)]
    filter: PushcaFilter

    def native(self) -> dict[str, Any]:
        """The native send body (what ``from_pushca`` returns)."""
        out: dict[str, Any] = {"body": self.message}
        if self.id is not None:
            out["id"] = self.id
        out["filter"] = self.filter.native()
        return out


class PushcaSendAckRequest(_Body):
    """`/send-notification-with-acknowledge`: a stored send with ack to one user
    (`client.accountId`), to one device when `client.deviceId` is given. Other top-level
    fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    id: _PushcaEventId = None
    message: Annotated[Any, Field(description="The body. " + _JSON_TEXT)]
    client: PushcaAckClient

    def native(self) -> dict[str, Any]:
        """The native send body (what ``from_pushca`` returns)."""
        out: dict[str, Any] = {"body": self.message}
        if self.id is not None:
            out["id"] = self.id
        out["users"] = [self.client.accountId]
        if self.client.deviceId:
            out["device"] = self.client.deviceId
        out["ack"] = True
        return out


#: Every request body, as served in ``/openapi.json`` (``components.schemas``).
REQUEST_MODELS: tuple[type[_Body], ...] = (
    SendRequest, OpenConnectionRequest, DeviceBody, ReadRequest,
    PushcaOpenConnectionRequest, PushcaSendRequest, PushcaSendAckRequest,
)


class SchemaGenerator(GenerateJsonSchema):
    """JSON Schema of the models without per-property titles (the name says it)."""

    def field_title_should_be_set(self, schema: CoreSchema) -> bool:
        return False


# --- errors ----------------------------------------------------------------------------------

_PREDICATES = {"missing": "is required", "string_pattern_mismatch": "contains control characters"}

M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], obj: Any, limits: SendLimits | None = None) -> M:
    """Validate ``obj`` (decoded JSON) as ``model``; raise :func:`validation_error`'s error."""
    try:
        return model.model_validate(obj, context={"limits": limits})
    except ValidationError as e:
        raise validation_error(e) from None


def validation_error(e: ValidationError) -> InvalidRequest:
    """The first error of ``e`` as :class:`InvalidRequest` (``PayloadTooLarge`` for an
    oversized body); ``field`` is the dotted path, "body" for the request itself."""
    err = e.errors(include_url=False)[0]
    path = [part for part in err["loc"] if isinstance(part, str)]
    ctx = err.get("ctx") or {}
    relative = ctx.get("field")
    if relative:
        path.append(relative)
    field = ".".join(path) or "body"
    text = _PREDICATES.get(err["type"]) or err["msg"]
    if text.split(" ", 1)[0] in ("Input", "String", "List"):  # "Input should be ..."
        text = text.split(" ", 1)[1]
    message = text if ctx.get("sentence") else f"'{field}' {text}"
    if err["type"] == "payload_too_large":
        return PayloadTooLarge(message, field=field)
    return InvalidRequest(message, field=field)
