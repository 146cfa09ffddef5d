"""Hypothesis strategies for fill.v1 messages: valid fills and the bad inputs of SPEC section 8.

`fills()` draws valid fill.v1 dicts; keyword arguments pin what a test is about
(`fills(platform="mt5", currency="EUR")`). `bad_fills()` draws `(raw bytes, reason)` pairs with
exactly one defect each, `reason` being the dead-letter reason the engine must report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

__all__ = [
    "BAD_FILL_REASONS",
    "DECIMAL_FIELDS",
    "REQUIRED_FIELDS",
    "bad_fills",
    "fills",
    "mutated_fills",
]

REQUIRED_FIELDS = (
    "schema", "server", "platform", "event", "deal", "position", "login", "side", "entry",
    "symbol", "volume", "open_time", "close_time", "open_price", "close_price", "digits",
    "contract_size", "commission", "swap", "profit", "currency", "reason",
)  # fmt: skip
DECIMAL_FIELDS = (
    "open_price", "close_price", "contract_size", "point_value", "commission", "swap", "profit",
    "usd_rate",
)  # fmt: skip
BAD_FILL_REASONS = (
    "undecodable",
    "schema",
    "negative_volume",
    "not_a_number",
    "unknown_platform",
    "close_before_open",
    "missing_usd_rate",
)


@dataclass(frozen=True, slots=True)
class _Symbol:
    name: str
    digits: int
    contract_size: str
    price: int  # typical price, in points
    usd_per_quote: Decimal  # USD value of one unit of the quote currency


_SYMBOLS = (
    _Symbol("EURUSD", 5, "100000", 108_500, Decimal(1)),
    _Symbol("GBPUSD", 5, "100000", 127_000, Decimal(1)),
    _Symbol("USDJPY", 3, "100000", 150_000, Decimal(1) / Decimal(150)),
    _Symbol("EURGBP", 5, "100000", 85_500, Decimal("1.27")),
    _Symbol("XAUUSD", 2, "100", 200_000, Decimal(1)),
    _Symbol("XAGUSD", 3, "5000", 23_000, Decimal(1)),
    _Symbol("US30", 1, "1", 380_000, Decimal(1)),
    _Symbol("NAS100", 2, "1", 1_700_000, Decimal(1)),
    _Symbol("GER40", 1, "1", 170_000, Decimal("1.08")),
    _Symbol("XTIUSD", 2, "1000", 7_500, Decimal(1)),
)
_SUFFIXES = ("", "", ".m", "-std", "micro", ".raw")
_REASONS = ("client", "mobile", "web", "expert", "sl", "tp", "so", "dealer")
# USD value of one unit of account currency (approximate; only the shape matters here).
_USD_PER = {"EUR": "1.08", "GBP": "1.27", "JPY": "0.0067", "CHF": "1.13", "AUD": "0.66"}
_T_MIN = datetime(2020, 1, 1, tzinfo=UTC)
_T_MAX = datetime(2030, 1, 1, tzinfo=UTC)
_DAY_MS = 86_400_000


def _money(cents: int) -> str:
    return _fixed(cents, 2)


def _fixed(units: int, places: int) -> str:
    """`units` x 10^-places as a plain decimal string: _fixed(-5, 2) == "-0.05"."""
    return f"{Decimal(units).scaleb(-places):.{places}f}"


def _iso(t: datetime, *, millis: bool) -> str:
    head = t.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{head}.{t.microsecond // 1000:03d}Z" if millis else f"{head}Z"


@st.composite
def fills(
    draw: st.DrawFn,
    *,
    platform: str | None = None,
    currency: str | None = None,
    entry: str | None = None,
    event: str | None = None,
    server: str | None = None,
    login: int | None = None,
    symbol: str | None = None,
    extras: bool = True,
) -> dict[str, Any]:
    """A valid fill.v1 dict.

    MT4 volumes are 1..10000 (0.01..100 lots), MT5 1..1000000 (0.0001..100 lots); currency
    USD, USC or EUR (any other code gets a usd_rate too); spread_points, point_value and
    usd_rate (where optional) are sometimes missing; close_time >= open_time (equal for "in");
    `extras` adds fields the engine must ignore.
    """
    platform = platform or draw(st.sampled_from(("mt4", "mt5")))
    server = (
        server or f"{platform}-{draw(st.sampled_from(('live', 'demo')))}-{draw(st.integers(1, 3))}"
    )
    currency = currency or draw(st.sampled_from(("USD", "USC", "EUR")))
    entry = entry or draw(st.sampled_from(("out", "out", "out", "inout", "out_by", "in")))
    event = event or draw(st.sampled_from(("add", "add", "update", "delete")))
    spec = draw(st.sampled_from(_SYMBOLS))
    symbol = symbol or spec.name + draw(st.sampled_from(_SUFFIXES))
    side = draw(st.sampled_from(("buy", "sell")))
    volume = draw(st.integers(1, 10_000) if platform == "mt4" else st.integers(1, 1_000_000))
    deal = draw(st.integers(1, 2**40))
    position = deal if platform == "mt4" else draw(st.integers(1, deal))
    login = login if login is not None else draw(st.integers(1, 99_999_999))

    millis = platform == "mt5" or draw(st.booleans())
    open_ms = draw(st.integers(0, (_T_MAX - _T_MIN) // timedelta(milliseconds=1)))
    hold_ms = draw(st.one_of(st.integers(0, 600_000), st.integers(0, 30 * _DAY_MS)))
    if not millis:
        open_ms, hold_ms = open_ms // 1000 * 1000, hold_ms // 1000 * 1000
    if entry == "in":
        hold_ms = 0
    open_t = _T_MIN + timedelta(milliseconds=open_ms)
    close_t = open_t + timedelta(milliseconds=hold_ms)

    open_points = draw(st.integers(max(1, spec.price // 2), spec.price * 2))
    moved = 0 if entry == "in" else draw(st.integers(-spec.price // 10, spec.price // 10))
    close_points = max(0, open_points + moved)

    fill: dict[str, Any] = {
        "schema": "fill.v1",
        "server": server,
        "platform": platform,
        "event": event,
        "deal": deal,
        "position": position,
        "login": login,
        "side": side,
        "entry": entry,
        "symbol": symbol,
        "volume": volume,
        "open_time": _iso(open_t, millis=millis),
        "close_time": _iso(close_t, millis=millis),
        "open_price": _fixed(open_points, spec.digits),
        "close_price": _fixed(close_points, spec.digits),
        "digits": spec.digits,
        "contract_size": spec.contract_size,
    }
    if draw(st.booleans()):
        fill["spread_points"] = draw(st.integers(0, 500))
    if draw(st.booleans()):
        usd_value = Decimal(spec.contract_size).scaleb(-spec.digits) * spec.usd_per_quote
        account_usd = Decimal(_USD_PER.get(currency, "1"))
        fill["point_value"] = f"{usd_value / account_usd:.5f}"
    fill["commission"] = _money(draw(st.integers(-1_000_000, 0)) if entry != "in" else 0)
    fill["swap"] = _money(draw(st.integers(-500_000, 100_000)))
    fill["profit"] = _money(draw(st.integers(-10_000_000, 10_000_000)))
    fill["currency"] = currency
    if currency not in ("USD", "USC"):
        fill["usd_rate"] = draw(st.sampled_from((_USD_PER.get(currency, "1.5"), "1.08345", "0.9")))
    elif draw(st.booleans()):
        fill["usd_rate"] = "1" if currency == "USD" else "0.01"
    fill["reason"] = draw(st.sampled_from(_REASONS))
    if extras and draw(st.integers(0, 4)) == 0:
        fill["comment"] = draw(
            st.text(st.characters(codec="ascii", exclude_characters="@"), max_size=12)
        )
        fill["magic"] = draw(st.integers(0, 2**31 - 1))
    return fill


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


# A placeholder string that serialises to a JSON string token we can swap for a bare token.
_BARE = "@@bare@@"


def _with_bare_token(fill: dict[str, Any], field: str, token: str) -> bytes:
    fill = {**fill, field: _BARE}
    return _dumps(fill).replace(json.dumps(_BARE).encode(), token.encode(), 1)


@st.composite
def _undecodable(draw: st.DrawFn) -> tuple[bytes, str]:
    raw = _dumps(draw(fills()))
    kind = draw(st.sampled_from(("truncated", "bad_utf8", "trailing", "garbage", "binary")))
    if kind == "truncated":
        # A strict prefix of a JSON object never parses: the closing brace is missing.
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif kind == "bad_utf8":
        raw = raw.replace(b'"symbol":"', b'"symbol":"\xff\xfe', 1)
    elif kind == "trailing":
        raw += draw(st.sampled_from((b"}", b"x", b",", b'{"a":1}', b"]")))
    elif kind == "garbage":
        raw = draw(
            st.sampled_from((
                b"not json", b"<fill/>", b"{'schema': 'fill.v1'}", b"{deal: 1}", b"{", b"[1,",
                b'{"a":}', b"\x00\x01", b"   ", b"undefined", b"{\"a\" 1}",
            ))
        )  # fmt: skip
    else:
        # 0xC0 never occurs in UTF-8 and starts no BOM, so no decoder can make sense of it
        raw = b"\xc0" + draw(st.binary(max_size=64))
    return raw, "undecodable"


@st.composite
def _schema_violation(draw: st.DrawFn) -> tuple[bytes, str]:
    fill = draw(fills(extras=False))
    kind = draw(
        st.sampled_from((
            "missing", "float_decimal", "string_int", "float_int", "bool_int", "bad_enum",
            "bad_schema_tag", "time_without_z", "bad_time", "grouped_decimal", "empty_string",
            "not_an_object",
        ))
    )  # fmt: skip
    if kind == "missing":
        del fill[draw(st.sampled_from(REQUIRED_FIELDS))]
    elif kind == "float_decimal":
        field = draw(st.sampled_from(("open_price", "close_price", "commission", "swap", "profit")))
        fill[field] = float(fill[field]) + draw(st.sampled_from((0.0, 0.25)))
    elif kind == "string_int":
        field = draw(st.sampled_from(("deal", "position", "login", "volume", "digits")))
        fill[field] = str(fill[field])
    elif kind == "float_int":
        # non-integral only: whether 2.0 is an integer differs between JSON Schema libraries
        fill[draw(st.sampled_from(("volume", "deal", "login")))] = 1.5
    elif kind == "bool_int":
        fill[draw(st.sampled_from(("volume", "digits", "deal")))] = draw(st.booleans())
    elif kind == "bad_enum":
        field, value = draw(
            st.sampled_from((
                ("event", "modify"), ("side", "long"), ("entry", "close"), ("entry", "OUT"),
                ("side", "BUY"), ("event", ""),
            ))
        )  # fmt: skip
        fill[field] = value
    elif kind == "bad_schema_tag":
        fill["schema"] = draw(st.sampled_from(("fill.v2", "fills.v1", "", "credit.v1")))
    elif kind == "time_without_z":
        field = draw(st.sampled_from(("open_time", "close_time")))
        stem = fill[field].removesuffix("Z")
        fill[field] = draw(st.sampled_from((stem, stem + "+00:00", stem + "+03:00")))
    elif kind == "bad_time":
        field = draw(st.sampled_from(("open_time", "close_time")))
        fill[field] = draw(
            st.sampled_from(("2024-02-30T10:00:00Z", "2024-13-01T00:00:00Z", "yesterdayZ", "Z"))
        )
        if field == "open_time":  # keep close >= open out of the question: one defect only
            fill["close_time"] = "2030-01-01T00:00:00Z"
    elif kind == "grouped_decimal":
        # As in some converted MT4 statements: a digit-group space ("1 434.86").
        fill[draw(st.sampled_from(("profit", "swap", "commission")))] = draw(
            st.sampled_from(("1 434.86", "-1 100.00", "12 345 678.90"))
        )
    elif kind == "empty_string":
        fill[draw(st.sampled_from(("server", "symbol", "reason")))] = ""
    else:
        return _dumps(draw(st.sampled_from(([], [fill], "fill", 42, None, True)))), "schema"
    return _dumps(fill), "schema"


@st.composite
def _negative_volume(draw: st.DrawFn) -> tuple[bytes, str]:
    fill = draw(fills())
    fill["volume"] = -draw(st.integers(1, 10**6))
    return _dumps(fill), "negative_volume"


@st.composite
def _not_a_number(draw: st.DrawFn) -> tuple[bytes, str]:
    fill = draw(fills(currency=draw(st.sampled_from(("USD", "USC", "EUR")))))
    fields = [f for f in DECIMAL_FIELDS if f in fill and f != "usd_rate"]
    if fill["currency"] not in ("USD", "USC"):
        fields.append("usd_rate")  # where usd_rate is optional an engine may never read it
    field = draw(st.sampled_from(fields))
    if draw(st.booleans()):
        fill[field] = draw(
            st.sampled_from(("NaN", "nan", "-NaN", "sNaN", "Infinity", "-Infinity", "inf"))
        )
        return _dumps(fill), "not_a_number"
    field = draw(st.sampled_from([*fields, "volume", "deal", "digits"]))
    token = draw(st.sampled_from(("NaN", "Infinity", "-Infinity")))
    return _with_bare_token(fill, field, token), "not_a_number"


@st.composite
def _unknown_platform(draw: st.DrawFn) -> tuple[bytes, str]:
    fill = draw(fills())
    fill["platform"] = draw(
        st.sampled_from(("mt6", "ctrader", "MT4", "Mt5", "dxtrade", "mt4 ", "fix", "mt3"))
    )
    return _dumps(fill), "unknown_platform"


@st.composite
def _close_before_open(draw: st.DrawFn) -> tuple[bytes, str]:
    fill = draw(fills(entry="out"))
    opened = datetime.fromisoformat(fill["open_time"])
    earlier = opened - timedelta(milliseconds=draw(st.integers(1, 30 * _DAY_MS)))
    fill["close_time"] = _iso(earlier, millis=True)
    return _dumps(fill), "close_before_open"


@st.composite
def _missing_usd_rate(draw: st.DrawFn) -> tuple[bytes, str]:
    fill = draw(fills(currency=draw(st.sampled_from(("EUR", "GBP", "JPY", "CHF", "AUD")))))
    del fill["usd_rate"]
    return _dumps(fill), "missing_usd_rate"


def bad_fills() -> st.SearchStrategy[tuple[bytes, str]]:
    """`(raw message, dead-letter reason)` pairs, one family per SPEC section 8 bad input.

    Reasons: undecodable, schema, negative_volume, not_a_number ("NaN"/"Infinity" strings in
    decimal fields and bare NaN/Infinity tokens, which Python's json accepts and orjson does
    not), unknown_platform, close_before_open, missing_usd_rate. Each message has exactly one
    defect, so the reason is unambiguous.
    """
    return st.one_of(
        _undecodable(),
        _schema_violation(),
        _negative_volume(),
        _not_a_number(),
        _unknown_platform(),
        _close_before_open(),
        _missing_usd_rate(),
    )


# -- [r2] strict forms: valid fills and single mutations of them, for parser == schema ---------

_UNSIGNED_FIELDS = ("open_price", "close_price", "contract_size", "point_value", "usd_rate")
_FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
_ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def _bad_decimal_forms(value: str) -> list[str]:
    """Ways a bridge could write `value` that SPEC 2 [r2] forbids (and some it allows)."""
    whole, _, frac = value.lstrip("-").partition(".")
    sign = "-" if value.startswith("-") else ""
    return [
        f"{value}e0", f"{value}E+3", f"{sign}{whole}_000" + (f".{frac}" if frac else ""),
        f"+{value}", f" {value}", f"{value} ", f"{sign}{whole[:1]} {whole[1:]}0.5",
        f"{sign}1,{whole}" + (f".{frac}" if frac else ""), f"{sign}.{frac or '5'}",
        f"{sign}{whole}.", value.translate(_FULLWIDTH), value.translate(_ARABIC_INDIC),
        f"-{value.lstrip('-')}", "-0", "0", "-0.00", "00012.50", f"{value}\n", "", "-",
        "NaN", "Infinity", "1e5",
    ]  # fmt: skip


def _bad_time_forms(value: str) -> list[str]:
    return [
        value.replace("T", " "), value.replace("T", "t"), value.replace("Z", "z"),
        value.replace("Z", "+00:00"), value[:16] + "Z", value[:19] + ".1234567891Z",
        value[:19] + ".Z", value.translate(_ARABIC_INDIC), value + "\n", " " + value,
        value[:10], value[:11] + "24:00:00Z", value[:17] + "60Z", value.replace("-", "/"),
        value[:19] + ".5Z", value[:19] + ".123456789Z",
    ]  # fmt: skip


@st.composite
def mutated_fills(draw: st.DrawFn) -> dict[str, Any]:
    """A valid fill.v1 dict, or one with a single field written in another form: some of
    those forms are valid too (`"0"`, `"00012.50"`), the point is that the engine's parser
    and the JSON Schema must agree on every one."""
    fill = draw(fills())
    kind = draw(st.sampled_from(("none", "decimal", "decimal", "time", "integer", "null", "seq")))
    if kind == "decimal":
        field = draw(st.sampled_from([f for f in DECIMAL_FIELDS if f in fill]))
        fill[field] = draw(st.sampled_from(_bad_decimal_forms(fill[field])))
    elif kind == "time":
        field = draw(st.sampled_from(("open_time", "close_time")))
        fill[field] = draw(st.sampled_from(_bad_time_forms(fill[field])))
    elif kind == "integer":
        field = draw(st.sampled_from(("deal", "position", "login", "spread_points", "digits")))
        fill[field] = draw(st.sampled_from((-1, 0, 11, -(2**40), 1.5, "7", True)))
    elif kind == "null":
        fill[draw(st.sampled_from(("spread_points", "point_value", "usd_rate", "seq")))] = None
    elif kind == "seq":
        fill["seq"] = draw(st.sampled_from((0, 1, 1_733_140_800_123, -1, 1.5, "3", False)))
    return fill
