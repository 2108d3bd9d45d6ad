"""``roomserver config check FILE`` and ``roomserver serve --config FILE`` as subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import aiohttp
import pytest

from tests.harness import SECRET
from tests.redis_server import free_port
from tests.served import ROOT, serve

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "deploy" / "roomserver.toml"


def check(path: Path, **env: str) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSERVER_")}
    clean["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "roomserver.cli", "config", "check", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**clean, **env},
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_a_valid_file_prints_the_effective_settings_with_the_secret_masked(
    tmp_path: Path,
) -> None:
    path = tmp_path / "node.toml"
    path.write_text(f'secret = "{SECRET}"\nport = 9100\nwords = ["spam"]\nmax_cohosts = 2\n')
    code, out, err = check(path, ROOMSERVER_MAX_COHOSTS="4")
    assert code == 0, err
    assert SECRET not in out + err
    assert out.startswith(f"# {path}: valid")
    assert f'secret = "********"  # {path}' in out
    assert f"port = 9100  # {path}" in out
    assert "max_cohosts = 4  # ROOMSERVER_MAX_COHOSTS" in out  # the environment wins
    assert "history_size = 1000\n" in out  # defaults are shown too
    settings = tomllib.loads(out)
    assert settings["words"] == ["spam"]


@pytest.mark.parametrize(
    # Every kind of error is in tests/unit/test_config_file.py; here, the exit code and stream.
    ("text", "expected"),
    [
        ("prot = 80\n", "unknown key 'prot' (did you mean 'port'?)"),
        ("max_cohosts = 0\n", "max_cohosts: must be greater than 0"),
    ],
)
def test_a_bad_file_exits_2_naming_the_file_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    code, out, err = check(path)
    assert code == 2
    assert out == ""
    assert err.startswith(f"roomserver: {path}: {expected}"), err


def test_a_bad_environment_value_fails_the_check(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text("port = 9100\n")
    code, _, err = check(path, ROOMSERVER_LOG_FORMAT="xml")
    assert code == 2 and "ROOMSERVER_LOG_FORMAT: must be text or json" in err


def test_the_shipped_example_is_valid() -> None:
    code, out, err = check(EXAMPLE, ROOMSERVER_SECRET=SECRET)
    assert code == 0, err
    assert 'trusted_proxy = ["127.0.0.1"]' in out and SECRET not in out


async def test_serve_reads_the_file_and_flags_override_it(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "node.toml"
    path.write_text(
        f'secret = "{SECRET}"\nport = {port}\nnode_id = "from-file"\nlog_format = "json"\n'
    )
    async with serve("--config", str(path), "--node-id", "from-flag") as node:
        # serve() passes --port 0 as a flag; the flag beats the file's port.
        assert node.url != f"http://127.0.0.1:{port}"
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            async with http.get(node.url + "/healthz") as resp:
                assert (await resp.json())["node"] == "from-flag"
            headers = {"Authorization": f"Bearer {SECRET}"}
            async with http.get(node.url + "/api/rooms/none", headers=headers) as resp:
                assert resp.status == 404  # the file's secret is the API's secret
        await node.stop()
    assert not any("generated secret" in line for line in node.stdout)
    assert node.stderr and all(line.startswith('{"ts":') for line in node.stderr)
