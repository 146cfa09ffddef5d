"""The JSON Schemas: valid themselves, accept real and example data, reject bad data by path."""

from __future__ import annotations

import copy
import json
import math
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import given, settings
from jsonschema import Draft202012Validator

import schemas
from schemas import SCHEMA_NAMES, SchemaError, iter_errors, load_schema, validate, validator
from tests.strategies import BAD_FILL_REASONS, DECIMAL_FIELDS, bad_fills, fills

REPO = Path(__file__).resolve().parents[2]
# SPEC section 2: the real fills live next to the repository, in ../shared/data/real/.
REAL_FILLS = sorted((REPO.parent / "shared" / "data" / "real").glob("*.fills.jsonl"))
SPEC_SEED = REPO / "sample" / "spec-example-seed.yaml"


def rejection(name: str, instance: object) -> SchemaError:
    with pytest.raises(SchemaError) as info:
        validate(name, instance)
    return info.value


def a_fill(**overrides: Any) -> dict[str, Any]:
    fill: dict[str, Any] = {
        "schema": "fill.v1",
        "server": "mt5-live-1",
        "platform": "mt5",
        "event": "add",
        "deal": 700001,
        "position": 699990,
        "login": 50000123,
        "side": "buy",
        "entry": "out",
        "symbol": "XAUUSD.m",
        "volume": 15000,
        "open_time": "2024-03-01T10:00:00.120Z",
        "close_time": "2024-03-01T10:10:00Z",
        "open_price": "2031.45",
        "close_price": "2034.10",
        "digits": 2,
        "contract_size": "100",
        "spread_points": 25,
        "point_value": "1",
        "commission": "-10.50",
        "swap": "0.00",
        "profit": "397.50",
        "currency": "USD",
        "reason": "client",
    }
    fill.update(overrides)
    return {k: v for k, v in fill.items() if v is not None}


def spec_seed() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC_SEED.read_text())
    return loaded


def a_credit(**overrides: Any) -> dict[str, Any]:
    credit: dict[str, Any] = {
        "schema": "credit.v1",
        "credit_id": "cr_" + "0123456789abcdef" * 2,
        "kind": "ib_commission",
        "beneficiary": {"type": "ib", "id": "IB-1"},
        "amount": "12.00",
        "currency": "USD",
        "fill": {
            "server": "mt4-live-1",
            "deal": 1001,
            "position": 1001,
            "login": 900001,
            "symbol": "EURUSD.m",
            "lots": "1.00",
            "close_time": "2024-03-01T10:10:00Z",
            "event": "add",
            "revision": "00ff00ff00ff00ff",
        },
        "basis": {
            "level": 1,
            "method": "per_lot_usd",
            "plan": "std",
            "rule": {"account_types": ["standard"], "symbols": ["*"]},
            "rate": "15",
            "base": "1.00",
            "gross": "15.00",
        },
        "reverses": None,
        "engine_version": "0.1.0",
    }
    credit.update(overrides)
    return credit


# -- the schemas themselves -------------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_is_valid_draft_2020_12_with_id_and_descriptions(name: str) -> None:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(name)
    assert schema["description"]
    for prop, sub in schema.get("properties", {}).items():
        assert "description" in sub or "$ref" in sub, f"{name}: {prop} has no description"


def test_schemas_are_package_data() -> None:
    package = Path(schemas.__file__).parent
    assert sorted(p.name for p in package.glob("*.json")) == sorted(
        f"{n}.json" for n in SCHEMA_NAMES
    )


def test_load_schema_caches_but_hands_out_copies() -> None:
    first = load_schema("fill.v1")
    first["properties"].clear()
    assert load_schema("fill.v1")["properties"]
    assert validator("fill.v1") is validator("fill.v1")


def test_unknown_schema_name() -> None:
    with pytest.raises(KeyError, match=r"fill\.v9"):
        load_schema("fill.v9")


# -- fill.v1: accepts ------------------------------------------------------------------------


