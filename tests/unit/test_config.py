"""Settings: flag > environment > default, typed parsing, and checks that name the setting."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from roomserver import config
from roomserver.config import OPTIONS, ConfigError, Settings

SECRET = "config-test-secret-0123456789-abcdefgh"


def load(flags: dict[str, object] | None = None, **env: str) -> Settings:
    environ = {"ROOMSERVER_SECRET": SECRET, **env}
    return config.load(flags or {}, environ=environ)


# --- precedence -------------------------------------------------------------------------


def test_defaults_apply_when_nothing_is_set() -> None:
    settings = load()
    assert settings.port == 8080
    assert settings.host == "0.0.0.0"
    assert settings.chat_rate == 5.0
    assert settings.max_cohosts == 3
    assert settings.words == ()


def test_env_beats_default() -> None:
    settings = load(ROOMSERVER_PORT="9001", ROOMSERVER_CHAT_RATE="2.5")
    assert settings.port == 9001
    assert settings.chat_rate == 2.5


def test_flag_beats_env() -> None:
    settings = load(
        {"port": "9002", "chat_rate": "7"}, ROOMSERVER_PORT="9001", ROOMSERVER_CHAT_RATE="2.5"
    )
    assert settings.port == 9002
    assert settings.chat_rate == 7.0


def test_flag_none_falls_through_to_env() -> None:
    # argparse leaves unset flags as None; the environment fills them.
    settings = load(
        {"port": None, "host": None}, ROOMSERVER_PORT="9003", ROOMSERVER_HOST="10.0.0.1"
    )
    assert (settings.host, settings.port) == ("10.0.0.1", 9003)


def test_flags_from_argparse() -> None:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    args = parser.parse_args(["--port", "9100", "--max-cohosts", "5"])
    settings = config.load(
        vars(args), environ={"ROOMSERVER_MAX_COHOSTS": "2", "ROOMSERVER_SECRET": SECRET}
    )
    assert settings.port == 9100
    assert settings.max_cohosts == 5


def test_already_typed_flag_values_are_kept() -> None:
    settings = load({"port": 1234, "chat_burst": 3.5})
    assert settings.port == 1234
    assert settings.chat_burst == 3.5


def test_environ_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROOMSERVER_SECRET", SECRET)
    monkeypatch.setenv("ROOMSERVER_HISTORY_SIZE", "77")
    assert config.load({}).history_size == 77


def test_overrides_win_and_unknown_overrides_fail() -> None:
    settings = config.load({"port": "1"}, environ={"ROOMSERVER_SECRET": SECRET}, port=2)
    assert settings.port == 2
    with pytest.raises(ConfigError, match="unknown settings: bogus"):
        config.load({}, environ={"ROOMSERVER_SECRET": SECRET}, bogus=1)


# --- parsing errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"), [("port", "abc"), ("chat_rate", "fast"), ("history_size", "1.5")]
)
def test_bad_flag_value_names_the_flag(name: str, value: str) -> None:
    flag = "--" + name.replace("_", "-")
    with pytest.raises(ConfigError) as info:
        load({name: value})
    assert str(info.value).startswith(flag + ":")


@pytest.mark.parametrize(
    ("var", "value"), [("ROOMSERVER_PORT", "x80"), ("ROOMSERVER_CHAT_BURST", "lots")]
)
def test_bad_env_value_names_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(**{var: value})
    assert str(info.value).startswith(var + ":")


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# --- positive options -------------------------------------------------------------------


POSITIVE = [opt for opt in OPTIONS if opt.positive]


def test_positive_options_are_the_expected_ones() -> None:
    names = {opt.name for opt in POSITIVE}
    assert {"history_size", "chat_rate", "chat_burst", "max_cohosts", "send_queue_limit"} <= names
    assert "port" not in names


@pytest.mark.parametrize("opt", POSITIVE, ids=lambda o: o.name)
def test_positive_options_refuse_zero(opt: config.Option) -> None:
    with pytest.raises(ConfigError, match=f"^{opt.flag}: must be greater than 0"):
        load({opt.name: "0"})
    with pytest.raises(ConfigError, match=f"^{opt.env}: must be greater than 0"):
        load(**{opt.env: "-1"})
    assert getattr(load({opt.name: "1"}), opt.name) == 1


@pytest.mark.parametrize("name", ["chat_rate", "auto_mute_window_s"])
def test_positive_float_options_refuse_nan(name: str) -> None:
    with pytest.raises(ConfigError):
        load({name: "nan"})


# --- secret -----------------------------------------------------------------------------


def test_short_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="secret: must be at least 32 characters"):
        config.load({"secret": "x" * 31}, environ={})
    with pytest.raises(ConfigError, match="secret"):
        config.load({}, environ={"ROOMSERVER_SECRET": "short"})


def test_secret_of_32_characters_is_kept() -> None:
    settings = config.load({"secret": "s" * 32}, environ={})
    assert settings.secret == "s" * 32
    assert settings.secret_generated is False


def test_empty_secret_is_generated() -> None:
    first = config.load({}, environ={})
    second = config.load({}, environ={"ROOMSERVER_SECRET": ""})
    for settings in (first, second):
        assert settings.secret_generated is True
        assert len(settings.secret) >= 32
    assert first.secret != second.secret


def test_node_id_is_generated_unless_set() -> None:
    assert load().node_id.startswith("n-")
    assert load(ROOMSERVER_NODE_ID="edge-1").node_id == "edge-1"


@pytest.mark.parametrize("port", ["-1", "65536"])
def test_port_out_of_range(port: str) -> None:
    with pytest.raises(ConfigError, match="port"):
        load({"port": port})


def test_log_level_is_checked() -> None:
    assert load({"log_level": "DEBUG"}).log_level == "DEBUG"
    with pytest.raises(ConfigError, match="log-level"):
        load({"log_level": "chatty"})


# --- words and paths --------------------------------------------------------------------


def test_words_parses_comma_lists() -> None:
    assert load({"words": "spam, scam ,,  fraud "}).words == ("spam", "scam", "fraud")
    assert load(ROOMSERVER_WORDS="one").words == ("one",)
    assert load({"words": " , ,"}).words == ()


def test_web_dir_is_a_path() -> None:
    settings = load(ROOMSERVER_WEB_DIR="/srv/web")
    assert settings.web_dir == Path("/srv/web")


# --- url --------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", ""])
def test_url_of_wildcard_host_uses_loopback(host: str) -> None:
    assert Settings(host=host, port=8123).url() == "http://127.0.0.1:8123"


def test_url_of_a_concrete_host() -> None:
    assert Settings(host="10.1.2.3", port=81).url() == "http://10.1.2.3:81"


def test_url_of_an_ipv6_host_is_bracketed() -> None:
    assert Settings(host="::1", port=8080).url() == "http://[::1]:8080"


def test_url_prefers_public_url_without_trailing_slash() -> None:
    settings = load(ROOMSERVER_PUBLIC_URL="https://live.example.com/")
    assert settings.url() == "https://live.example.com"


# --- describe ---------------------------------------------------------------------------


def test_describe_lists_every_flag_and_variable() -> None:
    text = config.describe()
    lines = text.splitlines()
    assert lines[0] == "| flag | variable | meaning |"
    assert len(lines) == 2 + len(OPTIONS)
    for opt in OPTIONS:
        assert f"| `{opt.flag}` | `{opt.env}` | {opt.help} |" in lines
    assert "`--max-cohosts`" in text and "`ROOMSERVER_MAX_COHOSTS`" in text


def test_option_flag_and_env_names() -> None:
    opt = next(o for o in OPTIONS if o.name == "auto_mute_window_s")
    assert opt.flag == "--auto-mute-window-s"
    assert opt.env == "ROOMSERVER_AUTO_MUTE_WINDOW_S"
    assert len({o.flag for o in OPTIONS}) == len(OPTIONS)
