"""fill.v1: the closed-order record a MT4/MT5 bridge publishes (SPEC 2), parsed and validated.

`parse_fill` is the hot-path validator: hand-written because a JSON Schema validator costs ~50x
more per fill. tests/unit/test_fill.py checks that it accepts exactly what schemas/fill.v1.json
accepts on generated input.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from engine.errors import BadFill

__all__ = ["EARNING_ENTRIES", "Fill", "decode_fill", "parse_fill"]

PLATFORM_LOT_EXPONENT = {"mt4": -2, "mt5": -4}  # MT4 volume is 1/100 lot, MT5 1/10000 lot
EARNING_ENTRIES = frozenset({"out", "inout", "out_by"})
_EVENTS = frozenset({"add", "update", "delete"})
_SIDES = frozenset({"buy", "sell"})
_ENTRIES = frozenset({"in", "out", "inout", "out_by"})
_FIXED_RATES = {"USD": Decimal(1), "USC": Decimal("0.01")}
# The fields that make a revision: anything else in the message is ignored (SPEC 2), so it
# must not change the revision id either.
_REVISION_FIELDS = (
    "server", "platform", "event", "deal", "position", "login", "side", "entry", "symbol",
    "volume", "open_time", "close_time", "open_price", "close_price", "digits", "contract_size",
    "spread_points", "point_value", "commission", "swap", "profit", "currency", "usd_rate",
    "reason",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Fill:
    """One validated fill revision. Money and prices are Decimal, times UTC-aware."""

    server: str
    platform: str
    event: str
    deal: int
    position: int
    login: int
    side: str
    entry: str
    symbol: str
    volume: int
    open_time: datetime
    close_time: datetime
    open_price: Decimal
    close_price: Decimal
    digits: int
    contract_size: Decimal
    spread_points: int | None
    point_value: Decimal | None
    commission: Decimal
    swap: Decimal
    profit: Decimal
    currency: str
    usd_rate: Decimal
    reason: str
    revision: str
    """16 hex chars identifying this exact revision (hash of the fill.v1 fields)."""
    close_time_text: str
    """close_time exactly as the bridge wrote it: what credits quote."""
    lots: Decimal = field(init=False, compare=False)
    """Volume in lots: MT4 volume / 100, MT5 volume / 10000."""

    def __post_init__(self) -> None:
        lots = Decimal(self.volume).scaleb(PLATFORM_LOT_EXPONENT[self.platform])
        object.__setattr__(self, "lots", lots)

    @property
    def earns(self) -> bool:
        """Only closing deals earn; an opening ("in") deal is acknowledged and ignored."""
        return self.entry in EARNING_ENTRIES

    @property
    def hold_seconds(self) -> float:
        return (self.close_time - self.open_time).total_seconds()

    @property
    def points_moved(self) -> Decimal:
        """|close - open| expressed in points (10^-digits)."""
        return abs(self.close_price - self.open_price).scaleb(self.digits)

    @property
    def is_cent(self) -> bool:
        return self.currency == "USC"


def decode_fill(raw: bytes | str) -> Fill:
    """Decode one JSON message and validate it (raises BadFill with a dead-letter reason)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _undecodable_reason(raw, exc) from exc
    if not isinstance(obj, dict):
        raise BadFill("schema", "a fill must be a JSON object")
    return parse_fill(obj)


def _undecodable_reason(raw: bytes | str, exc: Exception) -> BadFill:
    # orjson refuses bare NaN/Infinity tokens; the stdlib parser accepts them, which lets us
    # tell "not a number" apart from plain garbage for the dead-letter reason.
    import json  # noqa: PLC0415 - only on the error path

    def _reject(token: str) -> Any:
        raise BadFill("not_a_number", f"{token} is not a number")

    try:
        json.loads(raw, parse_constant=_reject)
    except BadFill as nan:
        return nan
    except (ValueError, TypeError):
        pass
    return BadFill("undecodable", f"not valid UTF-8 JSON: {exc}")