@pytest.mark.skipif(not REAL_FILLS, reason="../shared/data/real is not next to this checkout")
@pytest.mark.parametrize("path", REAL_FILLS, ids=lambda p: p.name)
def test_real_fills_validate(path: Path) -> None:
    """Every real fill is valid: the corrected data has no "1 434.86"-style profits left."""
    lines = path.read_text().splitlines()
    assert lines
    invalid = [
        n for n, line in enumerate(lines, 1) if list(iter_errors("fill.v1", orjson.loads(line)))
    ]
    assert invalid == [], f"{path.name}: lines {invalid}"


def test_example_fill_validates() -> None:
    validate("fill.v1", a_fill())


def test_unknown_fields_are_ignored() -> None:
    validate("fill.v1", a_fill(comment="[tp 2034.10]", magic=20240301, gateway={"id": 3}))


@pytest.mark.parametrize("currency", ["USD", "USC"])
def test_usd_rate_optional_for_usd_and_cents(currency: str) -> None:
    validate("fill.v1", a_fill(currency=currency))
    validate("fill.v1", a_fill(currency=currency, usd_rate="1" if currency == "USD" else "0.01"))


def test_non_usd_account_with_usd_rate() -> None:
    validate("fill.v1", a_fill(currency="EUR", usd_rate="1.08345"))


@settings(max_examples=300)
@given(fills())
def test_generated_fills_are_valid(fill: dict[str, Any]) -> None:
    validate("fill.v1", fill)
    assert datetime.fromisoformat(fill["close_time"]) >= datetime.fromisoformat(fill["open_time"])
    limit = 10_000 if fill["platform"] == "mt4" else 1_000_000
    assert 1 <= fill["volume"] <= limit


# -- fill.v1: rejects, naming the field --------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "path", "keyword"),
    [
        pytest.param({"volume": None}, "$.volume", "required", id="missing-field"),
        pytest.param({"schema": None}, "$.schema", "required", id="missing-schema-tag"),
        pytest.param({"open_price": 2031.45}, "$.open_price", "type", id="float-not-decimal"),
        pytest.param({"commission": -10.5}, "$.commission", "type", id="float-commission"),
        pytest.param({"profit": "1 434.86"}, "$.profit", "pattern", id="grouped-decimal"),
        pytest.param({"profit": "1.5\n"}, "$.profit", "pattern", id="trailing-newline"),
        pytest.param({"swap": "1e3"}, "$.swap", "pattern", id="exponent"),
        pytest.param({"platform": "mt6"}, "$.platform", "enum", id="unknown-platform"),
        pytest.param({"volume": -100}, "$.volume", "minimum", id="negative-volume"),
        pytest.param({"volume": 100.0}, "$.volume", "type", id="integral-float-volume"),
        pytest.param({"volume": True}, "$.volume", "type", id="bool-volume"),
        pytest.param({"deal": "700001"}, "$.deal", "type", id="string-deal"),
        pytest.param({"close_time": "2024-03-01T10:10:00"}, "$.close_time", "pattern", id="no-z"),
        pytest.param(
            {"open_time": "2024-03-01T10:00:00+00:00"}, "$.open_time", "pattern", id="offset"
        ),
        pytest.param(
            {"open_time": "2024-02-30T10:00:00Z"}, "$.open_time", "format", id="no-such-day"
        ),
        pytest.param({"commission": "NaN"}, "$.commission", "pattern", id="nan-string"),
        pytest.param({"close_price": "Infinity"}, "$.close_price", "pattern", id="infinity"),
        pytest.param({"open_price": "-1.5"}, "$.open_price", "pattern", id="negative-price"),
        pytest.param({"contract_size": "0"}, "$.contract_size", "pattern", id="zero-contract"),
        pytest.param({"digits": 11}, "$.digits", "maximum", id="digits-too-many"),
        pytest.param({"spread_points": -1}, "$.spread_points", "minimum", id="negative-spread"),
        pytest.param({"side": "long"}, "$.side", "enum", id="unknown-side"),
        pytest.param({"entry": "close"}, "$.entry", "enum", id="unknown-entry"),
        pytest.param({"event": "modify"}, "$.event", "enum", id="unknown-event"),
        pytest.param({"schema": "fill.v2"}, "$.schema", "const", id="other-version"),
        pytest.param({"currency": "EUR"}, "$.usd_rate", "required", id="missing-usd-rate"),
        pytest.param(
            {"currency": "EUR", "usd_rate": "0"}, "$.usd_rate", "pattern", id="zero-usd-rate"
        ),
        pytest.param({"point_value": "-1.00"}, "$.point_value", "pattern", id="negative-pv"),
        pytest.param({"commission": "+7.00"}, "$.commission", "pattern", id="plus-sign"),
        pytest.param({"commission": "-7_000"}, "$.commission", "pattern", id="underscore"),
        pytest.param({"seq": -1}, "$.seq", "minimum", id="negative-seq"),
        pytest.param({"seq": "3"}, "$.seq", "type", id="string-seq"),
        pytest.param({"server": ""}, "$.server", "minLength", id="empty-server"),
        pytest.param({"reason": ""}, "$.reason", "minLength", id="empty-reason"),
    ],
)
def test_bad_fill_is_rejected_at_its_path(
    overrides: dict[str, Any], path: str, keyword: str
) -> None:
    fill = a_fill(**overrides)
    for key, value in overrides.items():
        if value is None:
            fill.pop(key, None)
    error = rejection("fill.v1", fill)
    assert (error.path, error.keyword) == (path, keyword)
    assert str(error).startswith(f"fill.v1: {path}: ")
    assert error.schema_name == "fill.v1"


