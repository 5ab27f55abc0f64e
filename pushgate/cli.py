"""The ``pushgate`` command: serve, router, bridge, migrate, token, api-key, listen,
send, fake-apns, fake-fcm.

``serve`` has one option per setting (generated from :class:`Settings`, so ``--help``
always lists every option with its default); each can also be set with its
``PUSHGATE_*`` environment variable or in a TOML file given with ``--config``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, cast, get_args, get_origin

import click

from pushgate.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from pushgate.auth import Identity


@click.group(help="pushgate: websocket push gateway.")
@click.version_option(package_name="pushgate", prog_name="pushgate")
def app() -> None:
    pass


def _say(message: str, level: str = "warning") -> None:
    """A message of the CLI's own on stderr: ``pushgate: …``, or a JSON line like every
    other once logging is configured for JSON (a collector parses each line)."""
    from pushgate import logs

    if logs.is_json():
        getattr(logs.get_logger("pushgate.cli"), level)(message)
    else:
        click.echo(f"pushgate: {message}", err=True)


def _fail(e: Exception) -> NoReturn:
    _say(str(e), "error")
    sys.exit(2)


def _secrets(ensure: Any, settings: Settings) -> Settings:
    """``ensure_secrets``' settings; its errors worded as the settings' (exit code 2). A
    client command (token, api-key, listen, send) that had to generate them says so: a
    gateway whose data dir is another one will not accept what they sign."""
    try:
        s, created = ensure(settings)
    except SettingsError as e:
        _fail(e)
    if created:
        click.echo(f"pushgate: no secrets in {settings.data_dir}: generated new ones into "
                   f"{settings.data_dir / 'secrets.json'}; a gateway started with another "
                   "--data-dir does not accept them", err=True)
    return cast(Settings, s)


def _masked(url: str) -> str:
    """``url`` without its password (as the logs show store URLs)."""
    from pushgate.store import masked_url

    return masked_url(url)


def _settings(config: str | None, **overrides: Any) -> Settings:
    try:
        return load_settings(config, **overrides)
    except SettingsError as e:
        _fail(e)
        raise  # unreachable


def _option_for(name: str, field: Any) -> click.Option:
    ann = field.annotation
    args = [a for a in get_args(ann) if a is not type(None)]
    base = args[0] if get_origin(ann) not in (None, list, Literal) and args else ann
    default = field.get_default(call_default_factory=True)
    kwargs: dict[str, Any] = {"default": None, "help": (field.description or "")}
    if get_origin(ann) is list:
        kwargs["help"] += " Comma-separated."
        shown = ",".join(default) if default else ""
    else:
        shown = "" if default is None else str(default)
        if get_origin(base) is not None and get_args(base) and all(isinstance(a, str) for a in get_args(base)):
            kwargs["type"] = click.Choice(list(get_args(base)))
        elif base in (int, float):
            kwargs["type"] = base
    kwargs["help"] += f"  [default: {shown or '-'}; env: PUSHGATE_{name.upper()}]"
    return click.Option([f"--{name.replace('_', '-')}"], **kwargs)


#: PUSHGATE_* variables that are not settings: the client commands' (send, listen), the
#: config file's, and what the local cluster launcher exports (cluster.env)
_OTHER_ENV = {"PUSHGATE_URL", "PUSHGATE_API_KEY", "PUSHGATE_CONFIG", "PUSHGATE_LISTENING",
              "PUSHGATE_ROUTER_LISTENING"}


def _misspelt_env() -> list[tuple[str, str]]:
    """``PUSHGATE_*`` environment variables that are no setting but look like one
    (``PUSHGATE_PROT``, ``PUSHGATE_MAX_SESSION_PER_USER``), with the setting they look
    like: the environment source ignores them silently."""
    import difflib
    import os

    names = [f"PUSHGATE_{n.upper()}" for n in Settings.model_fields]
    out = []
    for key in sorted(os.environ):
        if key.startswith("PUSHGATE_") and key not in names and key not in _OTHER_ENV \
                and not key.endswith("_PID"):
            like = difflib.get_close_matches(key, names, n=1, cutoff=0.88)
            if like:
                out.append((key, like[0]))
    return out


def _prepared(config: str | None, raw: dict[str, Any]) -> Settings:
    """Settings from flags + env + file, logging configured, secrets ensured."""
    overrides: dict[str, Any] = {}
    for name, value in raw.items():
        if value is None:
            continue
        overrides[name] = value  # lists: split (comma or JSON array) by Settings, as env
    settings = _settings(config, **overrides)
    from pushgate import logs
    from pushgate.credentials import ensure_secrets

    logs.configure(settings.log_level, settings.log_format)
    for name, like in _misspelt_env():
        click.echo(f"pushgate: warning: {name} is not a setting and is ignored (did you "
                   f"mean {like}?)", err=True)
    made = [what for what, needed in (
        ("a JWT secret", settings.jwt_secret is None
         and any(a.startswith("HS") for a in settings.jwt_algorithms)),
        ("an API key", not settings.api_keys)) if needed]
    try:
        settings, created = ensure_secrets(settings)
    except SettingsError as e:
        _fail(e)
    if settings.admin_key and settings.admin_key in settings.api_keys:
        _fail(SettingsError("admin_key must differ from every API key (also the one "
                            f"kept in {settings.data_dir / 'secrets.json'})"))
    if created:  # (a warning: shown at log_level warning too; it names a new credential)
        key_hint = " (show the key: pushgate api-key)" if "an API key" in made else ""
        _say(f"generated {' and '.join(made)} in {settings.data_dir / 'secrets.json'}"
             f"{key_hint}", "warning")
    return settings


def _raise_limits() -> None:
    """Soft open-file limit up to the hard one: a descriptor per websocket (rlimits.py)."""
    from pushgate import rlimits
    from pushgate.logs import get_logger

    before, after = rlimits.raise_nofile()
    get_logger("pushgate.rlimits").info("open-file limit", soft_before=before, soft=after)


def _serve(config: str | None, port_file: str | None, **raw: Any) -> None:
    settings = _prepared(config, raw)
    if port_file:  # writable, before anything starts (it is written once listening)
        try:
            Path(port_file).write_text("")
        except OSError as e:
            _fail(SettingsError(f"--port-file {port_file}: {e.strerror or e}"))
    _raise_limits()
    from pushgate.errors import StartupError
    from pushgate.server import run

    try:
        run(settings, Path(port_file) if port_file else None)
    except StartupError as e:
        _fail(e)
    except KeyboardInterrupt:
        # uvicorn raises again the SIGINT it handled, once stopped: end by it (130), as
        # by SIGTERM (143), not by click's "Aborted!" and exit status 1
        import os
        import signal

        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)


def _router(config: str | None, **raw: Any) -> None:
    settings = _prepared(config, raw)
    _raise_limits()
    from pushgate.errors import StartupError
    from pushgate.router.node import run

    try:
        run(settings)
    except StartupError as e:
        _fail(e)


def _config_option() -> click.Option:
    return click.Option(["--config"], default=None, help="TOML file with settings (keys as "
                        "below, top level or under [pushgate]).  [env: PUSHGATE_CONFIG]")


def _serve_command() -> click.Command:
    params: list[click.Parameter] = [
        _config_option(),
        click.Option(["--port-file"], default=None,
                     help="Write the bound port to this file once listening."),
    ]
    params += [_option_for(name, f) for name, f in Settings.model_fields.items()]
    return click.Command("serve", callback=_serve, params=params,
                         help="Run the gateway: embedded mode (hub + router + SQLite inbox), "
                         "or a cluster hub when --routers is set.")


def _router_command() -> click.Command:
    params: list[click.Parameter] = [_config_option()]
    params += [_option_for(name, f) for name, f in Settings.model_fields.items()]
    return click.Command(
        "router", callback=_router, params=params,
        help="Run a cluster router: gRPC Gateway + HubLink services on --router-listen, "
        "events in --store-url (MySQL), sessions in --directory-url (Redis). Prints "
        "'PUSHGATE_ROUTER_LISTENING host:port [link=host:port] [metrics=host:port]' when "
        "serving (gRPC, the framed HubLink, Prometheus).")


@app.command()
@click.option("--url", default=None, help="Store URL; default: the configured store_url.")
@click.option("--config", default=None, help="TOML settings file.")
def migrate(url: str | None, config: str | None) -> None:
    """Create or upgrade the event store schema (Alembic head)."""
    from pushgate.store import StoreError
    from pushgate.store import migrate as run_migrations

    target = url or _settings(config).effective_store_url
    try:
        asyncio.run(run_migrations(target))
    except (ValueError, StoreError, OSError) as e:  # a bad URL, an unreachable database
        _fail(RuntimeError(f"migrate {_masked(target)}: {e}"))
    except Exception as e:  # the driver's own (SQLAlchemy's OperationalError, …)
        cause = getattr(e, "orig", None) or e  # the DBAPI error, without SQLAlchemy's links
        _fail(RuntimeError(f"migrate {_masked(target)}: {type(cause).__name__}: {cause}"))
    click.echo(f"migrated {_masked(target)}")


def _identity(user: str, workspace: str, device: str, application: str) -> Identity:
    """The identity a token is minted for, each id checked as the gateway checks a
    token's claims (a blank or over-long id: exit 2 naming the option, instead of a
    token that every connect refused with 4100)."""
    from pushgate.auth import Identity, check_id
    from pushgate.errors import InvalidRequest

    for hint, value, required in (("--user", user, True), ("--workspace", workspace, False),
                                  ("--device", device, False), ("--app", application, False)):
        try:
            check_id(value, hint, required=required)
        except InvalidRequest as e:
            raise click.BadParameter(e.message.removeprefix(hint).strip(),
                                     param_hint=hint) from None
    return Identity(user, workspace, device, application)


@app.command()
@click.option("--user", required=True, help="User id (the 'sub' claim).")
@click.option("--workspace", default="default", show_default=True, help="Workspace ('ws').")
@click.option("--device", default="", help="Device id ('dev' claim).")
@click.option("--app", "application", default="", help="Application id ('app' claim).")
@click.option("--ttl", type=click.IntRange(1, 10**9), default=1800, show_default=True,
              help="Lifetime in seconds.")
@click.option("--config", default=None, help="TOML settings file.")
@click.option("--data-dir", default=None, help="Same as serve's --data-dir (generated secrets).")
def token(user: str, workspace: str, device: str, application: str, ttl: int,
          config: str | None, data_dir: str | None) -> None:
    """Mint a client token (with the same secret `serve` uses) and print it."""
    from pushgate.auth import TokenCodec
    from pushgate.credentials import ensure_secrets

    identity = _identity(user, workspace, device, application)
    s = _secrets(ensure_secrets, _settings(config, data_dir=data_dir))
    codec = TokenCodec(algorithms=s.jwt_algorithms, secret=s.jwt_secret,
                       public_key=s.jwt_public_key, private_key=s.jwt_private_key,
                       audience=s.jwt_audience, issuer=s.jwt_issuer)
    try:
        raw, _ = codec.mint(identity, ttl)
    except RuntimeError as e:
        _fail(e)
    click.echo(raw)


@app.command("api-key")
@click.option("--config", default=None, help="TOML settings file.")
@click.option("--data-dir", default=None, help="Same as serve's --data-dir (generated secrets).")
def api_key(config: str | None, data_dir: str | None) -> None:
    """Print the first API key (generated into data_dir on first use)."""
    from pushgate.credentials import ensure_secrets

    s = _secrets(ensure_secrets, _settings(config, data_dir=data_dir))
    click.echo(s.api_keys[0])


app.add_command(_serve_command())
app.add_command(_router_command())


@app.command()
@click.option("--config", default=None, help="TOML settings file (the same as serve's).")
@click.option("--metrics-port", type=int, default=None,
              help="Serve Prometheus metrics on METRICS_HOST:PORT (0 = any free port).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Address of the metrics listener (0.0.0.0: every interface, for a "
                   "Prometheus on another host or pod).")
def bridge(config: str | None, metrics_port: int | None, metrics_host: str) -> None:
    """Run an offline-push worker (APNs/FCM) against the configured store.

    Settings as for serve (PUSHGATE_* environment or --config): store_url, apns_*,
    fcm_*, push_*. Several workers may share one MySQL/MariaDB store."""
    from pushgate import logs
    from pushgate.router.bridge.base import BridgeConfigError
    from pushgate.router.bridge.service import run_bridge

    s = _settings(config)
    logs.configure(s.log_level, s.log_format)
    _raise_limits()
    try:
        run_async(run_bridge(s, metrics_port, metrics_host))
    except BridgeConfigError as e:
        _fail(e)


@app.command("fake-apns")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=0, show_default=True, help="0 = any free port.")
@click.option("--dir", "directory", default="fake-apns", show_default=True,
              help="Where the .p8 key (created if missing) and TLS certificate go.")
@click.option("--key-id", default="FAKEKEY001", show_default=True)
@click.option("--team-id", default="FAKETEAM01", show_default=True)
@click.option("--topic", default=None, help="Accept only this topic (default: any).")
@click.option("--no-record", is_flag=True, help="Count pushes only (for big benchmarks).")
def fake_apns(host: str, port: int, directory: str, key_id: str, team_id: str,
              topic: str | None, no_record: bool) -> None:
    """A local fake APNs (HTTP/2 + TLS, ES256 provider tokens, Apple's error bodies).

    Prints its URL on stdout and the bridge settings on stderr. Control: GET
    /_fake/stats, POST /_fake/fail {token, status, reason, retry_after, times},
    POST /_fake/unregister {token}."""
    from pushgate.fakes.run import fake_apns as run

    run_async(run(host, port, Path(directory), key_id, team_id, topic, not no_record))


@app.command("fake-fcm")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=0, show_default=True, help="0 = any free port.")
@click.option("--dir", "directory", default="fake-fcm", show_default=True,
              help="Where service-account.json (created if missing) and the TLS certificate go.")
@click.option("--project-id", default="pushgate-fake", show_default=True)
@click.option("--no-record", is_flag=True, help="Count pushes only (for big benchmarks).")
def fake_fcm(host: str, port: int, directory: str, project_id: str, no_record: bool) -> None:
    """A local fake FCM HTTP v1 with its OAuth2 token endpoint (HTTP/2 + TLS).

    Writes a service-account key whose token_uri points at it; prints its URL on
    stdout and the bridge settings on stderr. Control as for fake-apns."""
    from pushgate.fakes.run import fake_fcm as run

    run_async(run(host, port, Path(directory), project_id, not no_record))


def run_async(main: Coroutine[Any, Any, Any]) -> Any:
    """Run a long-lived command on uvloop (as serve and router do), else asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.run(main)
    return uvloop.run(main)


def main() -> None:
    app(prog_name="pushgate")



# -- listen / send: the Python SDK (clients/python, `pip install -e clients/python`) -------


def _sdk() -> Any:
    try:
        import pushgate_client
    except ImportError:
        _fail(RuntimeError("this command needs the Python SDK: pip install -e clients/python"))
    return pushgate_client


def _stopped(e: Exception) -> NoReturn:
    """``listen`` must not reconnect (kicked, token refused, ...): exit 1 with the reason
    (bad arguments and settings exit 2, through :func:`_fail`)."""
    click.echo(f"pushgate: {e}", err=True)
    sys.exit(1)


def _why_disconnected(client: Any) -> str:
    """What ended the latest attempt: the close frame's code and reason, or the error of
    a connection attempt that got no socket (refused, timed out, ...)."""
    err = client.connect_error
    if err is not None:
        return f" (connect failed: {str(err) or type(err).__name__})"
    info = client.last_close
    if info is None:
        return ""
    return f" ({info.code} {info.reason})".replace(" )", ")")


@app.command()
@click.option("--user", required=True, help="User id (the token's 'sub').")
@click.option("--workspace", default="default", show_default=True, help="Workspace ('ws').")
@click.option("--device", default="", help="Device id ('dev' claim).")
@click.option("--app", "application", default="", help="Application id ('app' claim).")
@click.option("--url", default="http://127.0.0.1:8080", show_default=True, envvar="PUSHGATE_URL",
              help="Gateway base URL.  [env: PUSHGATE_URL]")
@click.option("--after", type=click.IntRange(min=0), default=None,
              help="Print the stored events after this seq first (0 = all); default: new only.")
@click.option("--count", type=click.IntRange(min=1), default=None,
              help="Exit after this many events.")
@click.option("--no-ack", is_flag=True, help="Do not ack events (send-with-ack senders time out).")
@click.option("--config", default=None, help="TOML settings file (for the JWT secret).")
@click.option("--data-dir", default=None, help="Same as serve's --data-dir (generated secrets).")
def listen(user: str, workspace: str, device: str, application: str, url: str,
           after: int | None, count: int | None, no_ack: bool, config: str | None,
           data_dir: str | None) -> None:
    """Connect as USER and print events as JSON lines (reconnects, never skips one).

    Tokens are minted with the secret `serve` uses (as `pushgate token` does) and
    refreshed before they expire. Connection changes go to stderr. Exits 1 with the
    reason when it must not reconnect (e.g. kicked by a newer session), 2 on bad
    arguments or settings."""
    import json

    sdk = _sdk()
    try:
        sdk.ws_url(url)
    except ValueError as e:
        _fail(e)
    from pushgate.auth import TokenCodec
    from pushgate.credentials import ensure_secrets

    identity = _identity(user, workspace, device, application)

    s = _secrets(ensure_secrets, _settings(config, data_dir=data_dir))
    codec = TokenCodec(algorithms=s.jwt_algorithms, secret=s.jwt_secret,
                       public_key=s.jwt_public_key, private_key=s.jwt_private_key,
                       audience=s.jwt_audience, issuer=s.jwt_issuer)
    if not codec.can_mint:
        _fail(RuntimeError(f"no signing key configured for {s.jwt_algorithms[0]}"))

    def token() -> str:
        return codec.mint(identity, 1800)[0]

    def on_state(state: Any) -> None:
        note = f" (session {client.session})" if state is sdk.State.CONNECTED else ""
        if state is sdk.State.DISCONNECTED:
            note = _why_disconnected(client)
        click.echo(f"pushgate: {state.value}{note}", err=True)

    client = sdk.Client(url, token_provider=token, after=after, auto_ack=not no_ack,
                        on_state=on_state)

    async def run() -> None:
        seen = 0
        async with client:
            async for e in client:
                click.echo(json.dumps({"seq": e.seq, "id": e.id, "body": e.body,
                                       "created_at": e.created_at}, ensure_ascii=False))
                seen += 1
                if count is not None and seen >= count:
                    return

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    except sdk.StoppedError as e:
        _stopped(e)


@app.command()
@click.argument("body")
@click.option("--user", "users", multiple=True, required=True, help="Recipient (repeatable).")
@click.option("--url", default="http://127.0.0.1:8080", show_default=True, envvar="PUSHGATE_URL",
              help="Gateway base URL.  [env: PUSHGATE_URL]")
@click.option("--id", "event_id", default=None, help="Idempotency key.")
@click.option("--ttl", type=int, default=None, help="Seconds to keep it (0 = transient).")
@click.option("--ack", is_flag=True, help="Wait until a session of the user acks it.")
@click.option("--api-key", default=None, envvar="PUSHGATE_API_KEY",
              help="API key; default: the one `pushgate api-key` prints.  [env: PUSHGATE_API_KEY]")
@click.option("--config", default=None, help="TOML settings file.")
@click.option("--data-dir", default=None, help="Same as serve's --data-dir (generated secrets).")
def send(body: str, users: tuple[str, ...], url: str, event_id: str | None, ttl: int | None,
         ack: bool, api_key: str | None, config: str | None, data_dir: str | None) -> None:
    """Send BODY (JSON; other text is sent as a JSON string) to users and print the reply."""
    import json

    if not url.startswith(("http://", "https://")):
        raise click.BadParameter(f"{url!r} is not an http:// or https:// URL",
                                 param_hint="--url")
    sdk = _sdk()
    try:
        value = json.loads(body)
    except ValueError:
        value = body
    if api_key is None:
        from pushgate.credentials import ensure_secrets

        api_key = _secrets(ensure_secrets, _settings(config, data_dir=data_dir)).api_keys[0]
    fields: dict[str, Any] = {k: v for k, v in
                              {"id": event_id, "ttl": ttl, "ack": ack or None}.items()
                              if v is not None}

    async def run() -> Any:
        async with sdk.ServerApi(url, api_key) as api:
            return await api.send(value, users=list(users), **fields)

    try:
        result = asyncio.run(run())
    except sdk.PushgateClientError as e:  # refused or failed by the gateway, or unreachable
        click.echo(f"pushgate: {e}", err=True)
        sys.exit(1)
    click.echo(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
