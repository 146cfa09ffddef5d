"""SPEC 2 and 8: fill.v1 parsing; every kind of bad input gets its dead-letter reason."""

from __future__ import annotations

import glob
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings

from engine.errors import BadFill
from engine.fill import Fill, _parse_checked, _parse_fast, decode_fill
from schemas import iter_errors
from tests.factories import fill_line, make_fill, make_fill_dict
from tests.strategies import bad_fills, fills, mutated_fills


def test_mt4_and_mt5_volume_units() -> None:
    assert make_fill(platform="mt4", volume=150).lots == Decimal("1.5")
    assert make_fill(platform="mt5", volume=15000).lots == Decimal("1.5")


def test_usd_and_cent_accounts_need_no_usd_rate() -> None:
    assert make_fill(currency="USD").usd_rate == 1
    assert make_fill(currency="USC").usd_rate == Decimal("0.01")
    assert make_fill(currency="EUR", usd_rate="1.0843").usd_rate == Decimal("1.0843")


@pytest.mark.parametrize(
    ("raw", "reason", "field"),
    [
        (b"{not json", "undecodable", None),
        (b"\xff\xfe", "undecodable", None),
        (b"[1, 2]", "schema", None),
        (fill_line(schema="fill.v2"), "schema", "schema"),
        (
            orjson.dumps({k: v for k, v in make_fill_dict().items() if k != "login"}),
            "schema",
            "login",
        ),
        (fill_line(commission=-7.5), "schema", "commission"),  # a float, not a decimal string
        (fill_line(volume="100"), "schema", "volume"),
        (fill_line(profit="1 344.00"), "schema", "profit"),  # thousands separator (real data)
        (fill_line(close_time="2024-03-01 10:10:00"), "schema", "close_time"),
        (fill_line(side="long"), "schema", "side"),
        (fill_line(volume=-100), "negative_volume", "volume"),
        (fill_line(close_price="NaN"), "not_a_number", "close_price"),
        (fill_line(commission="Infinity"), "not_a_number", "commission"),
        (fill_line().replace(b'"0.00"', b"NaN", 1), "not_a_number", None),  # bare NaN token
        (fill_line(platform="mt6"), "unknown_platform", "platform"),
        (fill_line(close_time="2024-03-01T09:59:59Z"), "close_before_open", "close_time"),
        (fill_line(currency="EUR"), "missing_usd_rate", "usd_rate"),
        (fill_line(currency="EUR", usd_rate="-1"), "impossible_value", "usd_rate"),
        (fill_line(contract_size="0"), "impossible_value", "contract_size"),
    ],
)
def test_bad_fills_are_rejected_with_their_reason(
    raw: bytes, reason: str, field: str | None
) -> None:
    with pytest.raises(BadFill) as err:
        decode_fill(raw)
    assert err.value.reason == reason
    assert err.value.field == field


def test_every_real_mt4_fill_parses() -> None:
    parsed = 0
    for path in sorted(glob.glob("sample/fills/mt4-real-*.fills.jsonl")):
        with open(path, "rb") as lines:
            for line in lines:
                decode_fill(line)
                parsed += 1
    # 297 + 2,064 + 124 fills; the corrected copy has no "1 344.00"-style profits left.
    assert parsed == 2485


def test_the_deliberately_bad_sample_fills_give_one_of_each_reason() -> None:
    got: list[tuple[str, str | None]] = []
    with open("sample/fills/deliberately-bad.fills.jsonl", "rb") as lines:
        for line in lines:
            with pytest.raises(BadFill) as err:
                decode_fill(line)
            got.append((err.value.reason, err.value.field))
    assert got == [  # the table in sample/README.md, line by line
        ("undecodable", None),
        ("schema", "side"),
        ("schema", "profit"),
        ("negative_volume", "volume"),
        ("impossible_value", "point_value"),
        ("not_a_number", "commission"),
        ("unknown_platform", "platform"),
        ("close_before_open", "close_time"),
        ("missing_usd_rate", "usd_rate"),
    ]


