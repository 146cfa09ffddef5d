"""Running engine workers as child processes: for the demo, the Kafka replay, tests and bench.

A worker is `rebate-engine worker` in its own process (so it can be SIGTERMed, SIGKILLed and
restarted like in production), configured through the environment like any deployment.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import orjson

from agents.settings import Settings, env_var_name
from harness.embedded import die_with_parent_thread

__all__ = ["WorkerProcess", "free_port", "settings_env"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def settings_env(settings: Settings, **overrides: object) -> dict[str, str]:
    """Environment variables that reproduce `settings` (plus overrides) in a child process."""
    env: dict[str, str] = {}
    values = {**settings.model_dump(), **overrides}
    for name, value in values.items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[env_var_name(name)] = str(value)
    return env


@dataclass
class WorkerProcess:
    """One `rebate-engine worker` child; stop it by PID, whatever happens to the parent."""

    settings: Settings
    log_path: Path
    web_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> WorkerProcess:
        env = {
            **os.environ,
            **settings_env(self.settings, web_port=self.web_port, web_host="127.0.0.1"),
        }
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agents.cli", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal's Ctrl-C goes to us, we stop it cleanly
            preexec_fn=die_with_parent_thread(),  # noqa: PLW1509 - only sets PDEATHSIG
        )
        log.close()
        return self

    def readiness(self) -> dict[str, object] | None:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                return cast(dict[str, object], orjson.loads(response.read()))
        except urllib.error.HTTPError as exc:  # 503 while not ready: still a JSON answer
            try:
                return cast(dict[str, object], orjson.loads(exc.read()))
            except ValueError:  # any other error page: not ready yet
                return None
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"worker exited with {self.process.returncode}: {self.log_tail()}"
                )
            state = self.readiness()
            if state and state.get("ready"):
                return
            time.sleep(0.25)
        raise TimeoutError(f"worker not ready after {timeout_s:.0f} s: {self.log_tail()}")

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            text: str = response.read().decode()
            return text

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 30.0) -> int | None:
        """Signal the worker and wait; SIGKILL if it does not stop in time. Returns its code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)

    def kill(self) -> None:
        """kill -9: no cleanup, no commit, no leaving the group."""
        self.stop(signal.SIGKILL, timeout_s=10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
