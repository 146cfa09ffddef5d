"""SPEC 2 and 4.10 [r2]: `seq` orders a deal's revisions; duplicate and stale change nothing."""

from __future__ import annotations

from decimal import Decimal

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.fill import decode_fill
from engine.replay import replay_lines
from tests.factories import fill_line, lots, make_ledger

# SIMPLE_SEED: per_lot_usd 15 for IB-1, 20% rebate to C-1, no uplines, no loyalty.
# 1 lot: gross 15.00 -> C-1 3.00, IB-1 12.00.  2 lots: 30.00 -> 6.00, 24.00.
# 3 lots: 45.00 -> 9.00, 36.00.
A, B, X = lots(1), lots(2), lots(3)


def _replay(lines: list[bytes]) -> tuple[list[bytes], dict[str, int]]:
    out: list[bytes] = []
    result = replay_lines(
        [("t", i, line) for i, line in enumerate(lines)], make_ledger(), out.append
    )
    return out, dict(result.summary.outcomes)


def _net(credits: list[bytes]) -> dict[str, Decimal]:
    net: dict[str, Decimal] = {}
    for c in map(orjson.loads, credits):
        who = c["beneficiary"]["id"]
        net[who] = net.get(who, Decimal(0)) + Decimal(c["amount"])
    return {k: v for k, v in net.items() if v}


def _rev(volume: int, event: str = "update", **extra: object) -> bytes:
    return fill_line(deal=9, volume=volume, event=event, **extra)


def test_undoing_a_correction_with_seq_leaves_the_first_content() -> None:
    lines = [_rev(A, "add", seq=1), _rev(B, seq=2), _rev(A, seq=3)]
    credits, outcomes = _replay(lines)
    # +A, then -A +B, then -B +A.
    assert _net(credits) == {"IB-1": Decimal("12.00"), "C-1": Decimal("3.00")}
    assert outcomes == {"credited": 3}


def test_without_seq_an_earlier_content_is_taken_for_a_redelivery() -> None:
    # add X, update A, update B, update A again: without seq the last message is byte for
    # byte the second, hence a duplicate, and B's credits stay (why bridges must send seq).
    plain = [_rev(X, "add"), _rev(A), _rev(B), _rev(A)]
    credits, outcomes = _replay(plain)
    assert _net(credits) == {"IB-1": Decimal("24.00"), "C-1": Decimal("6.00")}
    assert outcomes == {"credited": 3, "duplicate": 1}
    with_seq = [_rev(X, "add", seq=10), _rev(A, seq=20), _rev(B, seq=30), _rev(A, seq=40)]
    credits, outcomes = _replay(with_seq)
    assert _net(credits) == {"IB-1": Decimal("12.00"), "C-1": Decimal("3.00")}
    assert outcomes == {"credited": 4}


def test_a_seq_not_above_the_deals_is_a_duplicate_or_stale_and_changes_nothing() -> None:
    lines = [
        _rev(A, "add", seq=5),
        _rev(B, seq=4),  # older, never seen: stale
        _rev(X, seq=5),  # same seq, other content: stale (the first content of seq 5 stands)
        _rev(A, "add", seq=5),  # the add again: duplicate
        _rev(B, "delete", seq=6),  # newer: reverses A
    ]
    credits, outcomes = _replay(lines)
    assert outcomes == {"credited": 2, "stale": 2, "duplicate": 1}
    kinds = [(c["kind"], c["amount"]) for c in map(orjson.loads, credits)]
    assert kinds == [
        ("ib_commission", "12.00"),
        ("client_rebate", "3.00"),
        ("reversal", "-12.00"),
        ("reversal", "-3.00"),
    ]


def test_seq_joins_the_revision_so_a_revision_is_server_deal_seq() -> None:
    one, two = decode_fill(_rev(A, seq=1)), decode_fill(_rev(A, seq=2))
    assert one.revision != two.revision
    assert decode_fill(_rev(A, seq=1, comment="ignored field")).revision == one.revision


_revisions = st.lists(
    st.tuples(
        st.sampled_from((1, 2)),
        st.sampled_from((A, B, X)),
        st.sampled_from(("add", "update", "delete")),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(revisions=_revisions, data=st.data())
def test_replay_with_seq_is_deterministic_whatever_the_delivery_order(
    revisions: list[tuple[int, int, str]], data: st.DataObject
) -> None:
    # Each bridge message gets its seq (its position); Kafka may deliver them late, twice, or
    # out of order. Law: what is credited is what the messages whose seq rises above every
    # earlier one of their deal give, in that order; the rest changes nothing.
    messages = [
        fill_line(deal=deal, volume=volume, event=event, seq=seq)
        for seq, (deal, volume, event) in enumerate(revisions)
    ]
    delivered = data.draw(st.lists(st.sampled_from(messages), min_size=1, max_size=16))
    highest: dict[int, int] = {}
    rising = []
    for raw in delivered:
        fill = decode_fill(raw)
        if fill.seq is not None and fill.seq > highest.get(fill.deal, -1):
            highest[fill.deal] = fill.seq
            rising.append(raw)
    credits, _ = _replay(delivered)
    assert credits == _replay(rising)[0]
    assert credits == _replay(delivered)[0]  # and the same bytes every time