def test_not_an_object() -> None:
    assert rejection("fill.v1", [a_fill()]).path == "$"


def test_every_error_is_listed() -> None:
    error = rejection("fill.v1", a_fill(volume=-1, platform="mt6"))
    assert {schemas.error_path(e) for e in error.errors} == {"$.volume", "$.platform"}
    assert "(+1 more)" in str(error)


# -- bad_fills(): each family is exactly one defect, told apart with the schema alone -------


def _reference_reason(raw: bytes) -> str | None:
    """How a consumer can derive the dead-letter reason from the schema errors."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            doc = json.loads(raw)  # unlike orjson, accepts bare NaN / Infinity tokens
        except ValueError:
            return "undecodable"
        return "not_a_number" if _has_non_finite(doc) else "undecodable"
    if not isinstance(doc, dict):
        return "schema"
    errors = list(iter_errors("fill.v1", doc))
    if any(_non_finite_string(doc.get(f)) for f in DECIMAL_FIELDS):
        return "not_a_number"
    for e in errors:
        where = schemas.error_path(e)
        if where == "$.platform" and e.validator == "enum" and isinstance(e.instance, str):
            return "unknown_platform"
        if where == "$.volume" and e.validator == "minimum":
            return "negative_volume"
        if where == "$.usd_rate" and e.validator == "required":
            return "missing_usd_rate"
    if errors:
        return "schema"
    if datetime.fromisoformat(doc["close_time"]) < datetime.fromisoformat(doc["open_time"]):
        return "close_before_open"
    return None


def _has_non_finite(value: object) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    return False


def _non_finite_string(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return not Decimal(value).is_finite()
    except InvalidOperation:
        return False


@settings(max_examples=500)
@given(bad_fills())
def test_bad_fill_families_are_one_defect_each(pair: tuple[bytes, str]) -> None:
    raw, reason = pair
    assert reason in BAD_FILL_REASONS
    assert _reference_reason(raw) == reason


@settings(max_examples=300)
@given(fills())
def test_reference_reason_accepts_valid_fills(fill: dict[str, Any]) -> None:
    assert _reference_reason(orjson.dumps(fill)) is None


# -- seed.v1 ----------------------------------------------------------------------------------


def test_spec_example_seed_file_is_the_spec_text() -> None:
    spec = REPO.parent / "shared" / "SPEC.md"
    if not spec.exists():
        pytest.skip("../shared/SPEC.md is not next to this checkout")
    block = re.search(r"```yaml\n(.*?)```", spec.read_text(), re.S)
    assert block is not None
    assert SPEC_SEED.read_text() == block.group(1)


def test_spec_example_seed_validates() -> None:
    validate("seed.v1", spec_seed())


def test_seed_as_json_validates() -> None:
    validate("seed.v1", json.loads(json.dumps(spec_seed())))


def test_seed_with_every_change_subject() -> None:
    seed = spec_seed()
    at = "2024-12-01T00:00:00Z"
    seed["changes"] += [
        {"at": at, "client": "C-2", "ib": None, "verified": True},
        {"at": at, "ib": "IB-1", "parent": None, "rebate_pct": "25", "status": "suspended"},
        {"at": at, "account": 900002, "type": "standard", "live": False, "client": "C-1"},
        {"at": at, "plan": "std", "min_hold_seconds": 60, "upline_override_pct": ["15"]},
        {"at": at, "loyalty": {"accrual_pct": "12", "exclude_ib_referred": True}},
        {"at": at, "symbols": {"suffixes": [".m", "-std", "micro"]}},
    ]
    seed["wallets"].append({"login": 900002, "jm_allocated": "5"})  # allocated_at defaults
    validate("seed.v1", seed)


def _edit(mutate: Any) -> dict[str, Any]:
    seed = copy.deepcopy(spec_seed())
    mutate(seed)
    return seed


@pytest.mark.parametrize(
    ("mutate", "path", "keyword"),
    [
        pytest.param(
            lambda s: s.update(plan=[]), "$.plan", "additionalProperties", id="unknown-top-key"
        ),
        pytest.param(
            lambda s: s.pop("effective_from"), "$.effective_from", "required", id="no-start"
        ),
        pytest.param(
            lambda s: s["plans"][0]["rules"][1].update(spread_pct="10"),
            "$.plans[0].rules[1]",
            "oneOf",
            id="rule-with-two-methods",
        ),
        pytest.param(
            lambda s: s["plans"][0]["rules"][1].pop("per_lot_usd"),
            "$.plans[0].rules[1]",
            "oneOf",
            id="rule-without-method",
        ),
        pytest.param(
            lambda s: s["plans"][0]["rules"][0].update(per_lot_usd=20),
            "$.plans[0].rules[0].per_lot_usd",
            "type",
            id="number-not-decimal-string",
        ),
        pytest.param(
            lambda s: s["plans"][0]["rules"][0].update(max_usd_per_lt="5"),
            "$.plans[0].rules[0].max_usd_per_lt",
            "additionalProperties",
            id="typo-in-rule",
        ),
        pytest.param(
            lambda s: s["plans"][0].update(min_hold_second=60),
            "$.plans[0].min_hold_second",
            "additionalProperties",
            id="typo-in-plan",
        ),
        pytest.param(
            lambda s: s["plans"][0]["upline_override_pct"].append("120"),
            "$.plans[0].upline_override_pct[2]",
            "pattern",
            id="pct-over-100",
        ),
        pytest.param(
            lambda s: s["ibs"][1].update(parnt="IB-M"),
            "$.ibs[1].parnt",
            "additionalProperties",
            id="typo-in-ib",
        ),
        pytest.param(
            lambda s: s["ibs"][0].update(status="paused"),
            "$.ibs[0].status",
            "enum",
            id="ib-status",
        ),
        pytest.param(
            lambda s: s["clients"][1].update(rebate_status="paused"),
            "$.clients[1].rebate_status",
            "enum",
            id="rebate-status",
        ),
        pytest.param(
            lambda s: s["clients"][0].update(verified="yes"),
            "$.clients[0].verified",
            "type",
            id="verified-not-bool",
        ),
        pytest.param(
            lambda s: s["accounts"][0].update(login="900001"),
            "$.accounts[0].login",
            "type",
            id="login-not-int",
        ),
        pytest.param(
            lambda s: s["accounts"][1].update(demo=True),
            "$.accounts[1].demo",
            "additionalProperties",
            id="typo-in-account",
        ),
        pytest.param(
            lambda s: s["wallets"][0].update(login=900001),
            "$.wallets[0].login",
            "additionalProperties",
            id="wallet-mixes-both-kinds",
        ),
        pytest.param(
            lambda s: s["bonuses"][0].update(amount_usd="-5"),
            "$.bonuses[0].amount_usd",
            "pattern",
            id="negative-bonus",
        ),
        pytest.param(
            lambda s: s["changes"][0].pop("at"), "$.changes[0].at", "required", id="change-no-at"
        ),
        pytest.param(
            lambda s: s["changes"][0].update(at="2024-10-01"),
            "$.changes[0].at",
            "pattern",
            id="change-date-only",
        ),
        pytest.param(
            lambda s: s["changes"][0].update(rebate_pc="30"),
            "$.changes[0].rebate_pc",
            "additionalProperties",
            id="typo-in-change",
        ),
        pytest.param(
            lambda s: s["changes"][2].update(status="cancelled"),
            "$.changes[2].status",
            "enum",
            id="ib-change-status",
        ),
        pytest.param(
            lambda s: s["changes"].append({"at": "2024-12-01T00:00:00Z", "rebate_pct": "5"}),
            "$.changes[3]",
            "anyOf",
            id="change-without-subject",
        ),
        pytest.param(
            lambda s: s["changes"].append({"at": "2024-12-01T00:00:00Z", "client": "C-1"}),
            "$.changes[3]",
            "minProperties",
            id="change-changes-nothing",
        ),
    ],
)
def test_bad_seed_is_rejected_at_its_path(mutate: Any, path: str, keyword: str) -> None:
    error = rejection("seed.v1", _edit(mutate))
    assert (error.path, error.keyword) == (path, keyword)


def test_rule_error_message_says_what_is_allowed() -> None:
    seed = _edit(lambda s: s["plans"][0]["rules"][1].update(spread_pct="10"))
    assert "exactly one of per_lot_usd, spread_pct, commission_pct" in str(
        rejection("seed.v1", seed)
    )


# -- credit.v1 --------------------------------------------------------------------------------


def test_credit_validates() -> None:
    validate("credit.v1", a_credit())


def test_reversal_validates() -> None:
    reversal = a_credit(
        kind="reversal",
        amount="-12.00",
        credit_id="cr_" + "f" * 32,
        reverses="cr_" + "0123456789abcdef" * 2,
        basis={"level": 1, "method": "reversal"},
    )
    validate("credit.v1", reversal)


def test_loyalty_accrual_is_jm_usd_to_a_client() -> None:
    accrual = a_credit(
        kind="loyalty_accrual",
        beneficiary={"type": "client", "id": "C-1"},
        currency="JMUSD",
        amount="0.70",
        basis={"level": 0, "method": "accrual", "rate": "10", "base": "7.00"},
    )
    validate("credit.v1", accrual)


@pytest.mark.parametrize(
    ("overrides", "path", "keyword"),
    [
        pytest.param({"amount": "12.0"}, "$.amount", "pattern", id="one-decimal"),
        pytest.param({"amount": 12.0}, "$.amount", "type", id="float-amount"),
        pytest.param({"amount": "-12.00"}, "$.amount", "pattern", id="negative-non-reversal"),
        pytest.param({"amount": "0.00"}, "$.amount", "not", id="zero-credit"),
        pytest.param({"credit_id": "cr_123"}, "$.credit_id", "pattern", id="short-id"),
        pytest.param({"currency": "JMUSD"}, "$.currency", "const", id="commission-in-jm"),
        pytest.param({"reverses": "cr_" + "a" * 32}, "$.reverses", "type", id="reverses-set"),
        pytest.param({"engine_ran_at": "x"}, "$.engine_ran_at", "additionalProperties", id="extra"),
        pytest.param(
            {"beneficiary": {"type": "client", "id": "C-1"}},
            "$.beneficiary.type",
            "const",
            id="commission-to-client",
        ),
        pytest.param(
            {"basis": {"method": "per_lot_usd"}}, "$.basis.level", "required", id="no-level"
        ),
        pytest.param(
            {"basis": {"level": 1, "method": "per_lot_usd", "rate": 15.5}},
            "$.basis.rate",
            "type",
            id="float-rate",
        ),
        pytest.param(
            {"basis": {"level": 1, "method": "m", "extra": {"x": [0.5]}}},
            "$.basis.extra.x[0]",
            "anyOf",
            id="float-deep-in-basis",
        ),
    ],
)
def test_bad_credit_is_rejected_at_its_path(
    overrides: dict[str, Any], path: str, keyword: str
) -> None:
    error = rejection("credit.v1", a_credit(**overrides))
    assert (error.path, error.keyword) == (path, keyword)


def test_credit_fill_reference_is_closed() -> None:
    credit = a_credit()
    credit["fill"]["volume"] = 100
    assert rejection("credit.v1", credit).path == "$.fill.volume"
    del credit["fill"]["volume"]
    credit["fill"]["revision"] = "ABCDEF0123456789"
    assert rejection("credit.v1", credit).path == "$.fill.revision"


def test_reversal_must_name_what_it_reverses() -> None:
    error = rejection("credit.v1", a_credit(kind="reversal", amount="-12.00"))
    assert (error.path, error.keyword) == ("$.reverses", "type")


# -- wallet commands and events, settlements ----------------------------------------------


ALLOCATE = {
    "schema": "wallet-command.v1",
    "command": "allocate_jm",
    "request_id": "req-1",
    "client": "C-1",
    "login": 900001,
    "amount": "25.50",
}
GRANT = {
    "schema": "wallet-command.v1",
    "command": "grant_bonus",
    "request_id": "req-2",
    "login": 900001,
    "bonus_id": "B-2",
    "amount_usd": "500",
}


def test_wallet_commands_validate() -> None:
    validate("wallet-command.v1", ALLOCATE)
    validate("wallet-command.v1", GRANT)
    validate("wallet-command.v1", {**GRANT, "granted_at": "2024-05-01T00:00:00Z", "trace": "t"})


@pytest.mark.parametrize(
    ("command", "path", "keyword"),
    [
        pytest.param({**ALLOCATE, "command": "burn_jm"}, "$.command", "enum", id="unknown"),
        pytest.param(
            {k: v for k, v in ALLOCATE.items() if k != "login"},
            "$.login",
            "required",
            id="allocate-without-login",
        ),
        pytest.param({**ALLOCATE, "amount": 25.5}, "$.amount", "type", id="float-amount"),
        pytest.param({**ALLOCATE, "amount": "0"}, "$.amount", "pattern", id="zero-amount"),
        pytest.param({**ALLOCATE, "amount": "1.005"}, "$.amount", "pattern", id="sub-cent"),
        pytest.param({**GRANT, "bonus_id": None}, "$.bonus_id", "type", id="null-bonus-id"),
        pytest.param(
            {**GRANT, "granted_at": "2024-05-01"}, "$.granted_at", "pattern", id="granted-at-date"
        ),
        pytest.param(
            {k: v for k, v in GRANT.items() if k != "request_id"},
            "$.request_id",
            "required",
            id="no-request-id",
        ),
    ],
)
def test_bad_wallet_command_is_rejected_at_its_path(
    command: dict[str, Any], path: str, keyword: str
) -> None:
    error = rejection("wallet-command.v1", command)
    assert (error.path, error.keyword) == (path, keyword)


EVENT_ID = "ev_" + "1" * 32
FILL_REF = a_credit()["fill"]
EVENTS = [
    {
        "schema": "wallet-event.v1",
        "event": "jm_allocation_accepted",
        "event_id": EVENT_ID,
        "request_id": "req-1",
        "client": "C-1",
        "login": 900001,
        "amount": "25.50",
        "allocated_at": "2024-05-01T00:00:00Z",
        "reward_jm_balance": "74.50",
        "jm_allocated_balance": "75.50",
    },
    {
        "schema": "wallet-event.v1",
        "event": "jm_allocation_rejected",
        "event_id": EVENT_ID,
        "request_id": "req-1",
        "client": "C-2",
        "login": 900002,
        "amount": "25.50",
        "reason": "client_not_verified",
        "detail": "client C-2 is not verified",
    },
    {
        "schema": "wallet-event.v1",
        "event": "bonus_granted",
        "event_id": EVENT_ID,
        "request_id": "req-2",
        "login": 900001,
        "bonus_id": "B-2",
        "amount_usd": "500",
        "required_lots": "250",
        "granted_at": "2024-05-01T00:00:00Z",
    },
    {
        "schema": "wallet-event.v1",
        "event": "bonus_unlocked",
        "event_id": EVENT_ID,
        "request_id": None,
        "login": 900001,
        "bonus_id": "B-1",
        "amount_usd": "500",
        "turnover_lots": "250.40",
        "required_lots": "250",
        "fill": FILL_REF,
    },
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e["event"])
def test_wallet_events_validate(event: dict[str, Any]) -> None:
    validate("wallet-event.v1", event)


@pytest.mark.parametrize(
    ("index", "change", "path", "keyword"),
    [
        pytest.param(0, {"event_id": "ev_1"}, "$.event_id", "pattern", id="event-id"),
        pytest.param(0, {"request_id": None}, "$.request_id", "type", id="answer-without-request"),
        pytest.param(1, {"reason": None}, "$.reason", "type", id="rejected-without-reason"),
        pytest.param(1, {"reason": "Not verified"}, "$.reason", "pattern", id="reason-not-a-code"),
        pytest.param(2, {"amount_usd": 500}, "$.amount_usd", "type", id="number-amount"),
        pytest.param(3, {"fill": {}}, "$.fill.server", "required", id="unlock-without-fill"),
        pytest.param(3, {"at": "now"}, "$.at", "additionalProperties", id="unknown-field"),
        pytest.param(3, {"event": "bonus_lost"}, "$.event", "enum", id="unknown-event"),
    ],
)
def test_bad_wallet_event_is_rejected_at_its_path(
    index: int, change: dict[str, Any], path: str, keyword: str
) -> None:
    error = rejection("wallet-event.v1", {**EVENTS[index], **change})
    assert (error.path, error.keyword) == (path, keyword)


SETTLEMENT = {
    "schema": "settlement.v1",
    "event": "ib_settlement",
    "settlement_id": "st_" + "2" * 32,
    "ib": "IB-1",
    "hour": "2024-03-01T10:00:00Z",
    "amount": "1200.00",
    "count": 80,
    "currency": "USD",
}


def test_settlements_validate() -> None:
    validate("settlement.v1", SETTLEMENT)
    adjustment = {
        **SETTLEMENT,
        "event": "ib_settlement_adjustment",
        "settlement_id": "st_" + "3" * 32,
        "adjusts": SETTLEMENT["settlement_id"],
        "sequence": 1,
        "amount": "-15.00",
        "count": 2,
    }
    validate("settlement.v1", adjustment)


@pytest.mark.parametrize(
    ("change", "path", "keyword"),
    [
        pytest.param({"hour": "2024-03-01T10:30:00Z"}, "$.hour", "pattern", id="not-on-the-hour"),
        pytest.param({"amount": "1200"}, "$.amount", "pattern", id="amount-not-cents"),
        pytest.param({"currency": "JMUSD"}, "$.currency", "const", id="not-usd"),
        pytest.param({"count": -1}, "$.count", "minimum", id="negative-count"),
        pytest.param({"settlement_id": "st_x"}, "$.settlement_id", "pattern", id="bad-id"),
        pytest.param({"sequence": 1}, "$", "not", id="first-settlement-is-no-adjustment"),
    ],
)
def test_bad_settlement_is_rejected_at_its_path(
    change: dict[str, Any], path: str, keyword: str
) -> None:
    error = rejection("settlement.v1", {**SETTLEMENT, **change})
    assert (error.path, error.keyword) == (path, keyword)