# SPEC 2 [r2]: decimals exactly -?[0-9]+(.[0-9]+)?, times exactly YYYY-MM-DDTHH:MM:SS[.f]Z,
# point_value, spread_points, contract_size and usd_rate never negative.
@pytest.mark.parametrize(
    ("overrides", "reason", "field"),
    [
        ({"commission": "0.0011E+3"}, "schema", "commission"),
        ({"commission": "-7_000"}, "schema", "commission"),
        ({"profit": "+5.00"}, "schema", "profit"),
        ({"swap": ".5"}, "schema", "swap"),
        ({"profit": "12."}, "schema", "profit"),
        ({"profit": "１２.00"}, "schema", "profit"),  # fullwidth digits
        ({"profit": "٣.00"}, "schema", "profit"),  # Arabic-Indic digit
        ({"profit": " 12.00"}, "schema", "profit"),
        ({"profit": "12.00 "}, "schema", "profit"),
        ({"profit": "1,344.00"}, "schema", "profit"),
        ({"profit": "1 344.00"}, "schema", "profit"),
        ({"close_price": "1.08050\n"}, "schema", "close_price"),
        ({"close_time": "2024-03-01 10:10:00Z"}, "schema", "close_time"),
        ({"close_time": "2024-03-01t10:10:00z"}, "schema", "close_time"),
        ({"open_time": "2024-03-01T10:00:00+00:00"}, "schema", "open_time"),
        ({"open_time": "2024-03-01T10:00Z"}, "schema", "open_time"),
        ({"open_time": "2024-03-01T10:00:60Z"}, "schema", "open_time"),
        ({"point_value": "-1.00"}, "impossible_value", "point_value"),
        ({"point_value": "-0"}, "impossible_value", "point_value"),
        ({"open_price": "-0.0"}, "impossible_value", "open_price"),
        ({"contract_size": "-100000"}, "impossible_value", "contract_size"),
        ({"currency": "EUR", "usd_rate": "-1.08"}, "impossible_value", "usd_rate"),
        ({"usd_rate": "-1"}, "impossible_value", "usd_rate"),  # checked on USD accounts too
        ({"spread_points": -3}, "impossible_value", "spread_points"),
        ({"deal": -1}, "impossible_value", "deal"),
        ({"currency": "usd"}, "schema", "currency"),
        ({"seq": -1}, "impossible_value", "seq"),
        ({"seq": "4"}, "schema", "seq"),
    ],
)
def test_r2_strict_forms_are_dead_lettered_with_their_reason(
    overrides: dict[str, object], reason: str, field: str
) -> None:
    fill = make_fill_dict(**overrides)
    with pytest.raises(BadFill) as err:
        decode_fill(orjson.dumps(fill))
    assert (err.value.reason, err.value.field) == (reason, field)
    assert list(iter_errors("fill.v1", fill)), "the schema must reject it too"


def test_a_null_optional_field_is_a_schema_error_not_an_absent_one() -> None:
    raw = fill_line().replace(b'"reason"', b'"point_value":null,"reason"')
    with pytest.raises(BadFill) as err:
        decode_fill(raw)
    assert (err.value.reason, err.value.field) == ("schema", "point_value")


def test_seq_is_optional_and_makes_part_of_the_revision() -> None:
    plain = make_fill()
    assert plain.seq is None
    # Without seq the revision (hence every credit id) is what it was before seq existed.
    assert plain.revision == make_fill(comment="ignored").revision
    assert make_fill(seq=0).seq == 0
    assert len({plain.revision, make_fill(seq=1).revision, make_fill(seq=2).revision}) == 3


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _accepts(parse: Callable[[dict[str, Any]], Fill], fill: dict[str, Any]) -> Fill | None:
    try:
        return parse(fill)
    except Exception:
        return None


@settings(max_examples=1500, deadline=None)
@given(fill=mutated_fills())
def test_the_parser_accepts_exactly_what_the_schema_accepts(fill: dict[str, Any]) -> None:
    schema_ok = not list(iter_errors("fill.v1", fill))
    # The one rule JSON Schema cannot say: close_time >= open_time (SPEC 8, the engine's).
    in_order = schema_ok and _time(fill["close_time"]) >= _time(fill["open_time"])
    fast, careful = _accepts(_parse_fast, fill), _accepts(_parse_checked, fill)
    assert fast == careful
    assert (careful is not None) == in_order


@settings(max_examples=300, deadline=None)
@given(fill=fills())
def test_fast_and_careful_parsers_agree_on_good_fills(fill: dict[str, object]) -> None:
    assert _parse_fast(fill) == _parse_checked(fill)


@settings(max_examples=300, deadline=None)
@given(case=bad_fills())
def test_every_bad_fill_gets_the_reason_its_defect_calls_for(case: tuple[bytes, str]) -> None:
    raw, reason = case
    with pytest.raises(BadFill) as err:
        decode_fill(raw)
    assert err.value.reason == reason
