"""Typed settings: environment (``PUSHGATE_*``), an optional TOML file, then defaults.

Defaults run a single embedded node on a laptop. Nothing reads the environment at
import time: call :func:`load_settings`. Validation errors name the bad key.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from pushgate.auth import check_keys

ALLOWED_JWT_ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384")


class SettingsError(Exception):
    """Invalid configuration; the message names every bad key."""


class Settings(BaseSettings):
    """Every option of ``pushgate serve``. Env var = ``PUSHGATE_`` + upper-case name."""

    model_config = SettingsConfigDict(
        env_prefix="PUSHGATE_", extra="forbid", validate_default=True, env_parse_none_str="null",
        allow_inf_nan=False,  # inf as a duration: an overflow at start, or a wait for ever
    )

    # network
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8080, ge=0, le=65535, description="Port to listen on (0 = any free port).")
    http_keepalive_s: float = Field(
        75.0, gt=0, description="Idle time after which an HTTP keep-alive connection is "
        "closed; keep it above your senders' pool idle time (a sender reusing a connection "
        "the server is closing sees a reset).")
    header_timeout_s: float = Field(
        10.0, gt=0, description="A connection must send a complete HTTP request head "
        "(including a websocket upgrade) within this time of connecting or of starting the "
        "request, or it is closed (408 if nothing was answered yet).")
    max_header_bytes: int = Field(
        16384, ge=1024, description="Largest HTTP request head (request line and headers); "
        "over it: 431 and the connection is closed.")
    request_timeout_s: float = Field(
        30.0, gt=0, description="A request body must be complete within this time of its "
        "head (slow bodies get 408 and the connection is closed).")
    max_connections_per_ip: int = Field(
        1000, ge=0, description="Open TCP connections per client IP (0 = no limit); over it "
        "a new connection gets 429 and is closed. Peers in trusted_proxies are exempt.")
    connect_rate_per_ip: float = Field(
        200.0, ge=0, description="New TCP connections per second per client IP, with a burst "
        "of the same size (0 = no limit); over it: 429 and closed. trusted_proxies are exempt.")
    open_connection_rate_per_ip: float = Field(
        20.0, ge=0, description="open-connection requests per second per client IP (the "
        "X-Forwarded-For address behind trusted_proxies), burst of the same size; over it: "
        "429 rate_limited (0 = no limit).")
    public_url: str | None = Field(
        None, description="Base URL clients use to reach this gateway (ws(s)://host:port; "
        "an http(s):// one is advertised as ws(s):// of the same host); default: derived "
        "from the request.")
    data_dir: Path = Field(
        Path("pushgate-data"), description="Directory for the SQLite file and generated secrets.")

    # backends
    store_url: str | None = Field(
        None, description="Event store URL; default sqlite+aiosqlite:///<data_dir>/pushgate.db.")
    store_session_idle_timeout_s: float = Field(
        60.0, ge=0, description="MySQL: a pooled connection idle longer than this is "
        "closed instead of reused (a stopped or restarted server's dead connection is not "
        "handed out again); 0 = no limit.")
    directory_url: str = Field(
        "memory://", description="Session directory: memory:// (embedded); for cluster "
        "routers one Redis (redis://host:port/db, unix://path), Redis Cluster "
        "(redis+cluster://host:port[,host:port...]) or a Sentinel-managed primary "
        "(redis+sentinel://host:port[,host:port...]/service_name); see docs/cluster.md.")
    directory_prefix: str = Field(
        "pushgate:", description="Prefix of every Redis key the directory writes (no '{' "
        "or '}': the keys carry Redis Cluster hash tags).")

    # cluster
    routers: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="host:port of each router; set = this hub runs in "
        "cluster mode (no local store or directory).")
    router_listen: str = Field(
        "127.0.0.1:7700", description="gRPC address `pushgate router` listens on (port 0 = any).")
    router_link_listen: str | None = Field(
        None, description="Where `pushgate router` listens for HubLink's framed transport "
        "(the hub link as length-prefixed protobuf on plain TCP; hubs learn the port over "
        "gRPC and use it instead of the gRPC stream). Unset = the host of router_listen, any "
        "free port; `off` = none (hubs link over gRPC).")
    router_metrics_listen: str | None = Field(
        None, description="host:port where `pushgate router` serves Prometheus /metrics "
        "(unset = no metrics endpoint).")
    hub_heartbeat_ttl_s: float = Field(
        10.0, gt=0, description="HubLink liveness, both ways: heartbeats every ttl / 3; a "
        "hub silent this long is dropped (its sessions leave the directory), a router "
        "silent this long gets no new work from the hub.")
    gap_hold_ms: int = Field(
        100, ge=0, le=10_000, description="A stored event that reaches a connection past a "
        "gap waits this long for the missing seqs (in flight from another router), then "
        "they are fetched from the store and everything goes out in seq order.")

    # auth
    jwt_secret: str | None = Field(
        None, description="HS* secret for client tokens; generated into data_dir when unset.")
    jwt_public_key: str | None = Field(
        None, description="PEM (or path to PEM) public key for RS*/ES* client tokens.")
    jwt_private_key: str | None = Field(
        None, description="PEM (or path) private key used by open-connection with RS*/ES*.")
    jwt_algorithms: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["HS256"], description="Accepted JWT algorithms (never 'none').")
    jwt_audience: str | None = Field(None, description="Required 'aud' claim, if set.")
    jwt_issuer: str | None = Field(None, description="Required 'iss' claim, if set.")
    token_ttl_s: int = Field(1800, gt=0, description="Lifetime of tokens from open-connection.")
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Server-to-server API keys; generated when empty.")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Proxy addresses whose X-Forwarded-For/-Proto headers are trusted "
        "('*' = any); empty = proxy headers ignored (saves work per request).")
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["*"],
        description="Origins allowed to open websockets ('*' = any). Requests without an "
        "Origin header (non-browser clients) are always allowed.")
    pushca_public_open_connection: bool = Field(
        False, description="Let Pushca's POST /open-connection be called without an API key "
        "(Pushca's model: browsers call it directly), for the workspaces and applications "
        "listed below only, rate-limited per client IP, with CORS for allowed_origins. Its "
        "tokens open Pushca connections (/{jwt}) only. Anyone who can reach the server can "
        "then connect as any account of those workspaces: see docs/http-api.md.")
    pushca_public_workspaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Workspaces (workSpaceId) the keyless "
        "/open-connection accepts; required with pushca_public_open_connection.")
    pushca_public_applications: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Applications (applicationId) the keyless "
        "/open-connection accepts; required with pushca_public_open_connection.")
    pushca_public_rate_per_ip: float = Field(
        1.0, gt=0, description="Keyless /open-connection requests per second per client IP "
        "(the X-Forwarded-For address behind trusted_proxies), burst of "
        "pushca_public_burst; over it: 429 rate_limited.")
    pushca_public_burst: int = Field(
        10, ge=1, description="Burst of the keyless /open-connection rate per client IP.")

    # sessions
    max_sessions_per_user: int = Field(5, ge=1, description="Live sessions per user; the "
                                       "oldest is kicked when a new one exceeds it.")
    send_queue_size: int = Field(2048, ge=1, description="Frames buffered per session before "
                                 "it is closed as a slow consumer; half of it bounds the "
                                 "connect backlog.")
    write_deadline_s: float = Field(
        10.0, gt=0, description="A session whose socket takes no data for this long while "
        "frames wait (the client stopped reading) is closed as a slow consumer (4001).")
    close_grace_s: float = Field(
        5.0, gt=0, description="After the server's close frame, the connection is dropped if "
        "the client has not completed the close handshake within this time.")
    max_frame_bytes: int = Field(65536, ge=1024, description="Largest client frame accepted.")
    inline_event_max_bytes: int = Field(
        4096, ge=0, description="Events whose body is larger are announced by 'head' only.")
    ping_interval_s: float = Field(20.0, gt=0, description="Server websocket ping interval.")
    ping_timeout_s: float = Field(20.0, gt=0, description="Close a session whose pong is late.")
    idle_timeout_s: float = Field(
        120.0, gt=0, description="Close a session whose client sent no frame for this long "
        "(clients send 'ping' frames; dead TCP links are found by ws pings sooner).")
    allow_client_send: bool = Field(
        True, description="Let clients send to other users through their websocket.")
    client_send_rate_per_user: float = Field(
        0.0, ge=0, description="Sends per second one user's websocket sessions may make on a "
        "hub (native and Pushca), with a burst of twice that; over it a send is answered "
        "rate_limited (retryable) and not sent. 0 = no limit.")
    ack_timeout_ms: int = Field(5000, gt=0, le=60000, description="Wait for a client ack in send-with-ack.")
    fetch_max_limit: int = Field(1000, ge=1, description="Largest 'limit' of a fetch.")
    fetch_max_bytes: int = Field(
        1048576, ge=1024, description="Event bytes per fetch reply (at least one event is "
        "always returned); 'more' tells the client to fetch again.")

    # events
    max_body_bytes: int = Field(65536, ge=16, description="Largest event body (JSON bytes).")
    max_request_bytes: int = Field(
        1048576, ge=1024, description="Largest HTTP request body; larger gets 413.")
    max_users_per_send: int = Field(10000, ge=1, description="Largest 'users' list of one send.")
    event_ttl_s: int = Field(30 * 86400, gt=0, description="Default event TTL (seconds); at "
                             "most max_event_ttl_s.")
    max_event_ttl_s: int = Field(365 * 86400, gt=0, le=100 * 365 * 86400,
                                 description="Largest TTL a sender may set.")
    report_flush_interval_s: float = Field(
        0.5, gt=0, le=60, description="Delivery reports: each process writes its counts "
        "(sends, deliveries, acks, pushes) to the store at most this often, in one "
        "transaction; a report lags by up to this long.")
    cleanup_interval_s: float = Field(60.0, gt=0, description="Expired-event cleanup period.")
    cleanup_batch: int = Field(1000, ge=1, description="Events deleted per cleanup transaction.")
    cleanup_duty: float = Field(
        0.25, gt=0, le=1, description="Share of a cleanup round spent in delete transactions "
        "(after a batch of t s the cleaner pauses t*(1-duty)/duty): keeps sends fast while a "
        "large backlog expires; 1 = no pause.")
    cleanup_lease_ttl_s: float | None = Field(
        None, gt=0, description="Lease that lets one gateway/router of those sharing a MySQL "
        "store clean at a time (on SQLite there is none); a dead holder is replaced after "
        "it. Default: max(30, 3 x cleanup_interval_s).")
    commit_max_batch: int = Field(1000, ge=1, description="Events per group commit.")
    commit_linger_ms: float = Field(
        1.0, ge=0, description="Before a group commit smaller than commit_max_batch, wait "
        "this long for more sends to join (fewer, larger transactions at a steady rate of "
        "single sends; 0 = commit at once).")
    commit_max_pending: int = Field(
        100000, ge=1, description="Queued events before sends are refused with 503.")

    # offline push (APNs / FCM); see docs/offline-push.md
    apns_key_file: str | None = Field(
        None, description="APNs auth key (.p8) from the Apple developer account; set = "
        "pushes to iOS devices.")
    apns_key_id: str | None = Field(None, description="Key ID of apns_key_file (10 characters).")
    apns_team_id: str | None = Field(None, description="Apple developer Team ID (10 characters).")
    apns_topic: str | None = Field(None, description="APNs topic: the iOS app's bundle id.")
    apns_url: str = Field(
        "https://api.push.apple.com", description="APNs server (sandbox: "
        "https://api.sandbox.push.apple.com; the local fake: its https URL).")
    fcm_service_account_file: str | None = Field(
        None, description="Firebase service-account key (JSON); set = pushes to Android "
        "devices through FCM HTTP v1.")
    fcm_project_id: str | None = Field(
        None, description="Firebase project id; default: the service-account key's.")
    fcm_url: str = Field("https://fcm.googleapis.com", description="FCM server.")
    push_ca_file: str | None = Field(
        None, description="CA file to verify APNs/FCM with instead of the system CAs (e.g. "
        "the local fakes' certificate).")
    push_enabled: bool | None = Field(
        None, description="Queue pushes of sends with a 'push' block; default: when a "
        "provider is configured (set it on gateways/routers whose bridge runs as separate "
        "`pushgate bridge` processes).")
    push_worker: bool = Field(
        True, description="Run the bridge worker in this process when a provider is "
        "configured.")
    push_ack_window_ms: int = Field(
        0, ge=0, description="Also push to a user who was online when no client acked the "
        "event within this window; 0 = push only users with no live session.")
    push_batch: int = Field(1000, ge=1, description="Pushes one bridge pipeline claims at once.")
    push_pipelines: int = Field(2, ge=1, description="Batches a bridge worker works on at once.")
    push_concurrency: int = Field(
        400, ge=1, description="Requests in flight per provider per bridge worker.")
    push_rate_per_app: float = Field(
        0.0, ge=0, description="Pushes per second per app (token bucket); 0 = unlimited.")
    push_max_attempts: int = Field(8, ge=1, description="Attempts per device before a push "
                                   "is dropped.")
    push_retry_base_s: float = Field(1.0, gt=0, description="First retry delay (doubles, with "
                                     "jitter) when the provider gives no Retry-After.")
    push_retry_max_s: float = Field(300.0, gt=0, description="Longest retry delay.")
    push_lease_s: float = Field(
        60.0, gt=0, description="A claimed push whose worker died is sent again after this.")

    # operations
    admin_key: str | None = Field(
        None, description="Key of the live admin dashboard at /admin (separate from the API "
        "keys, at least 16 characters); unset = no dashboard (/admin answers 404).")
    admin_session_ttl_s: int = Field(
        3600, ge=60, description="Lifetime of an admin dashboard login (its cookie).")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info")
    log_format: Literal["console", "json"] = Field("console", description="Log line format.")
    shutdown_grace_s: float = Field(10.0, ge=0, description="Drain time on SIGTERM.")
    gc_freeze_interval_s: float = Field(
        10.0, ge=0, description="Freeze long-lived objects out of the cyclic GC this often, "
        "after collecting what is not frozen yet (one full collection every 90 periods); "
        "0 = CPython defaults.")

    @field_validator("jwt_algorithms", "api_keys", "allowed_origins", "trusted_proxies",
                     "routers", "pushca_public_workspaces", "pushca_public_applications",
                     mode="before")
    @classmethod
    def _split_lists(cls, v: Any) -> Any:
        """Lists come as TOML arrays, JSON arrays or comma-separated strings (env, flags)."""
        if isinstance(v, str):
            text = v.strip()
            if text.startswith("["):
                import json

                try:
                    return json.loads(text)
                except ValueError:
                    raise ValueError("is not a valid JSON list") from None
            return [item.strip() for item in text.split(",") if item.strip()]
        return v

    @field_validator("jwt_algorithms")
    @classmethod
    def _check_algorithms(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("must list at least one algorithm")
        for alg in v:
            if alg not in ALLOWED_JWT_ALGORITHMS:
                raise ValueError(f"{alg!r} is not allowed; choose from {', '.join(ALLOWED_JWT_ALGORITHMS)}")
        return v

    @field_validator("router_link_listen")
    @classmethod
    def _check_link_listen(cls, v: str | None) -> str | None:
        value = (v or "").strip()
        if not value or value.lower() == "off":
            return value or None
        return _host_port(value, "or 'off'")

    @field_validator("router_listen")
    @classmethod
    def _check_router_listen(cls, v: str) -> str:
        return _host_port(v.strip())

    @field_validator("router_metrics_listen")
    @classmethod
    def _check_metrics_listen(cls, v: str | None) -> str | None:
        value = (v or "").strip()
        return _host_port(value) if value else None

    @field_validator("routers")
    @classmethod
    def _check_routers(cls, v: list[str]) -> list[str]:
        for address in v:
            _host_port(address, any_port=False)
        return v

    @field_validator("host")
    @classmethod
    def _check_host(cls, v: str) -> str:
        if not v.strip() or any(c.isspace() for c in v):
            raise ValueError(f"{v!r} is not an address to listen on (e.g. 127.0.0.1, "
                             "0.0.0.0, ::)")
        return v.strip()

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, v: list[str]) -> list[str]:
        for entry in v:
            if entry != "*":
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ValueError(f"{entry!r} is not an address, a CIDR network or "
                                     "'*'") from None
        return v

    @field_validator("apns_url", "fcm_url")
    @classmethod
    def _check_push_url(cls, v: str) -> str:
        return _url(v, ("https",), "an https:// URL is required")

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, v: str | None) -> str | None:
        return None if v is None else _url(
            v, ("ws", "wss", "http", "https"),
            "must be a ws://, wss://, http:// or https:// URL with a host")

    @field_validator("jwt_secret")
    @classmethod
    def _check_jwt_secret(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("is empty (unset it to have one generated into data_dir)")
        return v

    @field_validator("store_url")
    @classmethod
    def _check_store_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.startswith(_STORE_SCHEMES):
            raise ValueError(f"{_scheme(v)} is not a supported store: use "
                             "sqlite+aiosqlite:///path or mysql+asyncmy://user:pw@host/db")
        from sqlalchemy.engine import make_url

        try:
            database = make_url(v).database
        except Exception as e:  # ArgumentError, ValueError (a port that is not a number);
            # the URL itself is not shown: it may hold a password
            raise ValueError(f"not a valid URL ({e})") from None
        if not database:
            raise ValueError("the URL names no database: sqlite+aiosqlite:///<file> or "
                             "mysql+asyncmy://user:pw@host/<database>")
        return v

    @field_validator("directory_url")
    @classmethod
    def _check_directory_url(cls, v: str) -> str:
        if not v.startswith(_DIRECTORY_SCHEMES):
            raise ValueError(f"{_scheme(v)} is not a supported directory: use "
                             "memory://, redis://, rediss://, unix://, redis+cluster:// or "
                             "redis+sentinel://")
        return v

    @field_validator("jwt_public_key", "jwt_private_key")
    @classmethod
    def _check_pem(cls, v: str | None) -> str | None:
        if v is not None and "-----BEGIN" not in v:  # a path: it must be readable
            try:
                Path(v).read_text()
            except (OSError, UnicodeDecodeError) as e:
                raise ValueError(f"neither a PEM key nor a readable PEM file: {v}: "
                                 f"{getattr(e, 'strerror', None) or e}") from None
        return v

    @field_validator("allowed_origins")
    @classmethod
    def _check_origins(cls, v: list[str]) -> list[str]:
        for origin in v:
            scheme, sep, rest = origin.rstrip("/").partition("://")
            if origin != "*" and (not sep or not scheme or not rest or "/" in rest
                                  or "?" in rest or "#" in rest):
                raise ValueError(f"{origin!r} must look like scheme://host[:port] (no path) "
                                 "or be '*'")
        return [o.rstrip("/") for o in v]

    @model_validator(mode="after")
    def _check_keys(self) -> Settings:
        asym = [a for a in self.jwt_algorithms if not a.startswith("HS")]
        if asym and not self.jwt_public_key:
            raise ValueError(f"jwt_public_key is required for algorithms {asym}")
        check_keys(self.jwt_algorithms, self.jwt_public_key, self.jwt_private_key)
        if self.ping_timeout_s >= self.idle_timeout_s + self.ping_interval_s:
            raise ValueError("ping_timeout_s must be below idle_timeout_s + ping_interval_s")
        if self.event_ttl_s > self.max_event_ttl_s:
            raise ValueError(f"event_ttl_s ({self.event_ttl_s}) must be <= max_event_ttl_s "
                             f"({self.max_event_ttl_s}): every send without 'ttl' would be "
                             "refused")
        return self

    @field_validator("admin_key")
    @classmethod
    def _check_admin_key(cls, v: str | None) -> str | None:
        if v is not None and len(v) < 16:
            raise ValueError("must be at least 16 characters (or unset: no dashboard)")
        return v

    @model_validator(mode="after")
    def _check_admin_key_is_separate(self) -> Settings:
        if self.admin_key is not None and self.admin_key in self.api_keys:
            raise ValueError("admin_key must differ from every API key (a sender must not "
                             "get the dashboard)")
        return self

    @model_validator(mode="after")
    def _check_pushca_public(self) -> Settings:
        if self.pushca_public_open_connection:
            missing = [k for k in ("pushca_public_workspaces", "pushca_public_applications")
                       if not getattr(self, k)]
            if missing:
                raise ValueError(f"{' and '.join(missing)} must list what the keyless "
                                 "/open-connection accepts (pushca_public_open_connection "
                                 "is on)")
        return self

    @model_validator(mode="after")
    def _check_push(self) -> Settings:
        apns = ("apns_key_file", "apns_key_id", "apns_team_id", "apns_topic")
        given = [k for k in apns if getattr(self, k)]
        if given and len(given) < len(apns):
            missing = [k for k in apns if not getattr(self, k)]
            raise ValueError(f"{', '.join(missing)} required with {', '.join(given)}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # explicit arguments (CLI flags) > environment > config file (passed as init kwargs
        # with lower priority by load_settings) > defaults
        return (init_settings, env_settings)

    def router_link_address(self) -> str | None:
        """``host:port`` of the router's framed HubLink listener; ``None`` = off."""
        value = (self.router_link_listen or "").strip()
        if value.lower() == "off":
            return None
        if not value:
            return f"{self.router_listen.rpartition(':')[0]}:0"
        return value

    @property
    def effective_store_url(self) -> str:
        return self.store_url or f"sqlite+aiosqlite:///{self.data_dir / 'pushgate.db'}"


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise SettingsError(f"config file {path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"config file {path}: {e}") from e
    except UnicodeDecodeError as e:
        raise SettingsError(f"config file {path}: not UTF-8 text ({e.reason} at byte "
                            f"{e.start})") from e
    # top-level keys and a [pushgate] table, both (a key in both is ambiguous: refused)
    section = data.pop("pushgate", {})
    if not isinstance(section, dict):
        raise SettingsError(f"config file {path}: [pushgate] must be a table")
    both = sorted(set(section) & set(data))
    if both:
        raise SettingsError(f"config file {path}: {', '.join(both)} both at the top level "
                            "and under [pushgate]")
    values = {**data, **section}
    for key, value in values.items():
        # TOML's true/false are Python bools, which pydantic takes as 1/0 for a number
        # (port = true listened on port 1); the environment's "true" is refused already
        field = Settings.model_fields.get(key)
        if field is not None and isinstance(value, bool):
            kinds = set(get_args(field.annotation)) or {field.annotation}
            if bool not in kinds and kinds & {int, float}:
                raise SettingsError(f"config file {path}: {key}: a number is expected, "
                                    f"not {str(value).lower()}")
    return values


def _scheme(url: str) -> str:
    """The scheme of ``url`` for an error message; never the rest (it may hold a
    password: ``user:pw@host`` without a scheme)."""
    scheme, sep, _ = url.partition("://")
    return f"{scheme!r}" if sep and "@" not in scheme else "a URL without a scheme"


def _url(value: str, schemes: tuple[str, ...], wanted: str) -> str:
    """``value`` if it is a URL of one of ``schemes`` with a host (and a valid port)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        ok = parts.scheme in schemes and bool(parts.hostname)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{value!r}: {wanted}")
    return value


def _host_port(value: str, alternative: str = "", *, any_port: bool = True) -> str:
    """``value`` if it is ``host:port`` (an IPv6 host in brackets), else ValueError."""
    host, _, port = value.rpartition(":")
    lowest = 0 if any_port else 1
    if not host or any(c.isspace() for c in host) or not port.isdigit() \
            or not lowest <= int(port) <= 65535:
        ports = "port 0-65535, 0 = any" if any_port else "port 1-65535"
        raise ValueError(f"{value!r} must be host:port ({ports}){' ' + alternative if alternative else ''}")
    return value


_STORE_SCHEMES = ("sqlite://", "sqlite+aiosqlite://", "mysql://", "mysql+asyncmy://",
                  "mariadb://", "mariadb+asyncmy://")
# memory:// (embedded) and pushgate.router.directory.engines.SCHEMES (checked by a test)
_DIRECTORY_SCHEMES = ("memory://", "redis://", "rediss://", "unix://", "redis+cluster://",
                      "redis+sentinel://")


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from (highest first) ``overrides``, the environment, the TOML
    ``config_file`` (or ``$PUSHGATE_CONFIG``), then defaults. Raises :class:`SettingsError`."""
    path = config_file or os.environ.get("PUSHGATE_CONFIG")
    file_values = _read_file(Path(path)) if path else {}
    env_keys = {k[len("PUSHGATE_"):].lower() for k in os.environ if k.startswith("PUSHGATE_")}
    merged = {k: v for k, v in file_values.items() if k not in env_keys}
    merged.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**merged)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"]) or "settings"
            top = str(err["loc"][0]) if err["loc"] else key  # (api_keys.0: an element)
            from_env = top in env_keys and overrides.get(top) is None  # a flag wins
            where = f"PUSHGATE_{top.upper()}{key[len(top):]}" if from_env else key
            lines.append(f"{where}: {err['msg']}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
