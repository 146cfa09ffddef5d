"""Profiling a system with py-spy and summarizing where the time goes."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

from harness.bench.systems import System

__all__ = ["py_spy"]


async def py_spy(system: System, out: Path, seconds: float) -> str:
    """py-spy the system for `seconds`: a flame graph (SVG) and a text summary of where the
    time goes (from a second, raw recording taken at the same time)."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    pid = str(system.pid)
    common = ["--pid", pid, "--duration", str(int(seconds)), "--rate", "200", "--nonblocking"]
    folded = out.with_suffix(".folded")
    procs = [
        await asyncio.create_subprocess_exec(
            exe,
            "record",
            "-o",
            str(out),
            *common,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        ),
        await asyncio.create_subprocess_exec(
            exe,
            "record",
            "--format",
            "raw",
            "--full-filenames",
            "-o",
            str(folded),
            *common,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        ),
    ]
    for proc in procs:
        await proc.wait()
    try:
        text = await asyncio.to_thread(folded.read_text)
    except OSError as exc:
        return f"py-spy failed: {exc}"
    summary = _profile_summary(text)
    await asyncio.to_thread(out.with_suffix(".txt").write_text, summary)
    return summary


# Where a sample's leaf frame lives, by path fragment; first match wins.
_AREAS = (
    ("/engine/", "engine (pure domain)"),
    ("/agents/", "agents (pipeline, store, codec, app)"),
    ("/faust/", "faust + mode (stream machinery)"),
    ("/mode/", "faust + mode (stream machinery)"),
    ("/aiokafka/", "aiokafka (client)"),
    ("/redis/", "redis-py"),
    ("/prometheus_client/", "prometheus_client"),
    ("/asyncio/", "asyncio + selectors (event loop, I/O)"),
    ("/selectors.py", "asyncio + selectors (event loop, I/O)"),
    ("/threading.py", "threads"),
)
_HOT_PATH = "FillProcessor.process"


def _profile_summary(folded: str, top: int = 25) -> str:
    """Where the samples of py-spy's raw (folded) output go: by area (leaf frame's package),
    inside vs outside the shared hot path, and the hottest functions."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    areas: dict[str, int] = {}
    total = in_hot_path = 0
    for line in folded.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        raw = stack.split(";")
        frames = [_frame_name(f) for f in raw]
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        area = next((name for key, name in _AREAS if key in raw[-1]), "other")
        areas[area] = areas.get(area, 0) + count
        if any(f.startswith(_HOT_PATH + " ") for f in raw):
            in_hot_path += count
    if not total:
        return "no samples"

    def pct(count: int) -> str:
        return f"{100 * count / total:5.1f}"

    lines = [
        f"{total} samples; {pct(in_hot_path).strip()}% inside {_HOT_PATH} (the shared hot path)",
        "",
        "self%  area (package of the sampled leaf frame)",
        *(f"{pct(c)}  {a}" for a, c in sorted(areas.items(), key=lambda kv: -kv[1])),
        "",
        "inclusive%  self%  function",
        *(
            f"    {pct(c)}  {pct(own.get(f, 0))}  {f}"
            for f, c in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]
        ),
        "",
        "self%  function (hottest leaves)",
        *(f"{pct(c)}  {f}" for f, c in sorted(own.items(), key=lambda kv: -kv[1])[:top]),
    ]
    return "\n".join(lines) + "\n"


def _frame_name(frame: str) -> str:
    # "function (/long/path/to/pkg/file.py:123)" -> "function (pkg/file.py)"
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(file).parts
    short = "/".join(parts[-2:]) if parts else file
    return f"{name} ({short})"
