"""JSON Schemas for every topic and the seed file, and the helpers that load and apply them.

The schemas are package data (``schemas/<name>.json``, draft 2020-12). Names:
``fill.v1``, ``credit.v1``, ``seed.v1``, ``wallet-command.v1``, ``wallet-event.v1``,
``settlement.v1``, ``crm-event.v1``.

The validators are stricter than a generic draft 2020-12 validator in three ways that keep the
Python engine and a validator in any other language in agreement:

* ``integer`` means a JSON integer: ``2.0`` (which JSON Schema would accept) and booleans are not.
* ``pattern`` has ECMA-262 semantics for a trailing ``$``: ``"1.5\\n"`` does not match ``^...$``
  (Python's ``re`` would let ``$`` match before a final newline).
* ``format: date-time`` is asserted (a real calendar date and clock time), without the optional
  ``rfc3339-validator`` dependency.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator

__all__ = [
    "SCHEMA_NAMES",
    "SchemaError",
    "error_path",
    "iter_errors",
    "load_schema",
    "validate",
    "validator",
]

SCHEMA_NAMES: tuple[str, ...] = (
    "fill.v1",
    "credit.v1",
    "seed.v1",
    "wallet-command.v1",
    "wallet-event.v1",
    "settlement.v1",
    "crm-event.v1",
)

_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:[Zz]|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


class SchemaError(ValueError):
    """An instance does not match a schema.

    ``str(err)`` starts with the JSON path of the failing field, e.g.
    ``fill.v1: $.volume: -1 is less than the minimum of 0``.

    Attributes:
        schema_name: the schema that rejected the instance.
        path: JSON path of the failing field (for a missing or unexpected property, the path of
            that property itself), ``$`` for the whole document.
        keyword: the JSON Schema keyword that failed (``required``, ``pattern``, ``enum``, ...).
        errors: every error found, most relevant first (``errors[0]`` is the one reported).
    """

    def __init__(self, schema_name: str, errors: list[ValidationError]) -> None:
        self.schema_name = schema_name
        self.errors: tuple[ValidationError, ...] = tuple(errors)
        first = errors[0]
        self.path = error_path(first)
        self.keyword = str(first.validator)
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{schema_name}: {self.path}: {_message(first)}{more}")


def _message(error: ValidationError) -> str:
    # oneOf/anyOf messages repeat the whole instance; the schema's description says what the
    # alternatives are ("exactly one of per_lot_usd, spread_pct, commission_pct").
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    if error.validator in ("oneOf", "anyOf") and description:
        verdict = "matches more than one" if "valid under each" in error.message else "matches none"
        return f"{verdict} of the alternatives: {description}"
    return error.message


def _check_name(name: str) -> None:
    if name not in SCHEMA_NAMES:
        raise KeyError(f"unknown schema {name!r}; known: {', '.join(SCHEMA_NAMES)}")


@functools.cache
def _schema(name: str) -> dict[str, Any]:
    _check_name(name)
    text = resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def load_schema(name: str) -> dict[str, Any]:
    """Return the schema called ``name`` (read once from package data; the caller gets a copy)."""
    return copy.deepcopy(_schema(name))


def _is_json_integer(_checker: object, instance: object) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


def _ecma_pattern(
    v: Validator, patrn: str, instance: Any, _subschema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if v.is_type(instance, "string") and not _compile_pattern(patrn).search(str(instance)):
        yield ValidationError(f"{instance!r} does not match {patrn!r}")


@functools.cache
def _compile_pattern(patrn: str) -> re.Pattern[str]:
    # In ECMA-262 a final `$` (no multiline flag) matches only at the very end.
    if patrn.endswith("$") and not patrn.endswith("\\$"):
        patrn = patrn[:-1] + r"\Z"
    return re.compile(patrn)


def _is_date_time(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    m = _DATE_TIME.fullmatch(instance)
    if m is None:
        return False
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    if m.group(8) is not None and (int(m.group(9)) > 23 or int(m.group(10)) > 59):
        return False
    try:
        datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return False
    return True


_FORMAT_CHECKER = FormatChecker()
_FORMAT_CHECKER.checks("date-time")(_is_date_time)

# jsonschema's `extend` is untyped; what it returns is a Validator class like the one it extends.
_StrictValidator: type[Validator] = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator,
    validators={"pattern": _ecma_pattern},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_json_integer),
)


@functools.cache
def validator(name: str) -> Validator:
    """A cached draft 2020-12 validator for schema ``name``, with format assertion on."""
    schema = _schema(name)
    _StrictValidator.check_schema(schema)
    return _StrictValidator(schema, format_checker=_FORMAT_CHECKER)


def iter_errors(name: str, instance: Any) -> Iterator[ValidationError]:
    """Every way ``instance`` breaks schema ``name`` (nothing when it is valid)."""
    return validator(name).iter_errors(instance)


def validate(name: str, instance: Any) -> None:
    """Raise :class:`SchemaError`, naming the JSON path of the failing field, unless valid."""
    errors = list(iter_errors(name, instance))
    if errors:
        best = best_match(errors)
        if best is not None:
            # best_match may descend into a oneOf/anyOf branch; report that leaf first.
            errors = [best, *(e for e in errors if e is not best)]
        raise SchemaError(name, errors)


def error_path(error: ValidationError) -> str:
    """JSON path of the field an error is about, e.g. ``$.plans[0].rules[1].per_lot_usd``.

    For ``required`` it is the missing property, for ``additionalProperties`` the unexpected
    one, so the path always names the field to fix.
    """
    path = error.json_path
    instance = error.instance
    required = error.validator_value
    if error.validator == "required" and isinstance(instance, dict) and isinstance(required, list):
        missing = [p for p in required if p not in instance]
        if missing:
            return _join(path, str(missing[0]))
    schema = error.schema
    if (
        error.validator == "additionalProperties"
        and isinstance(instance, dict)
        and isinstance(schema, Mapping)
    ):
        known = schema.get("properties", {})
        patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
        extra = sorted(
            k for k in instance if k not in known and not any(p.search(k) for p in patterns)
        )
        if extra:
            return _join(path, extra[0])
    return path


def _join(path: str, key: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{path}.{key}"
    return f"{path}[{key!r}]"  # the quoting jsonschema's own json_path uses
