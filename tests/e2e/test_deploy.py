"""The deployment artefacts: Prometheus config and rules, Grafana dashboard, compose, Dockerfile.

Nothing here starts a container or a Prometheus server: images cannot be pulled in CI, so the
compose file is validated with `docker-compose config`, the Prometheus side with promtool
(`check config`, `check rules`, `test rules`), and every metric name the rules and the dashboard
query is checked against the engine's own registry (agents/metrics.py).

Tests that need promtool or docker-compose skip, saying so, only when the binary is missing
(`make tools` / scripts/ensure-tools installs both).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.metrics import Metrics

# tests/e2e is not a package yet (no __init__.py), so pytest puts this directory on sys.path;
# once it is one, the package path works. Either way the helper is the same module.
try:
    from tests.e2e.promql_names import (
        PROMETHEUS_SERIES,
        Selector,
        exposed_series,
        family_of,
        grafana_query_promql,
        grouping_labels,
        metric_names,
        selectors,
        unknown_names,
    )
except ImportError:
    from promql_names import (  # type: ignore[no-redef]
        PROMETHEUS_SERIES,
        Selector,
        exposed_series,
        family_of,
        grafana_query_promql,
        grouping_labels,
        metric_names,
        selectors,
        unknown_names,
    )

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS_YML = DEPLOY / "prometheus.yml"
RULES_DIR = DEPLOY / "rules"
RULE_FILES = sorted(RULES_DIR.glob("*.rules.yml"))
RULE_TESTS = sorted((RULES_DIR / "tests").glob("*.yml"))
RUNBOOK = DEPLOY / "RUNBOOK.md"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "rebate-engine.json"
GRAFANA_PROVISIONING = DEPLOY / "grafana" / "provisioning"
COMPOSE = ROOT / "docker-compose.yml"

WORKERS = ("worker-1", "worker-2")
FILLS_PARTITIONS = 8
# Labels Prometheus attaches to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})
SLO_BUCKET = "0.05"


# --- helpers -------------------------------------------------------------------------------


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (scripts/ensure-tools installs it via apt)")
    return path


def _run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # A minimal environment: no stray REBATE_*/GRAFANA_* from the caller leaks into compose.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    return subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _prometheus_pids() -> set[int]:
    """Running processes named prometheus (Linux /proc; empty elsewhere)."""
    pids = set()
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "prometheus":
                pids.add(int(comm.parent.name))
        except OSError:  # the process ended while we looked
            continue
    return pids


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _rules() -> list[dict[str, Any]]:
    return [rule for f in RULE_FILES for g in _load_yaml(f)["groups"] for rule in g["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [r for r in _rules() if "alert" in r]


def _recorded() -> dict[str, str]:
    return {r["record"]: r["expr"] for r in _rules() if "record" in r}


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def _dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in _panels(dashboard) for t in p.get("targets", []) if "expr" in t]
    for var in dashboard["templating"]["list"]:
        query = var.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        if var["type"] == "query" and isinstance(text, str):
            promql = grafana_query_promql(text)
            if promql is not None:
                exprs.append(promql)
    return exprs


def _engine_series() -> dict[str, frozenset[str]]:
    """Series names the engine exposes, with their label names.

    A labelled metric has no samples (so no known label names) until a child exists; create one
    child per labelled metric. prometheus_client has no public accessor for a metric's label
    names, hence `_labelnames`.
    """
    metrics = Metrics()
    for collector in vars(metrics).values():
        labelnames = getattr(collector, "_labelnames", ())
        if labelnames:
            collector.labels(*("x" for _ in labelnames))
    return exposed_series(metrics.registry.collect())


def _grafana_to_promql(expr: str) -> str:
    """Replace Grafana's variables so promtool can parse a dashboard query."""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", expr)
    return re.sub(r"\$\{[^}]*\}|\$[A-Za-z0-9_]+", ".*", expr)


def _compose_config() -> dict[str, Any]:
    result = _run(_tool("docker-compose"), "-f", str(COMPOSE), "config")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


# --- the PromQL name extractor the checks below rely on -------------------------------------


@pytest.mark.parametrize(
    ("expr", "names", "grouping"),
    [
        ("up", {"up"}, set()),
        (
            "histogram_quantile(0.99, sum by (op, le) (rate(rebate_redis_seconds_bucket"
            '{job=~"$job", instance=~"${instance}"}[$__rate_interval])))',
            {"rebate_redis_seconds_bucket"},
            {"op", "le"},
        ),
        (
            "(max by (job) (a_seconds) > 30) and on (job) group_left(x) (b_total offset 10m)",
            {"a_seconds", "b_total"},
            {"job", "x"},
        ),
        (
            'sum(rate(c_total{k="a{b}\\"c"}[1h:5m] @ start())) without (k) > bool 1e3',
            {"c_total"},
            {"k"},
        ),
        (
            '{__name__="d_total"} + {__name__=~"ignored_.*"} + time() + vector(1) + Inf',
            {"d_total"},
            set(),
        ),
        ('topk(5, e) or count_values("v", f) # g is a comment', {"e", "f"}, set()),
    ],
)
def test_metric_names_are_extracted_from_promql(
    expr: str, names: set[str], grouping: set[str]
) -> None:
    assert metric_names(expr) == names
    assert grouping_labels(expr) == grouping


