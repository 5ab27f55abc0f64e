"""The CLI's errors: every bad input is one ``pushgate: …`` line naming what is wrong and
exit code 2 (docs/configuration.md), never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from pushgate.cli import app


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith("PUSHGATE_"):
            monkeypatch.delenv(key)


def fails(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pushgate: "), result.output
    return lines[0]


def test_token_and_api_key_with_an_unreadable_secrets_file(tmp_path: Path) -> None:
    (tmp_path / "secrets.json").write_text("{bad")
    for command in (["token", "--user", "a"], ["api-key"]):
        line = fails(*command, "--data-dir", str(tmp_path))
        assert line.startswith("pushgate: data_dir: cannot read ") and "secrets.json" in line


def test_a_data_dir_that_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    line = fails("api-key", "--data-dir", str(tmp_path / "a-file" / "sub"))
    assert line.startswith("pushgate: data_dir: ") and "Not a directory" in line


@pytest.mark.parametrize("command", [["api-key"], ["token", "--user", "a"],
                                     ["serve", "--port", "0"]])
def test_a_secrets_file_without_a_key_names_it(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "secrets.json").write_text('{"jwt_secret": "x"}')
    line = fails(*command, "--data-dir", str(tmp_path))
    assert "has no 'api_key' string" in line and "delete the file" in line


def test_migrate_with_an_unsupported_or_unreachable_url_masks_the_password() -> None:
    assert "unsupported store URL" in fails("migrate", "--url", "foo://x")
    line = fails("migrate", "--url", "mysql+asyncmy://root:hunter2@127.0.0.1:1/x")
    assert "hunter2" not in line and "***" in line and "Can't connect" in line


@pytest.mark.parametrize(("args", "named"), [
    (["token", "--user", ""], "--user"),
    (["token", "--user", "a", "--device", "  "], "--device"),
    (["token", "--user", "a", "--app", "a" * 256], "--app"),
    (["listen", "--user", "a", "--workspace", " ", "--url", "http://127.0.0.1:1"],
     "--workspace"),
    (["token", "--user", "a", "--ttl", "0"], "--ttl"),
    (["token", "--user", "a", "--ttl", "-5"], "--ttl"),
    (["send", "--user", "a", "--url", "not-a-url", "1"], "--url"),
])
def test_bad_client_command_arguments_exit_2_naming_the_option(
        tmp_path: Path, args: list[str], named: str) -> None:
    """An empty user, a blank device, app or workspace, or a lifetime ≤ 0 made a token
    the gateway refuses (4100: clients stop); a URL without
    a scheme was exit 1 ("cannot reach") for send but 2 for listen (clients.md: bad
    arguments exit 2)."""
    result = CliRunner().invoke(app, [*args, "--data-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert named in result.output and "Traceback" not in result.output


def test_a_choice_setting_shows_and_checks_its_choices() -> None:
    """``--log-level`` is a choice of four (its help said TEXT and took anything to the
    settings check)."""
    out = CliRunner().invoke(app, ["serve", "--help"]).output
    assert "[debug|info|warning|error]" in out
    result = CliRunner().invoke(app, ["serve", "--log-level", "loud"])
    assert result.exit_code == 2 and "'loud' is not one of" in result.output, result.output


def test_a_list_flag_takes_a_json_array_as_the_environment_does(tmp_path: Path) -> None:
    """``--api-keys '["k1","k2"]'`` is two keys, as PUSHGATE_API_KEYS='["k1","k2"]' (it
    was split on the comma into the keys '["k1"' and '"k2"]'); a comma list still works."""
    from pushgate.cli import _prepared

    for given in ('["k1-aaaaaaaaaaaaaaaa","k2-aaaaaaaaaaaaaaaa"]',
                  "k1-aaaaaaaaaaaaaaaa, k2-aaaaaaaaaaaaaaaa"):
        settings = _prepared(None, {"api_keys": given, "data_dir": str(tmp_path)})
        assert settings.api_keys == ["k1-aaaaaaaaaaaaaaaa", "k2-aaaaaaaaaaaaaaaa"], given


def test_a_misspelt_setting_in_the_environment_is_warned_about(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The environment source ignores PUSHGATE_* variables that are no setting: a typo
    (PUSHGATE_PROT, PUSHGATE_MAX_SESSION_PER_USER) started the gateway without it, in
    silence. Variables that are no setting by design (the launcher's, the client
    commands') are not warned about."""
    from pushgate.cli import _prepared

    for key in ("PUSHGATE_PROT", "PUSHGATE_MAX_SESSION_PER_USER", "PUSHGATE_API_KEY",
                "PUSHGATE_HUB_0_PID", "PUSHGATE_URL", "PUSHGATE_TEST_REDIS_URL"):
        monkeypatch.setenv(key, "1")
    _prepared(None, {"data_dir": str(tmp_path)})
    err = [x for x in capsys.readouterr().err.splitlines() if "warning" in x]
    assert err == [
        "pushgate: warning: PUSHGATE_MAX_SESSION_PER_USER is not a setting and is ignored "
        "(did you mean PUSHGATE_MAX_SESSIONS_PER_USER?)",
        "pushgate: warning: PUSHGATE_PROT is not a setting and is ignored (did you mean "
        "PUSHGATE_PORT?)"], err


def test_migrate_a_url_without_a_database_names_it() -> None:
    """(It was "AssertionError: " from the driver, or 'migrated sqlite:///' into memory.)"""
    for url in ("mysql+asyncmy://root@127.0.0.1:3306/", "sqlite:///"):
        line = fails("migrate", "--url", url)
        assert line.startswith(f"pushgate: migrate {url}: the store URL names no database")


def test_version() -> None:
    from importlib import metadata

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"pushgate, version {metadata.version('pushgate')}\n"