def parse_fill(obj: Mapping[str, Any]) -> Fill:
    """Validate a decoded fill.v1 object and build a Fill (raises BadFill).

    The fast path below checks everything with no per-field calls; whenever it meets anything
    unusual it hands over to `_parse_checked`, which finds and names the error (or builds the
    same Fill). tests/unit/test_fill.py checks the two agree on generated good and bad fills.
    """
    try:
        return _parse_fast(obj)
    except Exception:
        return _parse_checked(obj)


def _parse_fast(obj: Mapping[str, Any]) -> Fill:
    if obj["schema"] != "fill.v1":
        raise ValueError
    platform, event, side, entry = obj["platform"], obj["event"], obj["side"], obj["entry"]
    if (
        platform not in PLATFORM_LOT_EXPONENT
        or event not in _EVENTS
        or side not in _SIDES
        or entry not in _ENTRIES
    ):
        raise ValueError
    volume, deal, position, login, digits = (
        obj["volume"], obj["deal"], obj["position"], obj["login"], obj["digits"],
    )  # fmt: skip
    if (
        type(volume) is not int
        or type(deal) is not int
        or type(position) is not int
        or type(login) is not int
        or type(digits) is not int
        or volume < 0
        or not 0 <= digits <= 10
    ):
        raise ValueError
    server, symbol, reason, currency = obj["server"], obj["symbol"], obj["reason"], obj["currency"]
    opened, closed = obj["open_time"], obj["close_time"]
    if not (
        type(server) is str and server and type(symbol) is str and symbol
        and type(reason) is str and reason and type(currency) is str and currency
        and type(opened) is str and opened[-1:] == "Z"
        and type(closed) is str and closed[-1:] == "Z"
    ):  # fmt: skip
        raise ValueError
    open_time = datetime.fromisoformat(opened)
    close_time = datetime.fromisoformat(closed)
    if close_time < open_time:
        raise ValueError
    usd_rate = _FIXED_RATES.get(currency) or _strict_decimal(obj["usd_rate"])
    open_price = _strict_decimal(obj["open_price"])
    close_price = _strict_decimal(obj["close_price"])
    contract_size = _strict_decimal(obj["contract_size"])
    if usd_rate <= 0 or open_price < 0 or close_price < 0 or contract_size <= 0:
        raise ValueError
    spread_points = obj.get("spread_points")
    if spread_points is not None and (type(spread_points) is not int or spread_points < 0):
        raise ValueError
    point_value = obj.get("point_value")
    return Fill(
        server, platform, event, deal, position, login, side, entry, symbol, volume,
        open_time, close_time, open_price, close_price, digits, contract_size, spread_points,
        None if point_value is None else _strict_decimal(point_value),
        _strict_decimal(obj["commission"]), _strict_decimal(obj["swap"]),
        _strict_decimal(obj["profit"]), currency, usd_rate, reason, _revision(obj), closed,
    )  # fmt: skip


def _strict_decimal(value: Any) -> Decimal:
    if type(value) is not str:
        raise TypeError
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError
    return number


