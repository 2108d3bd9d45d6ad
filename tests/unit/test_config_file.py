"""The TOML configuration file: flag > environment > file > default, and errors that name
the key and the file; TLS, trusted proxies, webhook settings and the masked rendering."""

from __future__ import annotations

import re
import ssl
import tomllib
from pathlib import Path
from typing import Any

import pytest

from roomserver import config
from roomserver.config import OPTIONS, ConfigError, Settings
from tests.certs import self_signed

SECRET = "file-test-secret-0123456789-abcdefghijk"


def write(tmp_path: Path, text: str, name: str = "roomserver.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(path: Path | None, flags: dict[str, Any] | None = None, **env: str) -> config.Settings:
    flags = dict(flags or {})
    if path is not None:
        flags["config"] = str(path)
    return config.load(flags, environ={"ROOMSERVER_SECRET": SECRET, **env})


# --- precedence -------------------------------------------------------------------------


def test_file_beats_default(tmp_path: Path) -> None:
    path = write(tmp_path, 'port = 9001\nchat_rate = 2\nwords = ["spam", "scam"]\nmedia = false\n')
    settings = load(path)
    assert settings.port == 9001
    assert settings.chat_rate == 2.0 and isinstance(settings.chat_rate, float)
    assert settings.words == ("spam", "scam")
    assert settings.media is False
    assert settings.max_cohosts == 3  # not in the file: the default


def test_env_beats_file_and_flag_beats_env(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 9001\nmax_cohosts = 4\nhistory_size = 10\n")
    settings = load(
        path,
        {"port": "9003"},
        ROOMSERVER_PORT="9002",
        ROOMSERVER_MAX_COHOSTS="5",
    )
    assert settings.port == 9003  # flag
    assert settings.max_cohosts == 5  # environment
    assert settings.history_size == 10  # file


def test_repeatable_flag_beats_a_file_list(tmp_path: Path) -> None:
    path = write(tmp_path, 'rtc_ip = ["192.0.2.1", "192.0.2.2"]\n')
    assert load(path).rtc_ip == ("192.0.2.1", "192.0.2.2")
    assert load(path, {"rtc_ip": ["192.0.2.9"]}).rtc_ip == ("192.0.2.9",)
    assert load(path, ROOMSERVER_RTC_IP="192.0.2.8,192.0.2.7").rtc_ip == ("192.0.2.8", "192.0.2.7")


def test_the_file_can_come_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 9001\n")
    other = write(tmp_path, "port = 9005\n", "other.toml")
    assert load(None, ROOMSERVER_CONFIG=str(path)).port == 9001
    assert load(other, ROOMSERVER_CONFIG=str(path)).port == 9005  # --config wins
    assert load(None, ROOMSERVER_CONFIG="").port == 8080


def test_the_secret_may_come_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, f'secret = "{SECRET}x"\n')
    settings = config.load({"config": str(path)}, environ={})
    assert settings.secret == SECRET + "x"
    assert settings.secret_generated is False


def test_an_empty_file_is_all_defaults(tmp_path: Path) -> None:
    assert load(write(tmp_path, "# nothing\n")).port == 8080


def value_for(opt: config.Option) -> tuple[str, Any]:
    """A valid TOML literal for ``opt`` and the value it must load as."""
    if opt.name in ("tls_cert", "tls_key"):
        return '""', None
    specials: dict[str, tuple[str, Any]] = {
        "secret": (f'"{SECRET}"', SECRET),
        "log_level": ('"debug"', "debug"),
        "log_format": ('"json"', "json"),
        "port": ("8123", 8123),
        "trusted_proxy": ('["10.0.0.0/8"]', ("10.0.0.0/8",)),
        "webhook": ('["https://shop.example/hook"]', ("https://shop.example/hook",)),
        "web_dir": ('"/srv/web"', Path("/srv/web")),
    }
    if opt.name in specials:
        return specials[opt.name]
    if opt.parse is int:
        return "7", 7
    if opt.parse is float:
        return "2.5", 2.5
    if opt.parse is config._bool:
        return "false", False
    if opt.parse is config._words:
        return '["a", "b"]', ("a", "b")
    return '"x"', "x"


@pytest.mark.parametrize("opt", OPTIONS, ids=lambda o: o.name)
def test_every_setting_is_a_file_key(tmp_path: Path, opt: config.Option) -> None:
    literal, expected = value_for(opt)
    settings = load(write(tmp_path, f"{opt.name} = {literal}\n"))
    assert getattr(settings, opt.name) == expected


# --- errors name the key and the file ---------------------------------------------------


def error(tmp_path: Path, text: str, **env: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path, **env)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message[len(str(path)) + 2 :]


def test_an_unknown_key_is_an_error(tmp_path: Path) -> None:
    assert error(tmp_path, "colour = 1\n") == "unknown key 'colour'"


def test_an_unknown_key_suggests_the_snake_case_name(tmp_path: Path) -> None:
    message = error(tmp_path, "max-cohosts = 2\nchat_rat = 1.0\n")
    assert "unknown key 'max-cohosts' (did you mean 'max_cohosts'?)" in message
    assert "unknown key 'chat_rat' (did you mean 'chat_rate'?)" in message


def test_a_table_is_an_unknown_key(tmp_path: Path) -> None:
    assert error(tmp_path, "[server]\nport = 1\n").startswith("unknown key 'server'")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('port = "8080"', "port: must be an integer, not a string ('8080')"),
        ("port = 80.5", "port: must be an integer, not a float (80.5)"),
        ("max_cohosts = true", "max_cohosts: must be an integer, not a boolean (True)"),
        ('chat_rate = "fast"', "chat_rate: must be a number, not a string ('fast')"),
        ('media = "off"', "media: must be a boolean (true or false), not a string ('off')"),
        ('words = "spam,scam"', "words: must be an array of strings, not a string ('spam,scam')"),
        ("rtc_ip = [1, 2]", "rtc_ip: must be an array of strings, not an array ([1, 2])"),
        ("host = 127", "host: must be a string, not an integer (127)"),
        ("web_dir = 1", "web_dir: must be a string (a path), not an integer (1)"),
    ],
)
def test_a_value_of_the_wrong_type_is_named(tmp_path: Path, text: str, expected: str) -> None:
    assert error(tmp_path, text + "\n") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max_cohosts = 0", "max_cohosts: must be greater than 0"),
        ("chat_rate = -1.5", "chat_rate: must be greater than 0"),
        ("chat_rate = nan", "chat_rate: must be greater than 0"),
        ("chat_rate = inf", "chat_rate: must be a finite number"),
        ("port = 70000", "port: must be 0-65535"),
        ('log_level = "chatty"', "log_level: must be debug, info, warning or error"),
        ('log_format = "xml"', "log_format: must be text or json"),
        ('secret = "short"', "secret: must be at least 32 characters"),
        ('trusted_proxy = ["nginx"]', "trusted_proxy: not an IP address or CIDR block: 'nginx'"),
        ('webhook = ["ftp://x/y"]', "webhook: not an http(s) URL: 'ftp://x/y'"),
        ("webhook_retry_s = 0", "webhook_retry_s: must be greater than 0"),
        ("stats_retention_s = -1", "stats_retention_s: must be greater than 0"),
    ],
)
def test_a_bad_value_is_named(tmp_path: Path, text: str, expected: str) -> None:
    assert error(tmp_path, text + "\n").startswith(expected)


