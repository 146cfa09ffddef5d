"""The seed file (SPEC 3): YAML or JSON, turned into rule `Change`s and starting wallet state.

Errors name the file, the line and the field (`seed.yaml:23: ibs[1].plan: unknown plan 'gold'`)
because testers write seeds by hand. JSON is read with the YAML parser (JSON is YAML's flow
style), so both formats get line numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from engine.payouts import parse_tiers
from engine.rules import Change, RuleBook, change_refusal
from engine.state import Bonus, JmAllocation

__all__ = ["Seed", "SeedError", "load_seed", "parse_seed", "parse_time"]

# Subject keys of a `changes` item, most specific first: {account: 1, client: C-2} moves an
# account to another client, {client: C-1, ib: IB-2} moves a client to another IB.
_CHANGE_SUBJECTS = ("account", "client", "ib", "plan", "loyalty", "symbols")
_DECIMAL_FIELDS = {
    "rebate_pct",
    "per_lot_usd",
    "spread_pct",
    "commission_pct",
    "max_usd_per_lot",
    "client_rebate_usd_per_lot",
    "lot_scale",
    "accrual_pct",
    "coverage_pct",
    "reward_jm",
    "jm_allocated",
    "amount_usd",
    "from_std_lots",
    "per_lot_bonus_usd",
}


class SeedError(ValueError):
    """A seed that cannot be loaded, located as precisely as we can."""

    def __init__(self, source: str, line: int | None, path: str, message: str) -> None:
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {path}: {message}" if path else f"{where}: {message}")
        self.source, self.line, self.path = source, line, path


@dataclass(frozen=True, slots=True)
class Seed:
    """A loaded seed: the rule changes and the starting wallet state."""

    changes: tuple[Change, ...]
    reward_wallets: Mapping[str, Decimal] = field(default_factory=dict)
    allocations: tuple[tuple[int, JmAllocation], ...] = ()
    bonuses: tuple[tuple[int, Bonus], ...] = ()
    effective_from: datetime | None = None

    def rulebook(self, depth_limit: int = 10) -> RuleBook:
        return RuleBook(self.changes, depth_limit=depth_limit)


class _NoTimestampLoader(yaml.SafeLoader):
    """Safe YAML without implicit timestamps: times stay strings, exactly as written."""


_NoTimestampLoader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_seed(path: str | Path) -> Seed:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SeedError(str(path), None, "", f"cannot read: {exc.strerror}") from None
    return parse_seed(text, str(path))


def parse_seed(text: str, source: str = "<seed>") -> Seed:
    try:
        node = yaml.compose(text, Loader=_NoTimestampLoader)
        data = yaml.load(text, Loader=_NoTimestampLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise SeedError(source, line, "", f"not valid YAML/JSON: {exc}") from None
    lines: dict[str, int] = {}
    if node is not None:
        _index_lines(node, "", lines)
    return _Builder(source, lines).build(data)


def _index_lines(node: yaml.Node, path: str, lines: dict[str, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = f"{path}.{key.value}" if path else str(key.value)
            lines[child] = key.start_mark.line + 1
            _index_lines(value, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, f"{path}[{i}]", lines)


def parse_time(value: Any, where: str = "") -> datetime:
    """An ISO-8601 UTC instant ending in Z (the only form the seed and fills use)."""
    if not isinstance(value, str) or not value.endswith("Z"):
        raise ValueError(f"{value!r} is not an ISO-8601 UTC time ending in Z{where}")
    return datetime.fromisoformat(value)


class _Builder:
    def __init__(self, source: str, lines: dict[str, int]) -> None:
        self.source = source
        self.lines = lines

    def fail(self, path: str, message: str) -> SeedError:
        probe = path
        while probe and probe not in self.lines:  # fall back to the nearest parent we know
            probe = probe.rpartition(".")[0] if "." in probe else probe.rpartition("[")[0]
        return SeedError(self.source, self.lines.get(probe), path, message)

    def build(self, data: Any) -> Seed:
        if not isinstance(data, dict):
            raise self.fail("", "a seed is a mapping (YAML) or an object (JSON)")
        self._schema_check(data)
        start = self._time(data, "effective_from")
        changes: list[Change] = []
        if "loyalty" in data:
            changes.append(Change(start, "loyalty", "", self._fields(data["loyalty"], "loyalty")))
        if "symbols" in data:
            changes.append(Change(start, "symbols", "", dict(data["symbols"])))
        for name, settings in (data.get("account_types") or {}).items():
            fields = self._fields(settings, f"account_types.{name}")
            changes.append(Change(start, "account_type", str(name), fields))
        for i, plan in enumerate(data.get("plans") or []):
            fields = self._fields(plan, f"plans[{i}]")
            changes.append(Change(start, "plan", str(fields.pop("id")), fields))
        for kind in ("ibs", "clients"):
            subject = kind[:-1]
            for i, item in enumerate(data.get(kind) or []):
                fields = self._fields(item, f"{kind}[{i}]")
                changes.append(Change(start, subject, str(fields.pop("id")), fields))
        for i, item in enumerate(data.get("accounts") or []):
            fields = self._fields(item, f"accounts[{i}]")
            login = str(fields.pop("login"))
            changes.append(Change(start, "account", login, fields))
        for i, item in enumerate(data.get("changes") or []):
            changes.append(self._change(item, f"changes[{i}]"))
        rewards, allocations = self._wallets(data.get("wallets") or [], start)
        bonuses = tuple(
            (
                int(b["login"]),
                Bonus(
                    str(b["bonus_id"]),
                    self._dec(b, "amount_usd", f"bonuses[{i}]"),
                    self._time(b, "granted_at", f"bonuses[{i}]"),
                ),
            )
            for i, b in enumerate(data.get("bonuses") or [])
        )
        seed = Seed(tuple(changes), rewards, allocations, bonuses, start)
        self._check_references(seed, data)
        return seed

    # -- pieces --------------------------------------------------------------------------

    def _schema_check(self, data: dict[str, Any]) -> None:
        from schemas import iter_errors  # noqa: PLC0415 - schemas imports jsonschema lazily

        for error in iter_errors("seed.v1", data):
            path = _json_path(error.absolute_path)
            raise self.fail(path, error.message)

    def _time(self, obj: Mapping[str, Any], key: str, where: str = "") -> datetime:
        path = f"{where}.{key}" if where else key
        try:
            return parse_time(obj.get(key))
        except ValueError as exc:
            raise self.fail(path, str(exc)) from None

    def _dec(self, obj: Mapping[str, Any], key: str, where: str) -> Decimal:
        value = obj.get(key)
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise self.fail(f"{where}.{key}", f"{value!r} is not a decimal") from None
        if not number.is_finite():
            raise self.fail(f"{where}.{key}", f"{value!r} is not a number")
        return number

    def _fields(self, item: Any, where: str) -> dict[str, Any]:
        if not isinstance(item, dict):
            raise self.fail(where, "must be a mapping")
        fields = dict(item)
        for key in _DECIMAL_FIELDS & fields.keys():
            if fields[key] is not None:
                fields[key] = self._dec(fields, key, where)
        if "rules" in fields:
            fields["rules"] = [
                self._fields(r, f"{where}.rules[{j}]") for j, r in enumerate(fields["rules"])
            ]
        if fields.get("tiers") is not None:
            fields["tiers"] = self._tiers(fields["tiers"], f"{where}.tiers")
        if "upline_override_pct" in fields:
            fields["upline_override_pct"] = [
                self._dec({"v": p}, "v", f"{where}.upline_override_pct[{j}]")
                for j, p in enumerate(fields["upline_override_pct"])
            ]
        return fields

    def _tiers(self, items: Any, where: str) -> list[dict[str, Any]]:
        """A plan's tier table, checked here so that an error names its line."""
        rows = [self._fields(r, f"{where}[{j}]") for j, r in enumerate(items)]
        for j in range(len(rows)):  # the first row that breaks the table names the line
            try:
                parse_tiers(rows[: j + 1])
            except ValueError as exc:
                raise self.fail(f"{where}[{j}]", str(exc).partition(": ")[2]) from None
        return rows

    def _change(self, item: Any, where: str) -> Change:
        if not isinstance(item, dict):
            raise self.fail(where, "must be a mapping")
        at = self._time(item, "at", where)
        for subject in _CHANGE_SUBJECTS:
            if subject in item:
                fields = self._fields(
                    {k: v for k, v in item.items() if k not in ("at", subject)}, where
                )
                ident = item[subject]
                if isinstance(ident, dict):  # {plan: {id, ...}}, {loyalty: {...}}: the body
                    body = dict(ident)
                    ident = body.pop("id", "")
                    fields = {**self._fields(body, f"{where}.{subject}"), **fields}
                if not fields:
                    raise self.fail(where, f"change of {subject} {ident} changes nothing")
                return Change(at, subject, str(ident), fields)
        raise self.fail(where, f"names no subject (one of {', '.join(_CHANGE_SUBJECTS)})")

    def _wallets(
        self, items: Sequence[Any], start: datetime
    ) -> tuple[dict[str, Decimal], tuple[tuple[int, JmAllocation], ...]]:
        rewards: dict[str, Decimal] = {}
        allocations: list[tuple[int, JmAllocation]] = []
        for i, item in enumerate(items):
            where = f"wallets[{i}]"
            if "client" in item:
                rewards[str(item["client"])] = self._dec(item, "reward_jm", where)
            else:
                at = self._time(item, "allocated_at", where) if "allocated_at" in item else start
                login = int(item["login"])
                allocations.append(
                    (
                        login,
                        JmAllocation(
                            f"seed:{login}:{i}", at, self._dec(item, "jm_allocated", where)
                        ),
                    )
                )
        return rewards, tuple(allocations)

    def _check_references(self, seed: Seed, data: dict[str, Any]) -> None:
        """Dangling references and IB cycles fail the load, at the line that names them."""
        known = {
            s: {c.id for c in seed.changes if c.subject == s} for s in ("plan", "ib", "client")
        }
        refs = (
            ("ibs", "plan", "plan"),
            ("ibs", "parent", "ib"),
            ("clients", "ib", "ib"),
            ("accounts", "client", "client"),
        )
        for section, key, subject in refs:
            for i, item in enumerate(data.get(section) or []):
                value = item.get(key)
                if value is not None and str(value) not in known[subject]:
                    raise self.fail(f"{section}[{i}].{key}", f"unknown {subject} {value!r}")
        for i, item in enumerate(data.get("changes") or []):
            for key, subject in (
                ("plan", "plan"),
                ("parent", "ib"),
                ("ib", "ib"),
                ("client", "client"),
            ):
                value = item.get(key)
                if (
                    value is not None
                    and not isinstance(value, dict)
                    and str(value) not in known[subject]
                ):
                    raise self.fail(f"changes[{i}].{key}", f"unknown {subject} {value!r}")
        problem = change_refusal([], seed.changes)
        if problem is not None:
            raise self.fail("changes", problem)


def _json_path(parts: Sequence[Any]) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path
