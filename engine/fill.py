"""fill.v1: the closed-order record a MT4/MT5 bridge publishes (SPEC 2), parsed and validated.

`parse_fill` is the hot-path validator: hand-written because a JSON Schema validator costs ~50x
more per fill. It accepts exactly what schemas/fill.v1.json accepts (SPEC 2 r2: decimals only
as -?digits[.digits], times only as YYYY-MM-DDTHH:MM:SS[.f]Z, no negative point_value,
spread_points, contract_size or usd_rate); tests/unit/test_fill.py holds the two together on
generated valid fills and mutations of them.
"""

from __future__ import annotations

import hashlib
import math
import re
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
# SPEC 2 [r2]: the only decimal form (no exponent, "_", "+", blanks, grouping, ".5", "12.") and
# the only time form (UTC, "T", "Z"); the same patterns as schemas/fill.v1.json. `[0-9]` is
# ASCII only in Python's re, so other scripts' digits are refused too.
_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?Z")
_CURRENCY = re.compile(r"[A-Z][A-Z0-9]{2,7}")
# Optional fields: absent is fine, null is not (the schema types them string/integer).
_OPTIONAL = ("spread_points", "point_value", "usd_rate", "seq")
_ABSENT: Any = object()
# The fields that make a revision: anything else in the message is ignored (SPEC 2), so it
# must not change the revision id either.
_REVISION_FIELDS = (
    "server", "platform", "event", "deal", "position", "login", "side", "entry", "symbol",
    "volume", "open_time", "close_time", "open_price", "close_price", "digits", "contract_size",
    "spread_points", "point_value", "commission", "swap", "profit", "currency", "usd_rate",
    "reason",
)  # fmt: skip
# `seq` [r2] joins the revision only when present, so fills without it keep their revision
# (and their credit ids) byte for byte.


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
    seq: int | None
    """The bridge's per-deal revision counter [r2] (None: revisions are told apart by content)."""
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
        or deal < 0
        or position < 0
        or login < 0
        or not 0 <= digits <= 10
    ):
        raise ValueError
    server, symbol, reason, currency = obj["server"], obj["symbol"], obj["reason"], obj["currency"]
    opened, closed = obj["open_time"], obj["close_time"]
    if not (
        type(server) is str and server and type(symbol) is str and symbol
        and type(reason) is str and reason
        and type(currency) is str and _CURRENCY.fullmatch(currency)
        and type(opened) is str and _TIME.fullmatch(opened)
        and type(closed) is str and _TIME.fullmatch(closed)
    ):  # fmt: skip
        raise ValueError
    open_time = datetime.fromisoformat(opened)
    close_time = datetime.fromisoformat(closed)
    if close_time < open_time:
        raise ValueError
    spread_points, point_value, rate, seq = (obj.get(f, _ABSENT) for f in _OPTIONAL)
    if rate is _ABSENT:
        rate = None
        if currency not in _FIXED_RATES:
            raise ValueError
    else:
        rate = _fast_unsigned(rate)
        if rate <= 0:
            raise ValueError
    usd_rate = _FIXED_RATES.get(currency) or rate
    contract_size = _fast_unsigned(obj["contract_size"])
    if contract_size <= 0:
        raise ValueError
    if spread_points is _ABSENT:
        spread_points = None
    elif type(spread_points) is not int or spread_points < 0:
        raise ValueError
    if seq is _ABSENT:
        seq = None
    elif type(seq) is not int or seq < 0:
        raise ValueError
    return Fill(
        server, platform, event, deal, position, login, side, entry, symbol, volume,
        open_time, close_time, _fast_unsigned(obj["open_price"]),
        _fast_unsigned(obj["close_price"]), digits, contract_size, spread_points,
        None if point_value is _ABSENT else _fast_unsigned(point_value),
        _fast_decimal(obj["commission"]), _fast_decimal(obj["swap"]),
        _fast_decimal(obj["profit"]), currency, usd_rate, reason, seq, _revision(obj), closed,
    )  # fmt: skip


def _fast_decimal(value: Any) -> Decimal:
    if type(value) is not str or _DECIMAL.fullmatch(value) is None:
        raise ValueError
    return Decimal(value)


