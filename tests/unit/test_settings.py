"""load_settings: defaults, PUSHGATE_* environment, TOML file, precedence, errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pushgate.settings import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith("PUSHGATE_"):
            monkeypatch.delenv(key)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pushgate.toml"
    path.write_text(text)
    return path


def error(*args: object, **kwargs: object) -> str:
    with pytest.raises(SettingsError) as info:
        load_settings(*args, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


# --- defaults and sources --------------------------------------------------------------


def test_defaults_run_a_local_single_node() -> None:
    s = load_settings()
    assert (s.host, s.port) == ("127.0.0.1", 8080)
    assert s.directory_url == "memory://"
    assert s.jwt_algorithms == ["HS256"]
    assert s.allowed_origins == ["*"]
    assert s.max_sessions_per_user == 5
    assert s.effective_store_url == f"sqlite+aiosqlite:///{Path('pushgate-data') / 'pushgate.db'}"


def test_environment_sets_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHGATE_PORT", "9001")
    monkeypatch.setenv("PUSHGATE_JWT_ALGORITHMS", '["HS512", "HS256"]')
    monkeypatch.setenv("PUSHGATE_ALLOWED_ORIGINS", '["https://a.example/", "http://b:8080"]')
    monkeypatch.setenv("PUSHGATE_PUBLIC_URL", "null")
    s = load_settings()
    assert s.port == 9001
    assert s.jwt_algorithms == ["HS512", "HS256"]
    assert s.allowed_origins == ["https://a.example", "http://b:8080"]
    assert s.public_url is None


def test_toml_file_top_level_keys(tmp_path: Path) -> None:
    path = write(tmp_path, 'port = 9100\nstore_url = "sqlite+aiosqlite:///x.db"\n'
                           'api_keys = ["k1", "k2"]\n')
    s = load_settings(path)
    assert s.port == 9100
    assert s.effective_store_url == "sqlite+aiosqlite:///x.db"
    assert s.api_keys == ["k1", "k2"]


def test_toml_file_pushgate_table(tmp_path: Path) -> None:
    path = write(tmp_path, "[pushgate]\nport = 9200\nlog_format = \"json\"\n")
    s = load_settings(str(path))
    assert (s.port, s.log_format) == (9200, "json")


def test_toml_file_top_level_keys_and_a_pushgate_table_both_count(tmp_path: Path) -> None:
    path = write(tmp_path, 'port = 9300\n[pushgate]\nlog_format = "json"\n')
    s = load_settings(path)
    assert (s.port, s.log_format) == (9300, "json")
    assert "port" in error(write(tmp_path, "port = 1\n[pushgate]\nport = 2\n"))
    assert "no_such_top" in error(write(tmp_path, "no_such_top = 1\n[pushgate]\nport = 2\n"))


def test_a_toml_boolean_for_a_number_is_refused_naming_the_key(tmp_path: Path) -> None:
    """TOML's true is a Python bool, which pydantic took as 1: ``port = true`` listened
    on port 1 (the environment's PUSHGATE_PORT=true was refused)."""
    for key in ("port", "max_sessions_per_user", "http_keepalive_s"):
        message = error(write(tmp_path, f"{key} = true\n"))
        assert f"{key}: a number is expected, not true" in message, message
    s = load_settings(write(tmp_path, "push_enabled = true\n"))  # a bool setting: fine
    assert s.push_enabled is True


def test_a_config_file_that_is_not_utf8_is_one_message(tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe port = 0")
    assert "not UTF-8" in error(path)


def test_valid_addresses_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHGATE_ROUTERS", "router-0:7700,[::1]:7701")
    monkeypatch.setenv("PUSHGATE_TRUSTED_PROXIES", "10.0.0.0/8,127.0.0.1,::1,*")
    monkeypatch.setenv("PUSHGATE_HOST", "::")
    s = load_settings()
    assert s.routers == ["router-0:7700", "[::1]:7701"] and s.host == "::"


def test_config_file_from_pushgate_config_env(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHGATE_CONFIG", str(write(tmp_path, "port = 9300\n")))
    assert load_settings().port == 9300


def test_environment_beats_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, 'port = 9100\nhost = "0.0.0.0"\n')
    monkeypatch.setenv("PUSHGATE_PORT", "9400")
    s = load_settings(path)
    assert s.port == 9400
    assert s.host == "0.0.0.0"


def test_explicit_overrides_beat_environment_and_file(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "port = 9100\nmax_sessions_per_user = 2\n")
    monkeypatch.setenv("PUSHGATE_PORT", "9400")
    s = load_settings(path, port=9500, host=None)
    assert s.port == 9500
    assert s.host == "127.0.0.1"  # None override means "not given"
    assert s.max_sessions_per_user == 2


def test_data_dir_decides_the_default_store_url(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.setenv("PUSHGATE_DATA_DIR", str(tmp_path))
    s = load_settings()
    assert s.effective_store_url == f"sqlite+aiosqlite:///{tmp_path / 'pushgate.db'}"


def _ec_keys() -> tuple[str, str]:
    """(public, private) PEM text of a new EC key."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return public.decode(), private.decode()


def test_asymmetric_algorithms_with_public_key_are_accepted() -> None:
    public, private = _ec_keys()
    s = load_settings(jwt_algorithms=["ES256", "HS256"], jwt_public_key=public,
                      jwt_private_key=private)
    assert s.jwt_algorithms == ["ES256", "HS256"]


@pytest.mark.parametrize(("algorithms", "keys", "expected"), [
    # a key that cannot verify an accepted algorithm would refuse every client's token
    (["RS256"], {"jwt_public_key": "p256"},
     "jwt_public_key cannot be used with RS256: it is an ECPublicKey"),
    (["ES256", "ES384"], {"jwt_public_key": "p256"},
     "jwt_public_key cannot be used with ES384: The key's curve 'secp256r1' does not match"),
    (["ES256"], {"jwt_public_key": "-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n"},
     "jwt_public_key cannot be used with ES256: Unable to load PEM file"),
    (["ES256"], {"jwt_public_key": "p256", "jwt_private_key": "other p256"},
     "jwt_private_key does not match jwt_public_key: tokens it signs (ES256) would not verify"),
])
def test_a_key_that_cannot_serve_an_algorithm_is_refused_at_start(
        algorithms: list[str], keys: dict[str, str], expected: str) -> None:
    public, _ = _ec_keys()
    _, other_private = _ec_keys()
    given = {name: {"p256": public, "other p256": other_private}.get(v, v)
             for name, v in keys.items()}
    message = error(jwt_algorithms=algorithms, **given)
    assert expected in message
    assert message.count("\n") == 1  # "invalid settings:" and one line naming the key


def test_each_load_reads_the_current_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PUSHGATE_PORT", "9600")
    assert load_settings().port == 9600
    monkeypatch.setenv("PUSHGATE_PORT", "9601")
    assert load_settings().port == 9601


# --- errors name the bad key ------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("PUSHGATE_PORT", "abc"),
        ("PUSHGATE_PORT", "70000"),
        ("PUSHGATE_PORT", "-1"),
        ("PUSHGATE_MAX_SESSIONS_PER_USER", "0"),
        ("PUSHGATE_MAX_FRAME_BYTES", "1023"),
        ("PUSHGATE_TOKEN_TTL_S", "0"),
        ("PUSHGATE_PING_INTERVAL_S", "fast"),
        ("PUSHGATE_LOG_LEVEL", "verbose"),
        ("PUSHGATE_LOG_FORMAT", "xml"),
        ("PUSHGATE_JWT_ALGORITHMS", '["none"]'),
        ("PUSHGATE_JWT_ALGORITHMS", '["HS1"]'),
        ("PUSHGATE_JWT_ALGORITHMS", "[]"),
        ("PUSHGATE_ALLOWED_ORIGINS", '["example.com"]'),
        ("PUSHGATE_ROUTER_LINK_LISTEN", "7702"),
        ("PUSHGATE_ROUTER_LINK_LISTEN", "0.0.0.0:http"),
        ("PUSHGATE_ROUTER_LINK_LISTEN", "0.0.0.0:70000"),
        # an infinite or NaN duration (an overflow at start, or a wait for ever)
        ("PUSHGATE_HTTP_KEEPALIVE_S", "inf"),
        ("PUSHGATE_SHUTDOWN_GRACE_S", "1e400"),
        ("PUSHGATE_COMMIT_LINGER_MS", "inf"),
        ("PUSHGATE_WRITE_DEADLINE_S", "nan"),
        ("PUSHGATE_HOST", ""),
        ("PUSHGATE_HOST", "not a host!"),
        ("PUSHGATE_ROUTER_LISTEN", "garbage"),
        ("PUSHGATE_ROUTER_LISTEN", "127.0.0.1"),
        ("PUSHGATE_ROUTER_LISTEN", "127.0.0.1:99999"),
        ("PUSHGATE_ROUTER_METRICS_LISTEN", "garbage"),
        ("PUSHGATE_ROUTER_METRICS_LISTEN", "127.0.0.1:99999"),
        ("PUSHGATE_ROUTERS", "garbage,127.0.0.1:7700"),
        ("PUSHGATE_ROUTERS", "127.0.0.1:0"),
        ("PUSHGATE_TRUSTED_PROXIES", "10.0.0.0/99"),
        ("PUSHGATE_TRUSTED_PROXIES", "not-an-ip"),
        ("PUSHGATE_JWT_SECRET", ""),
        ("PUSHGATE_API_KEYS", '[1, "a"]'),  # (named as the variable, not api_keys.0)
        ("PUSHGATE_ALLOWED_ORIGINS", "https://a.example.com/path"),
        ("PUSHGATE_FCM_URL", "not a url"),
        ("PUSHGATE_APNS_URL", "http://api.push.apple.com"),
        ("PUSHGATE_PUBLIC_URL", "not-a-url"),
        ("PUSHGATE_PUBLIC_URL", "ftp://x"),
    ],
)
def test_bad_environment_value_fails_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    assert var in error()


@pytest.mark.parametrize(("var", "field"), [("PUSHGATE_JWT_ALGORITHMS", "jwt_algorithms"),
                                           ("PUSHGATE_API_KEYS", "api_keys")])
def test_comma_separated_list_env_value_is_accepted(
    monkeypatch: pytest.MonkeyPatch, var: str, field: str
) -> None:
    monkeypatch.setenv(var, "HS256, HS512")
    assert getattr(load_settings(), field) == ["HS256", "HS512"]


def test_bad_json_list_env_value_fails_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHGATE_API_KEYS", "[oops")
    assert "PUSHGATE_API_KEYS" in error()


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("port = \"abc\"\n", "port"),
        ("max_body_bytes = 8\n", "max_body_bytes"),
        ("jwt_algorithms = [\"none\"]\n", "jwt_algorithms"),
        ("allowed_origins = [\"example.com\"]\n", "allowed_origins"),
        ("[pushgate]\nlog_level = \"trace\"\n", "log_level"),
    ],
)
def test_bad_file_value_fails_naming_the_key(tmp_path: Path, toml: str, key: str) -> None:
    message = error(write(tmp_path, toml))
    assert key in message
    assert f"PUSHGATE_{key.upper()}" not in message


def test_unknown_key_in_the_toml_file_is_reported(tmp_path: Path) -> None:
    assert "max_session_per_user" in error(write(tmp_path, "max_session_per_user = 3\n"))


def test_every_bad_key_is_reported_at_once(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHGATE_PORT", "abc")
    message = error(write(tmp_path, "send_queue_size = 0\nbogus = 1\n"))
    for key in ("PUSHGATE_PORT", "send_queue_size", "bogus"):
        assert key in message


def test_file_value_overridden_by_a_valid_env_var_is_not_validated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUSHGATE_PORT", "9000")
    assert load_settings(write(tmp_path, 'port = "bad"\n')).port == 9000


def test_asymmetric_algorithm_without_public_key_is_reported() -> None:
    assert "jwt_public_key" in error(jwt_algorithms=["RS256"])


def test_ping_timeout_not_below_idle_plus_interval_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PUSHGATE_PING_TIMEOUT_S", "140")
    assert "ping_timeout_s" in error()


def test_a_default_ttl_over_the_maximum_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    # every send without 'ttl' would get a 400 blaming its caller
    monkeypatch.setenv("PUSHGATE_EVENT_TTL_S", "100")
    monkeypatch.setenv("PUSHGATE_MAX_EVENT_TTL_S", "10")
    message = error()
    assert "event_ttl_s" in message and "max_event_ttl_s" in message


def test_missing_config_file_is_reported_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert str(path) in error(path)


def test_invalid_toml_is_reported_with_its_path(tmp_path: Path) -> None:
    path = write(tmp_path, "port = = 1\n")
    assert str(path) in error(path)


def test_pushgate_entry_that_is_not_a_table_is_reported(tmp_path: Path) -> None:
    assert "[pushgate]" in error(write(tmp_path, 'pushgate = "x"\n'))


def test_settings_class_forbids_unknown_fields() -> None:
    with pytest.raises(ValueError, match="nonsense"):
        Settings(nonsense=1)  # type: ignore[call-arg]


def test_keyless_pushca_open_connection_needs_its_allow_lists() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(pushca_public_open_connection=True, pushca_public_workspaces="w1")
    assert "pushca_public_applications must list" in str(info.value)
    assert "pushca_public_workspaces and" not in str(info.value)
    s = load_settings(pushca_public_open_connection=True, pushca_public_workspaces="w1, w2",
                      pushca_public_applications='["chat"]')
    assert s.pushca_public_workspaces == ["w1", "w2"] and s.pushca_public_applications == ["chat"]
    assert not load_settings().pushca_public_open_connection  # off by default


@pytest.mark.parametrize(("value", "address"), [
    (None, "127.0.0.1:0"), ("", "127.0.0.1:0"), ("off", None), ("OFF", None),
    ("0.0.0.0:7702", "0.0.0.0:7702"), ("[::]:7702", "[::]:7702"),
])
def test_the_routers_framed_link_address(value: str | None, address: str | None) -> None:
    """Unset: router_listen's host, any port; ``off``: no framed listener."""
    s = Settings(router_listen="127.0.0.1:7700", router_link_listen=value)  # type: ignore[call-arg]
    assert s.router_link_address() == address


def test_a_bad_flag_value_is_named_as_the_setting_not_the_valid_environment_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``PUSHGATE_PORT=9000 pushgate serve --port 70000``: the flag's value is the bad one."""
    monkeypatch.setenv("PUSHGATE_PORT", "9000")
    message = error(port=70000)
    assert "port:" in message and "PUSHGATE_PORT" not in message
    monkeypatch.setenv("PUSHGATE_PORT", "70000")
    assert "PUSHGATE_PORT:" in error()  # the environment's value is the bad one


@pytest.mark.parametrize(("overrides", "key", "words"), [
    ({"store_url": "foo://bar"}, "store_url", "sqlite+aiosqlite"),
    ({"store_url": "postgresql://h/db"}, "store_url", "mysql+asyncmy"),
    ({"directory_url": "foo://x"}, "directory_url", "redis+sentinel://"),
    ({"jwt_public_key": "/nonexistent.pem", "jwt_algorithms": ["RS256"]}, "jwt_public_key",
     "No such file"),
    ({"jwt_private_key": "/nonexistent.pem"}, "jwt_private_key", "No such file"),
], ids=["store-scheme", "store-postgres", "directory-scheme", "public-key-file",
        "private-key-file"])
def test_unusable_backend_urls_and_key_files_are_settings_errors(
        overrides: dict[str, object], key: str, words: str) -> None:
    """Refused when the settings load (exit code 2 and the key's name), not by a traceback
    when the store, the directory or the token codec is made."""
    message = error(**overrides)
    assert f"{key}:" in message and words in message, message


def test_every_directory_scheme_the_engines_take_is_accepted() -> None:
    from pushgate.router.directory.engines import SCHEMES

    for scheme in (*SCHEMES, "memory://"):
        assert load_settings(directory_url=scheme + "h").directory_url == scheme + "h"
    for url in ("sqlite:///x.db", "sqlite+aiosqlite:///x.db", "mysql://u@h/d",
                "mysql+asyncmy://u@h/d", "mariadb+asyncmy://u@h/d"):
        assert load_settings(store_url=url).store_url == url


def test_a_pem_key_file_is_accepted(tmp_path: Path) -> None:
    pem = tmp_path / "key.pem"
    pem.write_text(_ec_keys()[0])
    s = load_settings(jwt_public_key=str(pem), jwt_algorithms=["ES256"])
    assert s.jwt_public_key == str(pem)


@pytest.mark.parametrize("key, url", [
    ("store_url", "root:s3cret@127.0.0.1:3306/db"),           # no scheme
    ("store_url", "mysql+asyncmy//root:s3cret@127.0.0.1/db"),  # a typo in '://'
    ("store_url", "mysql+asyncmy://root:s3cret@127.0.0.1:port/db"),  # a port not a number
    ("directory_url", "default:s3cret@127.0.0.1:6379"),
])
def test_a_malformed_url_is_refused_without_its_password(key: str, url: str) -> None:
    with pytest.raises(SettingsError) as e:
        load_settings(**{key: url})
    assert key in str(e.value) and "s3cret" not in str(e.value), str(e.value)


@pytest.mark.parametrize("url", ["mysql+asyncmy://root:s3cret@127.0.0.1:3306/",
                                 "mysql://root@db", "sqlite:///", "sqlite+aiosqlite://"])
def test_a_store_url_without_a_database_is_refused(url: str) -> None:
    """(The driver failed at start with "AssertionError: " and nothing else.)"""
    with pytest.raises(SettingsError, match=r"store_url: .*the URL names no database") as e:
        load_settings(store_url=url)
    assert "s3cret" not in str(e.value)
