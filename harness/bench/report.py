"""The results on the console and as a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.bench.config import MAX, SYSTEMS

__all__ = ["plot", "print_results"]

# -- reporting ---------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def print_results(results: dict[str, Any], console: Console) -> None:
    engine = results["engine_only"]
    table = Table(title="rebate-engine bench: fill-to-credit, measured outside the worker")
    for name, justify in (
        ("broker", "left"), ("system", "left"), ("load", "right"), ("sustained fills/s", "right"),
        ("p50 ms", "right"), ("p99 ms", "right"), ("max ms", "right"),
        ("p99 of each run", "right"), ("worker hist p50/p99", "right"),
        ("CPU ms/fill", "right"), ("RSS MB", "right"), ("other load", "right"),
        ("credits", "left"),
    ):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    table.add_row(
        "-", "engine only", "1 core", _fmt(engine["fills_per_s"]), "-", "-", "-", "-", "-",
        _fmt(1000 / engine["fills_per_s"], ".3f"), "-", "-", f"{engine['credits']:,} (offline)",
    )  # fmt: skip
    for s in results["summary"]:
        lat = s["latency_ms"] or {}
        hist = s["worker_histogram"]
        load = "max (drain)" if s["load"] == MAX else f"{int(s['offered_per_s']):,}/s"
        table.add_row(
            s["broker"],
            s["system"],
            load,
            _fmt(s["sustained_per_s"]),
            _fmt(lat.get("p50"), ".1f"),
            _fmt(lat.get("p99"), ".1f"),
            _fmt(lat.get("max"), ".1f"),
            " / ".join(f"{p:.0f}" for p in s["p99_ms_runs"] if p is not None) or "-",
            f"{hist['p50_ms']:.1f} / {hist['p99_ms']:.1f}" if hist and s["latency_ms"] else "-",
            _fmt(s["cpu_ms_per_fill"], ".3f"),
            _fmt(s["rss_end_mb"], ".0f"),
            f"{max(0.0, s['cpu_s'].get('other', 0.0)) / s['seconds']:.2f} cores"
            if s["seconds"]
            else "-",
            ("ok " if s["credits_match"] else "MISMATCH ") + f"{s['credits']:,}",
        )
    console.print(table)
    verdict = {True: "[green]met[/green]", False: "[red]missed[/red]", None: "-"}
    for broker, b in results["brokers"].items():
        targets = b["targets"]
        started = f", started in {b['start_s']} s" if b["start_s"] is not None else ""
        console.print(f"[bold]{broker}[/bold] ({b['bootstrap_servers']}{started})")
        console.print(
            f"  faust_to_raw_ratio (max sustained, Faust / plain): {b['faust_to_raw_ratio']}"
            f"  target >= 0.5: {verdict[targets['faust_max_at_least_half_of_plain']]}"
            f"  (CPU per fill, plain / Faust, at max: {b['faust_to_raw_cpu_ratio']})"
        )
        console.print(
            f"  p99_ratio_at_1000 (Faust p99 / plain p99 at 1,000/s): {b['p99_ratio_at_1000']}"
            f"  target <= 1.5: {verdict[targets['faust_p99_at_1000_within_1_5x_plain']]},"
            f" Faust p99 {_fmt(b['faust_p99_at_1000_ms'], '.1f')} ms"
            f" < 50 ms: {verdict[targets['faust_p99_at_1000_below_50ms']]}"
            f" (broker floor, echo p99: {_fmt(b['echo_p99_at_1000_ms'], '.1f')} ms)"
        )


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415 - dev extra; imported only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    colors = {"faust": "tab:blue", "plain": "tab:orange", "echo": "tab:green"}
    # One broker: solid lines as before; the second broker's curves are fainter.
    alphas = dict(zip(results["brokers"], (1.0, 0.45), strict=False))
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5))
    for broker, system in ((b, s) for b in results["brokers"] for s in SYSTEMS):
        runs = [s for s in results["summary"] if s["system"] == system and s["broker"] == broker]
        alpha = alphas.get(broker, 0.3)
        name = f"{broker} {system}" if len(alphas) > 1 else system
        fixed = sorted((s for s in runs if s["latency_ms"]), key=lambda s: s["sustained_per_s"])
        if fixed:
            x = [s["sustained_per_s"] for s in fixed]
            left.plot(
                x,
                [s["latency_ms"]["p99"] for s in fixed],
                "o-",
                color=colors[system],
                alpha=alpha,
                label=f"{name} p99",
            )
            left.plot(
                x,
                [s["latency_ms"]["p50"] for s in fixed],
                "s--",
                color=colors[system],
                alpha=0.6 * alpha,
                label=f"{name} p50",
            )
        for s in runs:
            if s["load"] == MAX and s["sustained_per_s"]:
                left.axvline(
                    s["sustained_per_s"],
                    color=colors[system],
                    linestyle=":",
                    alpha=alpha,
                    label=f"{name} max {s['sustained_per_s']:,.0f}/s",
                )
        at_1000 = next((s for s in runs if s["load"] == "1000" and s["latency_per_second"]), None)
        if at_1000:
            series = at_1000["latency_per_second"]
            right.plot(
                [p[0] for p in series],
                [p[2] for p in series],
                color=colors[system],
                alpha=alpha,
                label=f"{name} p99",
            )
            right.plot(
                [p[0] for p in series],
                [p[1] for p in series],
                color=colors[system],
                linestyle="--",
                alpha=0.6 * alpha,
                label=f"{name} p50",
            )
    engine_rate = results["engine_only"]["fills_per_s"]
    left.axvline(
        engine_rate, color="gray", linestyle="-.", label=f"engine only {engine_rate:,.0f}/s"
    )
    left.axhline(50, color="red", linewidth=0.8, alpha=0.5, label="50 ms")
    for axes, xlabel, title in (
        (
            left,
            "sustained fills/s",
            "latency vs throughput (fixed offered loads; dotted: max drain rate)",
        ),
        (right, "seconds into the run", "latency per second at 1,000 fills/s"),
    ):
        axes.set(xlabel=xlabel, ylabel="fill-to-credit latency, ms", title=title)
        axes.set_yscale("log")
        axes.legend(fontsize=8)
        axes.grid(True, which="both", alpha=0.3)
    machine = results["machine"]
    fig.suptitle(f"rebate-engine bench, {machine['cores']} cores, {machine['cpu']}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
