"""The worker never imports the tools wing (`harness`): its image ships without it."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_worker_and_its_cli_imports_no_tool() -> None:
    # A fresh interpreter: this test process has imported harness already (fixtures).
    code = (
        "import sys, agents.app, agents.cli\n"
        "print(sorted(m for m in sys.modules if m == 'harness' or m.startswith('harness.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
    # ...and the check can fail: importing a tool does show up.
    tool = subprocess.run(
        [sys.executable, "-c", code.replace("agents.cli", "agents.cli, harness.commands")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "'harness'" in tool.stdout


def test_the_worker_command_line_loads_no_tool_command() -> None:
    code = (
        "import sys\n"
        "from agents.cli import _parser\n"
        "_parser('worker')\n"
        "print(sorted(m for m in sys.modules if m.startswith('harness')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
