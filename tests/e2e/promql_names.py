"""Which metric names a PromQL expression reads, and which names a metrics registry exposes.

The deploy tests use it to prove that every series the alert rules and the Grafana dashboard
query exists in the engine's registry (a misspelt name is not an error in Prometheus or Grafana,
just an empty panel or an alert that can never fire). The same functions check a live /metrics
page::

    from prometheus_client.parser import text_string_to_metric_families
    exposed = exposed_series(text_string_to_metric_families(body))
    missing = {n for e in exprs for n in metric_names(e)} - exposed.keys()

This is a lexer, not a PromQL parser: it knows strings, label matchers, ranges, durations,
numbers, keywords, aggregation and function calls, and Grafana's ``$variables``, which is all it
takes to tell a metric name from everything else. It does not validate syntax (promtool does).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric

__all__ = [
    "PROMETHEUS_SERIES",
    "Selector",
    "exposed_series",
    "family_of",
    "grafana_query_promql",
    "grouping_labels",
    "metric_names",
    "selectors",
    "unknown_names",
]

# Series Prometheus itself writes for every target or rule: never in an application registry.
PROMETHEUS_SERIES: frozenset[str] = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
        "ALERTS",
        "ALERTS_FOR_STATE",
    }
)

# Suffixes client libraries append to a family name, longest first so "_total" never shadows.
_SUFFIXES = ("_created", "_bucket", "_total", "_count", "_info", "_sum")

# Series names each metric type exposes, relative to the family name (OpenMetrics types as
# prometheus_client reports them from a registry; the text parser reports counters and
# histograms the same way, and info/_created families as plain gauges).
_TYPE_SUFFIXES: Mapping[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}

# Words that can stand where a metric name could and are not one.
_KEYWORDS = frozenset(
    {"and", "or", "unless", "atan2", "bool", "offset", "inf", "nan"}
    | {"by", "without", "on", "ignoring", "group_left", "group_right"}
)
# Followed by a parenthesised list of label names rather than an expression.
_LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
# Aggregations may be followed by `by (...)`/`without (...)` before their "(", so the "name
# followed by (" rule alone does not catch them.
_AGGREGATIONS = frozenset(
    {
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
        "bottomk", "topk", "quantile", "limitk", "limit_ratio",
    }
)  # fmt: skip

_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Durations (5m, 1h30m, 100ms) before plain numbers so "5m" is not "5" then a metric "m".
_NUMBER = re.compile(
    r"0[xX][0-9a-fA-F]+|(?:\d+(?:ms|[smhdwy]))+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
)
# Grafana variables: $var, ${var}, ${var:format}, [[var]].
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$[A-Za-z0-9_]+|\[\[[^\]]*\]\]")
_MATCH_OP = re.compile(r"=~|!~|!=|=")


@dataclass(frozen=True, slots=True)
class Selector:
    """One vector selector: ``name{label="v", ...}``.

    ``name`` is None for a selector without one (``{job="x"}``) or with a regex
    ``__name__`` matcher; ``labels`` are the label names matched on, ``__name__`` excluded.
    """

    name: str | None
    labels: frozenset[str] = field(default_factory=frozenset)


@dataclass(slots=True)
class _Scan:
    selectors: list[Selector]
    grouping: set[str]


def _skip_string(expr: str, i: int) -> int:
    """Index just past the string literal starting at ``expr[i]`` (", ' or `)."""
    quote = expr[i]
    i += 1
    while i < len(expr):
        if expr[i] == "\\" and quote != "`":
            i += 2
            continue
        if expr[i] == quote:
            return i + 1
        i += 1
    raise ValueError(f"unterminated string in PromQL: {expr!r}")


def _skip_brackets(expr: str, i: int) -> int:
    """Index just past the ``[...]`` range or subquery starting at ``expr[i]``."""
    end = expr.find("]", i)
    if end < 0:
        raise ValueError(f"unterminated [ in PromQL: {expr!r}")
    return end + 1


def _parse_matchers(expr: str, i: int) -> tuple[int, str | None, frozenset[str]]:
    """Parse ``{...}`` at ``expr[i]``: (index past it, exact __name__ if any, label names)."""
    i += 1
    name: str | None = None
    labels: set[str] = set()
    while i < len(expr):
        c = expr[i]
        if c.isspace() or c == ",":
            i += 1
        elif c == "}":
            return i + 1, name, frozenset(labels)
        elif c in "\"'`":
            i = _skip_string(expr, i)
        else:
            m = _LABEL_NAME.match(expr, i)
            if m is None:
                raise ValueError(f"unexpected {c!r} in label matchers: {expr!r}")
            label, i = m.group(), m.end()
            while i < len(expr) and expr[i].isspace():
                i += 1
            op = _MATCH_OP.match(expr, i)
            if op is None:
                raise ValueError(f"label {label!r} without a match operator: {expr!r}")
            i = op.end()
            while i < len(expr) and expr[i].isspace():
                i += 1
            if label == "__name__":
                if i < len(expr) and expr[i] in "\"'`":
                    end = _skip_string(expr, i)
                    if op.group() == "=":
                        name = expr[i + 1 : end - 1]
                    i = end
            else:
                labels.add(label)
    raise ValueError(f"unterminated {{ in PromQL: {expr!r}")


def _parse_label_list(expr: str, i: int) -> tuple[int, set[str]]:
    """Parse ``(a, b)`` after by/without/on/...: (index past it, label names)."""
    end = expr.find(")", i)
    if end < 0:
        raise ValueError(f"unterminated label list in PromQL: {expr!r}")
    return end + 1, set(_LABEL_NAME.findall(expr[i + 1 : end]))


def _next_char(expr: str, i: int) -> str:
    while i < len(expr) and expr[i].isspace():
        i += 1
    return expr[i] if i < len(expr) else ""


def _scan(expr: str) -> _Scan:
    expr = _GRAFANA_VAR.sub(" ", expr)
    out = _Scan(selectors=[], grouping=set())
    i = 0
    while i < len(expr):
        c = expr[i]
        if c.isspace():
            i += 1
        elif c == "#":  # comment to end of line
            nl = expr.find("\n", i)
            i = len(expr) if nl < 0 else nl + 1
        elif c in "\"'`":
            i = _skip_string(expr, i)
        elif c == "[":
            i = _skip_brackets(expr, i)
        elif c == "{":  # a selector without a metric name
            i, name, labels = _parse_matchers(expr, i)
            out.selectors.append(Selector(name, labels))
        elif (c.isdigit() or c == ".") and (m := _NUMBER.match(expr, i)):
            i = m.end()
        elif m := _IDENT.match(expr, i):
            word, i = m.group(), m.end()
            lowered = word.lower()
            nxt = _next_char(expr, i)
            if lowered in _LABEL_LIST_KEYWORDS and nxt == "(":
                i = expr.index("(", i)
                i, grouping = _parse_label_list(expr, i)
                out.grouping |= grouping
            elif lowered in _KEYWORDS or word in _AGGREGATIONS or nxt == "(":
                continue  # keyword, aggregation or function call
            else:
                labels = frozenset[str]()
                if nxt == "{":
                    i, _, labels = _parse_matchers(expr, expr.index("{", i))
                out.selectors.append(Selector(word, labels))
        else:
            i += 1  # operators, parentheses, commas, @
    return out


def selectors(expr: str) -> list[Selector]:
    """Every vector selector in ``expr``, in order of appearance."""
    return _scan(expr).selectors


def metric_names(expr: str) -> set[str]:
    """The metric (series) names ``expr`` reads, exactly as written (suffixes kept)."""
    return {s.name for s in _scan(expr).selectors if s.name is not None}


def grouping_labels(expr: str) -> set[str]:
    """Label names in ``by``/``without``/``on``/``ignoring``/``group_left``/``group_right``."""
    return _scan(expr).grouping


def family_of(name: str) -> str:
    """The metric family a series name belongs to: ``rebate_fills_total`` -> ``rebate_fills``.

    Strips one of ``_bucket _count _sum _total _created _info``; a name without one of them is
    its own family (gauges). Ambiguous for a gauge whose name happens to end in one of them, so
    prefer comparing exact series names with :func:`exposed_series`.
    """
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def exposed_series(families: Iterable[Metric]) -> dict[str, frozenset[str]]:
    """Every series name the metric families expose, with the label names seen on each.

    Accepts ``CollectorRegistry.collect()`` or
    ``prometheus_client.parser.text_string_to_metric_families(text)``. Series names come from
    the family name and type, so a labelled metric that has no child yet still counts; its
    label names are known only from samples, so they are empty until a child exists.
    """
    exposed: dict[str, set[str]] = {}
    for family in families:
        for suffix in _TYPE_SUFFIXES.get(family.type, ("",)):
            exposed.setdefault(family.name + suffix, set())
        for sample in family.samples:
            exposed.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in exposed.items()}


