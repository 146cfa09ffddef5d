"""Money: `Decimal` everywhere, rounded to the cent in exactly one function.

Rounding policy (SPEC 4.9): each credit is rounded to 0.01 with ROUND_HALF_EVEN (banker's
rounding, the usual ledger choice because it has no upward bias over many credits). Every other
module calls `round_cents`; `quantize` appears nowhere else.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

__all__ = ["CENT", "HUNDRED", "ZERO", "cents", "fmt", "pct_of", "round_cents"]

ZERO = Decimal(0)
HUNDRED = Decimal(100)
CENT = Decimal("0.01")


def round_cents(amount: Decimal) -> Decimal:
    """Round a USD/JMUSD amount to the cent, half to even (2.345 -> 2.34, 2.355 -> 2.36)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN)


def pct_of(amount: Decimal, pct: Decimal) -> Decimal:
    """`pct` percent of `amount`, exact (no rounding): pct_of(1500, 20) == 300."""
    return amount * pct / HUNDRED


def cents(amount: Decimal) -> int:
    """Whole cents of an amount already rounded to the cent (what Redis counters hold)."""
    return int(amount.scaleb(2).to_integral_value())


def fmt(value: Decimal) -> str:
    """A decimal as a plain string without exponent or trailing zeros ("100", "0.02", "1.5")."""
    text = str(value)  # fast, exact; exponent form only for very large or small magnitudes
    if "E" in text:
        if value == value.to_integral_value():
            return format(value.quantize(Decimal(1)), "f")
        return format(value.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