def test_a_bad_file_value_is_refused_even_when_a_flag_overrides_it(tmp_path: Path) -> None:
    # The file is checked whole: a broken key would bite as soon as the flag is dropped.
    path = write(tmp_path, "max_cohosts = 0\n")
    with pytest.raises(
        ConfigError, match=f"^{re.escape(str(path))}: max_cohosts: must be greater than 0"
    ):
        load(path, {"max_cohosts": "2"})


def test_invalid_toml_is_named(tmp_path: Path) -> None:
    assert error(tmp_path, "port = \n").startswith("not valid TOML: ")


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(
        ConfigError, match=f"^{re.escape(str(path))}: cannot read: No such file or directory"
    ):
        load(path)


def test_env_and_flag_errors_still_name_their_source(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 9001\n")
    with pytest.raises(ConfigError, match=r"^ROOMSERVER_PORT: invalid literal"):
        load(path, ROOMSERVER_PORT="x")
    with pytest.raises(ConfigError, match=r"^--log-format: must be text or json"):
        load(path, {"log_format": "xml"})
    with pytest.raises(ConfigError, match=r"^ROOMSERVER_TRUSTED_PROXY: not an IP address"):
        load(path, ROOMSERVER_TRUSTED_PROXY="10.0.0.1,proxy.local")


# --- paths and TLS ----------------------------------------------------------------------


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = write(tmp_path / "conf", 'web_dir = "../web"\n')
    assert load(path).web_dir == tmp_path / "conf" / ".." / "web"


def test_tls_files_load_and_make_the_url_https(tmp_path: Path) -> None:
    files = self_signed(tmp_path)
    path = write(tmp_path, f'tls_cert = "{files.cert.name}"\ntls_key = "{files.key.name}"\n')
    settings = config.load({"config": str(path), "port": "8443"}, environ={})
    assert settings.tls_cert == files.cert and settings.tls_key == files.key
    assert settings.url() == "https://127.0.0.1:8443"
    context = config.ssl_context(settings)
    assert isinstance(context, ssl.SSLContext)
    assert config.ssl_context(load(None)) is None


def test_tls_needs_both_files(tmp_path: Path) -> None:
    files = self_signed(tmp_path)
    with pytest.raises(ConfigError, match=r"set both .* only tls-cert is set"):
        load(None, {"tls_cert": str(files.cert)})
    with pytest.raises(ConfigError, match="only tls-key is set"):
        load(None, ROOMSERVER_TLS_KEY=str(files.key))
    assert load(None, ROOMSERVER_TLS_CERT="", ROOMSERVER_TLS_KEY="").tls_cert is None


def test_a_missing_tls_file_is_named(tmp_path: Path) -> None:
    files = self_signed(tmp_path)
    missing = tmp_path / "missing.pem"
    with pytest.raises(
        ConfigError,
        match=f"^--tls-cert: cannot read {re.escape(str(missing))}: No such file or directory",
    ):
        load(None, {"tls_cert": str(missing), "tls_key": str(files.key)})
    path = write(tmp_path, f'tls_cert = "{files.cert}"\ntls_key = "missing.pem"\n')
    with pytest.raises(
        ConfigError,
        match=f"^{re.escape(str(path))}: tls_key: cannot read {re.escape(str(missing))}",
    ):
        load(path)


def test_a_key_that_does_not_match_is_refused(tmp_path: Path) -> None:
    one, two = self_signed(tmp_path, "one"), self_signed(tmp_path, "two")
    settings = load(None, {"tls_cert": str(one.cert), "tls_key": str(two.key)})
    with pytest.raises(ConfigError, match=r"^tls-cert, tls-key: cannot use"):
        config.ssl_context(settings)
    garbage = write(tmp_path, "not a certificate", "garbage.pem")
    settings = load(None, {"tls_cert": str(garbage), "tls_key": str(one.key)})
    with pytest.raises(ConfigError, match=r"^tls-cert, tls-key: cannot use"):
        config.ssl_context(settings)


# --- new settings -----------------------------------------------------------------------


def test_webhook_and_retention_defaults() -> None:
    settings = load(None)
    assert settings.webhook == ()
    assert settings.webhook_retry_s == 300.0
    assert settings.webhook_member_events is True
    assert settings.stats_retention_s == 7 * 24 * 3600


def test_webhook_settings_from_flags_and_env() -> None:
    settings = load(
        None,
        {"webhook": ["https://a.example/h", "http://b.example/h"], "webhook_retry_s": "30"},
        ROOMSERVER_WEBHOOK_MEMBER_EVENTS="off",
        ROOMSERVER_STATS_RETENTION_S="3600",
    )
    assert settings.webhook == ("https://a.example/h", "http://b.example/h")
    assert settings.webhook_retry_s == 30.0
    assert settings.webhook_member_events is False
    assert settings.stats_retention_s == 3600


def test_trusted_proxies_from_flags() -> None:
    settings = load(None, {"trusted_proxy": ["127.0.0.1", "10.0.0.0/8,192.168.0.0/16"]})
    assert settings.trusted_proxy == ("127.0.0.1", "10.0.0.0/8", "192.168.0.0/16")


def test_code_overrides_are_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"^log-format: must be text or json"):
        config.load({}, environ={}, log_format="xml")
    with pytest.raises(ConfigError, match=r"^trusted-proxy: not an IP address"):
        config.load({}, environ={}, trusted_proxy=("x",))