def unknown_names(
    exprs: Iterable[str], known: Iterable[str], *, allow: Iterable[str] = PROMETHEUS_SERIES
) -> dict[str, set[str]]:
    """Names read by ``exprs`` that are neither ``known`` nor ``allow``-ed: {name: {exprs}}."""
    accepted = set(known) | set(allow)
    unknown: dict[str, set[str]] = {}
    for expr in exprs:
        for name in metric_names(expr) - accepted:
            unknown.setdefault(name, set()).add(expr)
    return unknown


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?P<arg>.*)\)\s*$", re.DOTALL)
_QUERY_RESULT = re.compile(r"^\s*query_result\(\s*(?P<arg>.*)\)\s*$", re.DOTALL)


def grafana_query_promql(query: str) -> str | None:
    """The PromQL inside a Grafana Prometheus template-variable query, or None if it has none.

    ``label_values(metric{...}, label)`` -> ``metric{...}``; ``query_result(expr)`` -> ``expr``;
    ``label_values(label)``, ``label_names()`` and ``metrics(regex)`` -> None.
    """
    if m := _LABEL_VALUES.match(query):
        arg = m.group("arg")
        head, sep, _label = arg.rpartition(",")
        return head.strip() if sep else None
    if m := _QUERY_RESULT.match(query):
        return m.group("arg").strip()
    return None
