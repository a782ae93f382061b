"""The edge (lumi.pipeline.edge): inbound metadata checked once, with the limits every transport
shares."""

from __future__ import annotations

import math

import pytest

import lumi
from lumi.model.context import Metadata, User
from lumi.pipeline.edge import check_metadata, excerpt, inbound_metadata


def test_headers_as_bytes_or_text_become_metadata() -> None:
    """HTTP-style bytes pairs and gRPC-style str pairs give the same Metadata; others are
    skipped, a claimed caller among them (the caller is the verified peer, None here)."""
    pairs = [
        ("x-correlation-id", "c-1"),
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ("x-lumi-deadline", "1767225600123"),
        ("idempotency-key", "k-1"),
        ("x-lumi-caller", "Orders"),
        ("authorization", "Bearer abc.def"),
        ("content-type", "application/json"),
    ]
    text = inbound_metadata(pairs)
    raw = inbound_metadata([(n.encode(), v.encode()) for n, v in pairs])
    assert text == raw
    assert text.correlation_id == "c-1" and text.caller is None and text.idempotency_key == "k-1"
    assert text.authorization == "Bearer abc.def"
    assert text.deadline == 1767225600.123


def test_a_relayed_caller_is_read_only_from_a_verified_peer() -> None:
    """x-lumi-relayed-caller (the activator's) is noise from a caller without a certificate;
    from one with a certificate it is kept for the guard, ``-`` meaning no one."""
    pairs = [("x-lumi-relayed-caller", "spiffe://shop/Orders")]
    assert inbound_metadata(pairs).relayed_caller is None
    assert inbound_metadata(pairs, peer="spiffe://shop/Front").relayed_caller == (
        "spiffe://shop/Orders"
    )
    nobody = inbound_metadata([("x-lumi-relayed-caller", "-")], peer="spiffe://shop/Front")
    assert nobody.relayed_caller == ""


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-correlation-id", "c" * 129),
        ("x-correlation-id", ""),
        ("x-correlation-id", "has space"),
        ("x-correlation-id", "tab\there"),
        ("x-correlation-id", "naïve"),
        ("x-correlation-id", "bell\x07"),
        ("idempotency-key", "k" * 256),
        ("authorization", "a" * 8193),
        ("authorization", "Bearer\x00x"),
        ("traceparent", "t" * 513),
        ("x-lumi-deadline", "nan"),
        ("x-lumi-deadline", "inf"),
        ("x-lumi-deadline", "1e400"),
        ("x-lumi-deadline", "9" * 17),
        ("x-lumi-deadline", "-5"),
        ("x-lumi-deadline", "1.5"),
        ("x-lumi-deadline", ""),
        ("x-lumi-deadline", "١٢٣"),  # digits, but not ASCII ones
    ],
)
def test_values_that_break_a_rule_are_invalid_argument(name: str, value: str) -> None:
    """Each broken rule is INVALID_ARGUMENT naming the field, echoing only a short excerpt."""
    with pytest.raises(lumi.InvalidArgument) as info:
        inbound_metadata([(name, value)])
    assert info.value.message.startswith(name) and info.value.details == {"metadata": name}
    assert len(info.value.message) < 200


def test_the_limits_themselves_pass() -> None:
    """128, 255 and 512 characters and 16 digits are within the limits."""
    meta = inbound_metadata(
        [
            ("x-correlation-id", "c" * 128),
            ("idempotency-key", "k" * 255),
            ("authorization", "Bearer " + "t" * 8185),
            ("traceparent", "t" * 512),
            ("x-lumi-deadline", "9" * 16),
        ]
    )
    assert meta.correlation_id == "c" * 128 and meta.deadline == pytest.approx(9.999999999999999e12)


def test_the_caller_is_the_peer_and_a_user_is_believed_only_from_one() -> None:
    """The caller is the verified peer given by the transport; an encoded end user is read
    only from such a peer (ignored from others), and a malformed one is refused."""
    user = User("u-1", {"role": "admin"})
    pairs = [("x-lumi-user", user.to_header())]
    assert inbound_metadata(pairs).user is None
    relayed = inbound_metadata(pairs, peer="spiffe://shop/Orders")
    assert relayed.caller == "spiffe://shop/Orders" and relayed.user == user
    with pytest.raises(lumi.InvalidArgument, match="x-lumi-user"):
        inbound_metadata([("x-lumi-user", "not-a-user")], peer="spiffe://shop/Orders")


def test_a_field_given_twice_is_refused() -> None:
    """Two values of one field are INVALID_ARGUMENT, whatever their spelling (bytes or str)."""
    with pytest.raises(lumi.InvalidArgument, match="more than once"):
        inbound_metadata([(b"x-correlation-id", b"a"), ("x-correlation-id", "b")])


def test_check_metadata_applies_the_same_rules_to_native_fields() -> None:
    """A Metadata a transport filled itself passes or fails exactly as headers would."""
    assert check_metadata(Metadata(correlation_id="ok", deadline=1.0)).correlation_id == "ok"
    for bad in (
        Metadata(correlation_id="x" * 200),
        Metadata(idempotency_key="a b"),
        Metadata(authorization="Bearer\nx"),
        Metadata(deadline=math.nan),
        Metadata(deadline=math.inf),
        Metadata(deadline=-1.0),
    ):
        with pytest.raises(lumi.InvalidArgument):
            check_metadata(bad)


def test_excerpt_cuts_long_text() -> None:
    """Long text is cut to the limit with an ellipsis; short text is unchanged."""
    assert excerpt("short") == "short"
    assert excerpt("x" * 100, 10) == "x" * 10 + "…"
