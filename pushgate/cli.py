"""The ``pushgate`` command: serve, migrate, token, api-key.

``serve`` has one option per setting (generated from :class:`Settings`, so ``--help``
always lists every option with its default); each can also be set with its
``PUSHGATE_*`` environment variable or in a TOML file given with ``--config``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, get_args, get_origin

import click

from pushgate.settings import Settings, SettingsError, load_settings


@click.group(help="pushgate: websocket push gateway.")
def app() -> None:
    pass


def _fail(e: Exception) -> None:
    click.echo(f"pushgate: {e}", err=True)
    sys.exit(2)


def _settings(config: str | None, **overrides: Any) -> Settings:
    try:
        return load_settings(config, **overrides)
    except SettingsError as e:
        _fail(e)
        raise  # unreachable


def _option_for(name: str, field: Any) -> click.Option:
    ann = field.annotation
    args = [a for a in get_args(ann) if a is not type(None)]
    base = args[0] if get_origin(ann) is not None and args and get_origin(ann) is not list else ann
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


def _serve(config: str | None, port_file: str | None, **raw: Any) -> None:
    overrides: dict[str, Any] = {}
    for name, value in raw.items():
        if value is None:
            continue
        if get_origin(Settings.model_fields[name].annotation) is list:
            value = [v.strip() for v in str(value).split(",") if v.strip()]
        overrides[name] = value
    settings = _settings(config, **overrides)
    from pushgate import logs
    from pushgate.keys import ensure_secrets

    logs.configure(settings.log_level, settings.log_format)
    try:
        settings, created = ensure_secrets(settings)
    except SettingsError as e:
        _fail(e)
    if created:
        click.echo(f"pushgate: generated a JWT secret and an API key in "
                   f"{settings.data_dir / 'secrets.json'} (show the key: pushgate api-key)",
                   err=True)
    from pushgate.server import run

    run(settings, Path(port_file) if port_file else None)


def _serve_command() -> click.Command:
    params: list[click.Parameter] = [
        click.Option(["--config"], default=None, help="TOML file with settings "
                     "(keys as below, top level or under [pushgate]).  [env: PUSHGATE_CONFIG]"),
        click.Option(["--port-file"], default=None,
                     help="Write the bound port to this file once listening."),
    ]
    params += [_option_for(name, f) for name, f in Settings.model_fields.items()]
    return click.Command("serve", callback=_serve, params=params,
                         help="Run the gateway (embedded mode: hub + router + SQLite inbox).")


@app.command()
@click.option("--url", default=None, help="Store URL; default: the configured store_url.")
@click.option("--config", default=None, help="TOML settings file.")
def migrate(url: str | None, config: str | None) -> None:
    """Create or upgrade the event store schema (Alembic head)."""
    from pushgate.store import migrate as run_migrations

    target = url or _settings(config).effective_store_url
    asyncio.run(run_migrations(target))
    click.echo(f"migrated {target}")


@app.command()
@click.option("--user", required=True, help="User id (the 'sub' claim).")
@click.option("--workspace", default="default", show_default=True, help="Workspace ('ws').")
@click.option("--device", default="", help="Device id ('dev' claim).")
@click.option("--app", "application", default="", help="Application id ('app' claim).")
@click.option("--ttl", default=1800, show_default=True, help="Lifetime in seconds.")
@click.option("--config", default=None, help="TOML settings file.")
@click.option("--data-dir", default=None, help="Same as serve's --data-dir (generated secrets).")
def token(user: str, workspace: str, device: str, application: str, ttl: int,
          config: str | None, data_dir: str | None) -> None:
    """Mint a client token (with the same secret `serve` uses) and print it."""
    from pushgate.auth import Identity, TokenCodec
    from pushgate.keys import ensure_secrets

    s, _ = ensure_secrets(_settings(config, data_dir=data_dir))
    codec = TokenCodec(algorithms=s.jwt_algorithms, secret=s.jwt_secret,
                       public_key=s.jwt_public_key, private_key=s.jwt_private_key,
                       audience=s.jwt_audience, issuer=s.jwt_issuer)
    try:
        raw, _ = codec.mint(Identity(user, workspace, device, application), ttl)
    except RuntimeError as e:
        _fail(e)
    click.echo(raw)


@app.command("api-key")
@click.option("--config", default=None, help="TOML settings file.")
@click.option("--data-dir", default=None, help="Same as serve's --data-dir (generated secrets).")
def api_key(config: str | None, data_dir: str | None) -> None:
    """Print the first API key (generated into data_dir on first use)."""
    from pushgate.keys import ensure_secrets

    s, _ = ensure_secrets(_settings(config, data_dir=data_dir))
    click.echo(s.api_keys[0])


app.add_command(_serve_command())


def main() -> None:
    app(prog_name="pushgate")


if __name__ == "__main__":
    main()