# --- rendering --------------------------------------------------------------------------


def test_render_masks_the_secret_and_names_sources(tmp_path: Path) -> None:
    path = write(tmp_path, f'secret = "{SECRET}"\nport = 9001\nwords = ["a"]\n')
    values, sources = config.gather({"config": str(path)}, {"ROOMSERVER_MAX_COHOSTS": "4"})
    settings = config.finish(Settings(**values))
    text = config.render(settings, sources)
    assert SECRET not in text
    assert f'secret = "********"  # {path}' in text
    assert f"port = 9001  # {path}" in text
    assert "max_cohosts = 4  # ROOMSERVER_MAX_COHOSTS" in text
    assert "# node_id: not set" in text
    assert "# tls_cert: not set" in text
    # Everything but the comments is TOML that reads back as the same values.
    data = tomllib.loads(text)
    assert data["port"] == 9001 and data["words"] == ["a"] and data["max_cohosts"] == 4
    assert data["web_dir"] == str(settings.web_dir)


def test_render_of_a_generated_secret_says_so() -> None:
    text = config.render(config.load({}, environ={}))
    assert "# secret: not set" in text
    assert "secret =" not in text


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:hunter2@10.0.0.5:6379/0", "redis://:****@10.0.0.5:6379/0"),
        ("redis://app:hunter2@10.0.0.5/0", "redis://app:****@10.0.0.5/0"),
        ("redis://10.0.0.5:6379/0", "redis://10.0.0.5:6379/0"),
        ("turn:user:hunter2@turn.example.com:3478", "turn:user:****@turn.example.com:3478"),
        ("stun:stun.example.com:3478", "stun:stun.example.com:3478"),
    ],
)
def test_render_masks_passwords_in_urls(url: str, masked: str) -> None:
    assert config.mask_password(url) == masked
    key = "redis" if url.startswith("redis") else "ice_server"
    settings = config.load({}, environ={}, **{key: url if key == "redis" else (url,)})
    text = config.render(settings)
    assert masked in text
    assert "hunter2" not in text