def _parse_checked(obj: Mapping[str, Any]) -> Fill:
    if obj.get("schema") != "fill.v1":
        raise BadFill("schema", "must be 'fill.v1'", "schema")
    platform = _str(obj, "platform")
    if platform not in PLATFORM_LOT_EXPONENT:
        raise BadFill("unknown_platform", f"unknown platform {platform!r}", "platform")
    event = _enum(obj, "event", _EVENTS)
    side = _enum(obj, "side", _SIDES)
    entry = _enum(obj, "entry", _ENTRIES)
    volume = _int(obj, "volume")
    if volume < 0:
        raise BadFill("negative_volume", f"negative volume {volume}", "volume")
    open_time = _time(obj, "open_time")
    close_time = _time(obj, "close_time")
    if close_time < open_time:
        raise BadFill("close_before_open", "close_time is before open_time", "close_time")
    digits = _int(obj, "digits")
    if not 0 <= digits <= 10:
        raise BadFill("impossible_value", f"digits {digits} outside 0..10", "digits")
    currency = _str(obj, "currency")
    usd_rate = _FIXED_RATES.get(currency)
    if usd_rate is None:
        if obj.get("usd_rate") is None:
            raise BadFill("missing_usd_rate", f"usd_rate required for {currency}", "usd_rate")
        usd_rate = _positive(obj, "usd_rate")
    spread_points = obj.get("spread_points")
    if spread_points is not None:
        spread_points = _int(obj, "spread_points")
        if spread_points < 0:
            raise BadFill("impossible_value", "negative spread", "spread_points")
    point_value = None if obj.get("point_value") is None else _decimal(obj, "point_value")
    return Fill(
        server=_str(obj, "server"),
        platform=platform,
        event=event,
        deal=_int(obj, "deal"),
        position=_int(obj, "position"),
        login=_int(obj, "login"),
        side=side,
        entry=entry,
        symbol=_str(obj, "symbol"),
        volume=volume,
        open_time=open_time,
        close_time=close_time,
        open_price=_positive(obj, "open_price", allow_zero=True),
        close_price=_positive(obj, "close_price", allow_zero=True),
        digits=digits,
        contract_size=_positive(obj, "contract_size"),
        spread_points=spread_points,
        point_value=point_value,
        commission=_decimal(obj, "commission"),
        swap=_decimal(obj, "swap"),
        profit=_decimal(obj, "profit"),
        currency=currency,
        usd_rate=usd_rate,
        reason=_str(obj, "reason"),
        revision=_revision(obj),
        close_time_text=obj["close_time"],
    )


def _revision(obj: Mapping[str, Any]) -> str:
    canonical = orjson.dumps([obj.get(k) for k in _REVISION_FIELDS])
    return hashlib.blake2b(canonical, digest_size=8).hexdigest()


def _missing(field: str) -> BadFill:
    return BadFill("schema", "required field is missing", field)


def _str(obj: Mapping[str, Any], field: str) -> str:
    value = obj.get(field)
    if type(value) is not str or not value:
        raise _missing(field) if value is None else BadFill("schema", "must be a string", field)
    return value


def _enum(obj: Mapping[str, Any], field: str, allowed: frozenset[str]) -> str:
    value = _str(obj, field)
    if value not in allowed:
        raise BadFill("schema", f"{value!r} is not one of {sorted(allowed)}", field)
    return value


def _int(obj: Mapping[str, Any], field: str) -> int:
    value = obj.get(field)
    if type(value) is not int:  # bool is an int subclass: excluded on purpose
        if value is None:
            raise _missing(field)
        if isinstance(value, float) and not math.isfinite(value):
            raise BadFill("not_a_number", f"{value} is not a number", field)
        raise BadFill("schema", "must be an integer", field)
    return value


def _decimal(obj: Mapping[str, Any], field: str) -> Decimal:
    value = obj.get(field)
    if type(value) is not str:
        if value is None:
            raise _missing(field)
        raise BadFill("schema", "must be a decimal string, never a float", field)
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise BadFill("schema", f"{value!r} is not a decimal", field) from None
    if not number.is_finite():
        raise BadFill("not_a_number", f"{value!r} is not a number", field)
    return number


def _positive(obj: Mapping[str, Any], field: str, *, allow_zero: bool = False) -> Decimal:
    number = _decimal(obj, field)
    if number < 0 or (number == 0 and not allow_zero):
        raise BadFill("impossible_value", f"{number} must be positive", field)
    return number


def _time(obj: Mapping[str, Any], field: str) -> datetime:
    value = _str(obj, field)
    if not value.endswith("Z"):
        raise BadFill("schema", f"{value!r} is not ISO-8601 UTC ending in Z", field)
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise BadFill("schema", f"{value!r} is not an ISO-8601 time", field) from None