def test_selectors_keep_matcher_label_names() -> None:
    assert selectors('x_total{a="1", b=~"2|3"} / y') == [
        Selector("x_total", frozenset({"a", "b"})),
        Selector("y", frozenset()),
    ]


def test_family_and_grafana_helpers() -> None:
    assert family_of("rebate_fills_total") == "rebate_fills"
    assert family_of("rebate_fill_to_credit_seconds_bucket") == "rebate_fill_to_credit_seconds"
    assert family_of("rebate_engine_info") == "rebate_engine"
    assert family_of("rebate_redis_up") == "rebate_redis_up"
    assert grafana_query_promql('label_values(m{job=~"a,b"}, instance)') == 'm{job=~"a,b"}'
    assert grafana_query_promql("label_values(job)") is None
    assert grafana_query_promql("query_result(sum(x))") == "sum(x)"


# --- Prometheus ----------------------------------------------------------------------------


def test_prometheus_config_is_valid_and_loads_the_rules() -> None:
    promtool = _tool("promtool")
    before = _prometheus_pids()
    result = _run(promtool, "check", "config", str(PROMETHEUS_YML))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout
    # promtool only reads files: it must not leave a server behind.
    assert _prometheus_pids() <= before


def test_rule_files_are_valid() -> None:
    assert RULE_FILES, "no deploy/rules/*.rules.yml"
    result = _run(_tool("promtool"), "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    assert RULE_TESTS, "no deploy/rules/tests/*.yml"
    result = _run(_tool("promtool"), "test", "rules", *map(str, RULE_TESTS), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_every_worker() -> None:
    config = _load_yaml(PROMETHEUS_YML)
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "rebate-engine"]
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{w}:6066" for w in WORKERS}
    assert job.get("metrics_path", "/metrics") == "/metrics"


def test_every_alert_is_documented_and_labelled() -> None:
    runbook = RUNBOOK.read_text()
    headings = set(re.findall(r"^## (\w+)\s*$", runbook, flags=re.MULTILINE))
    alerts = _alerts()
    assert alerts
    for alert in alerts:
        name = alert["alert"]
        assert alert["labels"]["severity"] in {"critical", "warning"}, name
        annotations = alert["annotations"]
        assert annotations["summary"].strip(), name
        assert annotations["description"].strip(), name
        assert annotations["runbook_url"] == f"deploy/RUNBOOK.md#{name.lower()}", name
        assert name in headings, f"deploy/RUNBOOK.md has no '## {name}' section"
    assert headings == {a["alert"] for a in alerts}, "runbook sections without an alert"


def test_every_alert_has_firing_and_quiet_unit_tests() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for group in _load_yaml(path)["tests"]:
            for case in group.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {a["alert"] for a in _alerts()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested staying quiet"


def test_required_alerts_exist() -> None:
    exprs = {a["alert"]: a["expr"] for a in _alerts()}
    recorded = _recorded()

    def reads(alert: str) -> set[str]:
        names = metric_names(exprs[alert])
        for name in names & recorded.keys():
            names |= metric_names(recorded[name])
        return names

    def uses(alert: str, needle: str) -> bool:
        return needle in exprs[alert] or any(
            needle in recorded[n] for n in metric_names(exprs[alert]) & recorded.keys()
        )

    assert {"rebate_consumer_lag_seconds"} <= reads("RebateConsumerLagHigh")
    assert {"rebate_dead_letters_total"} <= reads("RebateDeadLetters")
    assert {"rebate_consumer_paused"} <= reads("RebateConsumerPaused")
    assert {"up"} <= reads("RebateWorkerDown")
    assert "absent(" in exprs["RebateEngineDown"]
    for burn in ("RebateLatencyBudgetBurnFast", "RebateLatencyBudgetBurnSlow"):
        assert uses(burn, f'rebate_fill_to_credit_seconds_bucket{{le="{SLO_BUCKET}"}}')
    # Multiwindow, multi-burn-rate per the SRE workbook: (long, short) window pairs.
    fast = exprs["RebateLatencyBudgetBurnFast"]
    assert "ratio_rate1h > (14.4 * 0.01)" in fast and "ratio_rate5m > (14.4 * 0.01)" in fast
    assert "ratio_rate6h > (6 * 0.01)" in fast and "ratio_rate30m > (6 * 0.01)" in fast
    slow = exprs["RebateLatencyBudgetBurnSlow"]
    assert "ratio_rate1d > (3 * 0.01)" in slow and "ratio_rate2h > (3 * 0.01)" in slow
    assert "ratio_rate3d > (1 * 0.01)" in slow and "ratio_rate6h > (1 * 0.01)" in slow
    assert f"< {FILLS_PARTITIONS}" in exprs["RebatePartitionsUnassigned"]


def test_slo_threshold_is_a_bucket_of_the_latency_histogram() -> None:
    buckets = {
        s.labels["le"]
        for family in Metrics().registry.collect()
        if family.name == "rebate_fill_to_credit_seconds"
        for s in family.samples
        if s.name.endswith("_bucket")
    }
    assert SLO_BUCKET in buckets, f"le={SLO_BUCKET} is not a bucket boundary: {sorted(buckets)}"
    les = {m for r in _rules() for m in re.findall(r'le="([^"]+)"', r["expr"])}
    assert les == {SLO_BUCKET}


# --- metric names and labels against the engine's registry ----------------------------------


def test_rules_and_dashboard_read_only_metrics_the_engine_exports() -> None:
    engine = _engine_series()
    recorded = _recorded()
    exprs = [r["expr"] for r in _rules()] + _dashboard_exprs(_dashboard())
    unknown = unknown_names(exprs, engine.keys() | recorded.keys(), allow=PROMETHEUS_SERIES)
    assert unknown == {}, f"not in agents/metrics.py nor recorded: {sorted(unknown)}"
    # Recording rules must read raw engine series only (no chains through typos either).
    for name, expr in recorded.items():
        assert metric_names(expr) <= engine.keys(), name


def test_label_names_exist_on_the_series_they_filter_or_group() -> None:
    engine = _engine_series()
    recorded = {name: grouping_labels(expr) for name, expr in _recorded().items()}
    known: dict[str, frozenset[str]] = {**engine, **{k: frozenset(v) for k, v in recorded.items()}}
    exprs = [r["expr"] for r in _rules()] + _dashboard_exprs(_dashboard())
    problems = []
    for expr in exprs:
        available = set(TARGET_LABELS)
        for sel in selectors(expr):
            if sel.name is None or sel.name not in known:
                continue  # unknown names are the test above's business; up/ALERTS have no registry
            labels = known[sel.name] | TARGET_LABELS
            available |= labels
            if not sel.labels <= labels:
                problems.append(f"{sel.name}{{{', '.join(sorted(sel.labels - labels))}}} in {expr}")
        if any(s.name in PROMETHEUS_SERIES for s in selectors(expr)):
            continue  # ALERTS/up carry rule and target labels: nothing to check against
        missing = grouping_labels(expr) - available
        if missing:
            problems.append(f"grouping by {sorted(missing)} in {expr}")
    assert problems == []


# --- Grafana -------------------------------------------------------------------------------


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    promtool = _tool("promtool")
    exprs = _dashboard_exprs(_dashboard())
    rules = [
        {"record": f"dashboard:query_{i}", "expr": _grafana_to_promql(e)}
        for i, e in enumerate(exprs)
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_is_a_templated_grafana_dashboard() -> None:
    dash = _dashboard()
    assert dash["uid"] == "rebate-engine"
    assert dash["schemaVersion"] >= 39
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["multi"] and variables["instance"]["includeAll"]
    panels = [p for p in _panels(dash) if p["type"] != "row"]
    ids = [p["id"] for p in _panels(dash)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    assert sum(p["type"] == "timeseries" for p in panels) >= 10
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            # Raw series follow the worker picker; SLO recording rules are per job by design.
            raw = {n for n in metric_names(target["expr"]) if n.startswith("rebate_")}
            if raw and panel["type"] != "table":
                assert 'instance=~"$instance"' in target["expr"], panel["title"]


def test_dashboard_panels_do_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in _panels(_dashboard()):
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, panel["title"]
        cells = {(g["x"] + dx, g["y"] + dy) for dx in range(g["w"]) for dy in range(g["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_dashboard_shows_what_an_sre_needs() -> None:
    exprs = _dashboard_exprs(_dashboard())
    joined = "\n".join(exprs)

    def has(pattern: str) -> bool:
        return re.search(pattern, joined) is not None

    assert has(r"sum by \(outcome\) \(rate\(rebate_fills_total"), "throughput by outcome"
    assert has(r"sum by \(kind\) \(rate\(rebate_credits_total"), "credits by kind"
    assert has(r"sum by \(kind, currency\) \(rate\(rebate_credit_amount_total"), "amounts"
    for q in ("0.5", "0.9", "0.99"):
        assert has(rf"histogram_quantile\({q}, sum by \(le\) \(rate\(rebate_fill_to_credit"), q
    assert has(r"rebate_consumer_lag_messages"), "lag in messages"
    assert has(r"rebate_consumer_lag_seconds"), "lag in seconds"
    assert has(r"sum by \(reason\) \(increase\(rebate_dead_letters_total"), "dead letters"
    assert has(r"histogram_quantile\(0.99, sum by \(op, le\) \(rate\(rebate_redis_seconds"), "redis"
    assert has(r"rebate_redis_up"), "redis up"
    assert has(r"rebate_batch_size_bucket"), "batch size"
    assert has(r"rebate_consumer_paused"), "paused"
    assert has(r"rebate_partitions_assigned"), "partitions"


def test_grafana_provisioning_matches_the_compose_mounts() -> None:
    (ds,) = _load_yaml(GRAFANA_PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    (provider,) = _load_yaml(GRAFANA_PROVISIONING / "dashboards" / "dashboards.yml")["providers"]
    compose = _load_yaml(COMPOSE)
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


# --- docker-compose ------------------------------------------------------------------------


def test_compose_file_is_valid() -> None:
    result = _run(_tool("docker-compose"), "-f", str(COMPOSE), "config", "-q")
    assert result.returncode == 0, result.stderr
    assert "docker-compose config" in COMPOSE.read_text().split("services:")[0], (
        "the header must say the file is validated, not run"
    )


def test_compose_runs_kafka_in_kraft_mode() -> None:
    services = _compose_config()["services"]
    assert not any("zookeeper" in name for name in services)
    kafka = services["kafka"]
    image, _, tag = kafka["image"].partition(":")
    assert image == "apache/kafka" and tag and tag != "latest"
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert env["CLUSTER_ID"]
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    # Containers reach the broker on the address it advertises to them.
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    for name in (*WORKERS, "init"):
        assert services[name]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"


def test_compose_runs_two_workers_in_one_group_after_init() -> None:
    services = _compose_config()["services"]
    workers = [services[w] for w in WORKERS]
    assert all(w["command"] == ["worker"] for w in workers)
    assert len({w["image"] for w in workers}) == 1
    # One consumer group: every engine setting (group id included) is identical.
    assert workers[0]["environment"] == workers[1]["environment"]
    assert workers[0]["environment"]["REBATE_CONSUMER_GROUP"]
    assert workers[0]["environment"] == services["init"]["environment"]
    for worker in workers:
        assert worker["depends_on"]["init"]["condition"] == "service_completed_successfully"
        assert "healthcheck" in worker
    init = services["init"]
    script = " ".join(init["command"])
    assert "rebate-engine topics" in script and "rebate-engine seed" in script
    assert script.index("topics") < script.index("seed")
    assert init["restart"] == "no"
    assert any(
        v.endswith("sample/seed.yaml:/etc/rebate-engine/seed.yaml:ro") for v in init["volumes"]
    )


def test_compose_engine_environment_names_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # A misspelt variable is silently ignored by the settings object: catch it here.
    from agents.settings import ENV_PREFIX, Settings, env_var_name

    valid = {env_var_name(field) for field in Settings.model_fields}
    env = _compose_config()["services"]["init"]["environment"]
    assert set(env) - valid == set()
    # The values the stack sets parse (the secured ones are unset, as compose leaves them).
    for name in [n for n in os.environ if n.startswith(ENV_PREFIX)] + list(valid):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        if value is not None:
            monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert settings.topic_partitions == FILLS_PARTITIONS


def test_compose_images_are_pinned_and_services_health_checked() -> None:
    services = _compose_config()["services"]
    expected = {"kafka", "redis", "init", *WORKERS, "prometheus", "grafana"}
    assert expected <= services.keys()
    for name, service in services.items():
        if "build" in service:
            continue
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: unpinned {image}"
    for name in ("kafka", "redis", *WORKERS, "prometheus", "grafana"):
        assert "healthcheck" in services[name], name
    prometheus = services["prometheus"]
    mounts = set(prometheus["volumes"])
    assert f"{PROMETHEUS_YML}:/etc/prometheus/prometheus.yml:ro" in mounts
    assert f"{RULES_DIR}:/etc/prometheus/rules:ro" in mounts


# --- image ---------------------------------------------------------------------------------


def test_dockerfile_runs_the_cli_as_a_non_root_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    instructions = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11[.\d]*-slim", text, flags=re.MULTILINE)
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert 'ENTRYPOINT ["rebate-engine"]' in instructions
    assert "EXPOSE 6066" in instructions
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore, ".dockerignore should be an allow-list (exclude all, then re-include)"
    assert "!.venv" not in ignore and "!.git" not in ignore
