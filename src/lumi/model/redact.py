"""Keeping secrets out of logs.

Two rules, applied to every log line (structlog's and the standard library's alike):

* a key that names a secret (``password``, ``token``, ``secret``, ``authorization``, ``api_key``,
  ``cookie``, ...) has its value replaced, at any depth of nested dicts and lists;
* a key that is a parameter marked ``Annotated[str, lumi.Sensitive]`` of the method being served
  has its value replaced too (the dispatcher puts those names in the call context).

``Bearer``/``Basic`` credentials inside free text are masked as well.
"""

from __future__ import annotations

import re
from collections.abc import Collection, MutableMapping
from typing import Any

REDACTED = "[redacted]"

_SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)?|secret|token|authori[sz]ation|api[-_]?key|credential|cookie|"
    r"private[-_]?key|session[-_]?id|signature",
    re.IGNORECASE,
)
_CREDENTIAL_TEXT = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_MAX_DEPTH = 6
_secret_cache: dict[str, bool] = {}


def is_secret_key(key: str) -> bool:
    """True when ``key`` names something that must not be logged."""
    known = _secret_cache.get(key)
    if known is None:
        known = _secret_cache[key] = _SECRET_KEY.search(key) is not None
        if len(_secret_cache) > 4096:  # keys are usually a small fixed set; stay bounded
            _secret_cache.clear()
    return known


def redact(value: Any, sensitive: Collection[str] = (), _depth: int = 0) -> Any:
    """``value`` with secret and ``sensitive`` keys masked (a copy when anything changed)."""
    if _depth > _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        changed = False
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and (key in sensitive or is_secret_key(key)):
                new: Any = REDACTED if item is not None else None
            else:
                new = redact(item, sensitive, _depth + 1)
            changed = changed or new is not item
            out[key] = new
        return out if changed else value
    if isinstance(value, list | tuple):
        items = [redact(item, sensitive, _depth + 1) for item in value]
        if any(a is not b for a, b in zip(items, value, strict=True)):
            return type(value)(items) if isinstance(value, tuple) else items
        return value
    if isinstance(value, str) and ("earer" in value or "asic" in value):
        return _CREDENTIAL_TEXT.sub(lambda m: f"{m.group(1)} {REDACTED}", value)
    return value


def redact_event(
    event: MutableMapping[str, Any], sensitive: Collection[str] = ()
) -> MutableMapping[str, Any]:
    """Mask secrets in one log event dict in place (top-level keys) and below."""
    for key, item in event.items():
        if key in sensitive or is_secret_key(key):
            if item is not None:
                event[key] = REDACTED
        elif isinstance(item, dict | list | tuple | str):
            new = redact(item, sensitive, 1)
            if new is not item:
                event[key] = new
    return event