def _fast_unsigned(value: Any) -> Decimal:
    if type(value) is not str or _DECIMAL.fullmatch(value) is None or value[0] == "-":
        raise ValueError
    return Decimal(value)


def _parse_checked(obj: Mapping[str, Any]) -> Fill:
    if obj.get("schema") != "fill.v1":
        raise BadFill("schema", "must be 'fill.v1'", "schema")
    for name in _OPTIONAL:
        if name in obj and obj[name] is None:
            raise BadFill("schema", "must not be null (leave an optional field out)", name)
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
    if _CURRENCY.fullmatch(currency) is None:
        raise BadFill("schema", f"{currency!r} is not a currency code", "currency")
    usd_rate = _FIXED_RATES.get(currency)
    if "usd_rate" in obj:  # checked on USD/USC accounts too, although their rate is fixed
        rate = _unsigned(obj, "usd_rate", allow_zero=False)
        usd_rate = usd_rate or rate
    elif usd_rate is None:
        raise BadFill("missing_usd_rate", f"usd_rate required for {currency}", "usd_rate")
    spread_points = None if "spread_points" not in obj else _natural(obj, "spread_points")
    point_value = None if "point_value" not in obj else _unsigned(obj, "point_value")
    return Fill(
        server=_str(obj, "server"),
        platform=platform,
        event=event,
        deal=_natural(obj, "deal"),
        position=_natural(obj, "position"),
        login=_natural(obj, "login"),
        side=side,
        entry=entry,
        symbol=_str(obj, "symbol"),
        volume=volume,
        open_time=open_time,
        close_time=close_time,
        open_price=_unsigned(obj, "open_price"),
        close_price=_unsigned(obj, "close_price"),
        digits=digits,
        contract_size=_unsigned(obj, "contract_size", allow_zero=False),
        spread_points=spread_points,
        point_value=point_value,
        commission=_decimal(obj, "commission"),
        swap=_decimal(obj, "swap"),
        profit=_decimal(obj, "profit"),
        currency=currency,
        usd_rate=usd_rate,
        reason=_str(obj, "reason"),
        seq=None if "seq" not in obj else _natural(obj, "seq"),
        revision=_revision(obj),
        close_time_text=obj["close_time"],
    )


def _revision(obj: Mapping[str, Any]) -> str:
    fields = [obj.get(k) for k in _REVISION_FIELDS]
    if "seq" in obj:
        fields.append(obj["seq"])
    canonical = orjson.dumps(fields)
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


def _natural(obj: Mapping[str, Any], field: str) -> int:
    value = _int(obj, field)
    if value < 0:
        raise BadFill("impossible_value", f"{value} must not be negative", field)
    return value


def _decimal(obj: Mapping[str, Any], field: str) -> Decimal:
    value = obj.get(field)
    if type(value) is not str:
        if value is None:
            raise _missing(field)
        raise BadFill("schema", "must be a decimal string, never a float", field)
    if _DECIMAL.fullmatch(value) is None:
        try:
            finite = Decimal(value).is_finite()
        except InvalidOperation:
            finite = True
        if not finite:
            raise BadFill("not_a_number", f"{value!r} is not a number", field)
        raise BadFill("schema", f"{value!r} is not a plain decimal (-?digits[.digits])", field)
    return Decimal(value)


def _unsigned(obj: Mapping[str, Any], field: str, *, allow_zero: bool = True) -> Decimal:
    number = _decimal(obj, field)
    if obj[field][0] == "-" or (number == 0 and not allow_zero):
        what = "non-negative" if allow_zero else "positive"
        raise BadFill("impossible_value", f"{obj[field]} must be {what}", field)
    return number


def _time(obj: Mapping[str, Any], field: str) -> datetime:
    value = _str(obj, field)
    if _TIME.fullmatch(value) is None:
        raise BadFill("schema", f"{value!r} is not ISO-8601 UTC (YYYY-MM-DDTHH:MM:SS[.f]Z)", field)
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise BadFill("schema", f"{value!r} is not an ISO-8601 time", field) from None
