"""The edge: inbound call metadata, validated once, with one set of limits for every transport.

Every server calls :func:`inbound_metadata` with the metadata pairs it received (HTTP headers,
gRPC metadata, Thrift headers — lower-case names, ``str`` or ``bytes``) before it builds a
:class:`~lumi.pipeline.call.Call`; a transport that carries the fields natively fills a
:class:`~lumi.model.context.Metadata` and calls :func:`check_metadata` instead. Either raises
:class:`~lumi.model.errors.InvalidArgument` naming the field and the rule, which the transport
answers like any other error. So a caller's bad metadata is refused before any work, on every
transport alike, and what a server accepts (and may echo) is what every Lumi client accepts.

=====================  ==============================================================  =========
field                  rule                                                            if broken
=====================  ==============================================================  =========
``x-correlation-id``   1-128 visible ASCII characters (``!`` to ``~``)                 refused
``idempotency-key``    1-255 visible ASCII characters                                  refused
``authorization``      1-8192 printable ASCII characters (spaces too: ``Bearer …``)    refused
``x-lumi-user``        1-4096 characters of an encoded user; read only from a caller      refused /
                       with a verified certificate (``peer``), ignored from others     ignored
``traceparent``        at most 512 visible ASCII characters; a malformed one is        refused /
                       ignored (W3C: start a new trace)                                ignored
``x-lumi-deadline``    absolute deadline, whole Unix epoch milliseconds: 1-16 digits   refused
=====================  ==============================================================  =========

``x-lumi-relayed-caller`` (1-2048 visible ASCII characters; ``-`` for none) is the caller a
function service's activator verified, forwarded to an instance: read only from a caller with a
verified certificate, and believed only by the guard, from the service's own identity.

Each field at most once. The caller is never a header: it is the identity of the verified
client certificate (``peer``), None without one — a claimed ``x-lumi-caller`` is ignored. A
deadline already past is not a bad value: the call ends with
DEADLINE_EXCEEDED where it would have run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NoReturn

from lumi.model.context import Metadata, User
from lumi.model.errors import InvalidArgument

CORRELATION_ID = "x-correlation-id"
TRACEPARENT = "traceparent"
DEADLINE = "x-lumi-deadline"
IDEMPOTENCY_KEY = "idempotency-key"
AUTHORIZATION = "authorization"
USER = "x-lumi-user"
RELAYED_CALLER = "x-lumi-relayed-caller"
NO_CALLER = "-"  # the relayed value for a caller without an identity

MAX_CORRELATION_ID = 128
MAX_IDEMPOTENCY_KEY = 255
MAX_AUTHORIZATION = 8192
MAX_TRACEPARENT = 512
MAX_RELAYED_CALLER = 2048
MAX_DEADLINE_DIGITS = 16  # epoch ms; 16 digits reach the year 318857

_MAX_DEADLINE = 10**MAX_DEADLINE_DIGITS / 1000  # seconds

# The pattern of the token fields, as a JSON Schema (ECMA 262) regular expression.
TOKEN_PATTERN = "^[!-~]+$"

_LIMITS = {
    CORRELATION_ID: MAX_CORRELATION_ID,
    IDEMPOTENCY_KEY: MAX_IDEMPOTENCY_KEY,
    TRACEPARENT: MAX_TRACEPARENT,
    RELAYED_CALLER: MAX_RELAYED_CALLER,
}
_FIELD = {
    CORRELATION_ID: "correlation_id",
    TRACEPARENT: "traceparent",
    IDEMPOTENCY_KEY: "idempotency_key",
    DEADLINE: "deadline",
    AUTHORIZATION: "authorization",
    USER: "user",
    RELAYED_CALLER: "relayed_caller",
}
# Names as they arrive: str (gRPC, Thrift) or bytes (HTTP), both looked up in one dict.
_BY_NAME: dict[str | bytes, str] = {
    **{name: name for name in _FIELD},
    **{name.encode(): name for name in _FIELD},
}


def excerpt(text: str, limit: int = 32) -> str:
    """``text`` cut to ``limit`` characters (with ``…``), for error messages that must not echo
    what a caller sent."""
    return text if len(text) <= limit else text[:limit] + "…"


def _refuse(name: str, rule: str, value: str) -> NoReturn:
    raise InvalidArgument(
        f"{name} must be {rule} (got {len(value)} characters: {excerpt(value, 16)!r})",
        {"metadata": name},
    )


def _token(name: str, value: str) -> str:
    limit = _LIMITS[name]
    if 0 < len(value) <= limit and value.isascii() and value.isprintable() and " " not in value:
        return value
    _refuse(name, f"1-{limit} visible ASCII characters", value)


def _deadline(value: str) -> float:
    if 0 < len(value) <= MAX_DEADLINE_DIGITS and value.isascii() and value.isdigit():
        return int(value) / 1000.0
    rule = f"whole Unix epoch milliseconds (1-{MAX_DEADLINE_DIGITS} digits)"
    _refuse(DEADLINE, rule, value)


def inbound_metadata(
    pairs: Iterable[tuple[str | bytes, str | bytes]], *, peer: str | None = None
) -> Metadata:
    """The :class:`Metadata` of an inbound call from its metadata pairs (names lower-case;
    unrelated pairs are skipped) and ``peer``, the caller's verified identity (TLS) if any;
    raises :class:`InvalidArgument` for a value that breaks a rule in the module docstring."""
    metadata = Metadata(caller=peer)
    seen: set[str] = set()
    for raw_name, raw_value in pairs:
        name = _BY_NAME.get(raw_name)
        if name is None:
            continue
        value = raw_value.decode("latin-1") if isinstance(raw_value, bytes) else raw_value
        if name in seen:
            raise InvalidArgument(f"{name} was given more than once", {"metadata": name})
        seen.add(name)
        if name == DEADLINE:
            metadata.deadline = _deadline(value)
        elif name == AUTHORIZATION:
            metadata.authorization = _authorization(value)
        elif name == USER:
            if peer is not None:  # relayed by an identified service; from anyone else, noise
                metadata.user = User.from_header(value)
        elif name == RELAYED_CALLER:
            if peer is not None:
                relayed = _token(name, value)
                metadata.relayed_caller = "" if relayed == NO_CALLER else relayed
        else:
            setattr(metadata, _FIELD[name], _token(name, value))
    return metadata


def _authorization(value: str) -> str:
    if 0 < len(value) <= MAX_AUTHORIZATION and value.isascii() and value.isprintable():
        return value
    _refuse(AUTHORIZATION, f"1-{MAX_AUTHORIZATION} printable ASCII characters", value)


def _fine(value: str | None, limit: int) -> bool:
    return value is None or (
        0 < len(value) <= limit and value.isascii() and value.isprintable() and " " not in value
    )


def check_metadata(metadata: Metadata) -> Metadata:
    """Validate a :class:`Metadata` a transport filled from its own fields (same rules as
    :func:`inbound_metadata`); returns it."""
    # One pass of cheap checks: every outbound call of every channel comes through here.
    if not (
        _fine(metadata.correlation_id, MAX_CORRELATION_ID)
        and _fine(metadata.traceparent, MAX_TRACEPARENT)
        and _fine(metadata.idempotency_key, MAX_IDEMPOTENCY_KEY)
    ):
        for name in (CORRELATION_ID, TRACEPARENT, IDEMPOTENCY_KEY):
            value = getattr(metadata, _FIELD[name])
            if value is not None:
                _token(name, value)
    if metadata.authorization is not None:
        _authorization(metadata.authorization)
    deadline = metadata.deadline
    if deadline is not None and not (0 <= deadline < _MAX_DEADLINE):  # NaN fails both
        raise InvalidArgument(
            f"{DEADLINE} must be a finite time after the epoch, not {deadline!r}",
            {"metadata": DEADLINE},
        )
    return metadata
