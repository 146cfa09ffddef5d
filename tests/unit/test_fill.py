"""SPEC 2 and 8: fill.v1 parsing; every kind of bad input gets its dead-letter reason."""

from __future__ import annotations

import glob
from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings

from engine.errors import BadFill
from engine.fill import _parse_checked, _parse_fast, decode_fill
from tests.factories import fill_line, make_fill, make_fill_dict
from tests.strategies import bad_fills, fills


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


def test_real_mt4_histories_parse_except_the_thousands_separators() -> None:
    bad: list[str] = []
    good = 0
    for path in sorted(glob.glob("sample/fills/*.fills.jsonl")):
        with open(path, "rb") as lines:
            for line in lines:
                try:
                    decode_fill(line)
                    good += 1
                except BadFill as exc:
                    bad.append(f"{exc.reason}:{exc.field}")
    # The converter kept "1 344.00"-style thousands separators in 78 profits: a schema error.
    assert (good, len(bad), set(bad)) == (2407, 78, {"schema:profit"})


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
