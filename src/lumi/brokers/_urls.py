"""Broker URLs: secrets from the environment, redacted for logs, options parsed with clear errors.

A config file lives in the repository, so a broker URL there must not hold a password. Any part
of it may name an environment variable instead, ``${NAME}``, filled in when the broker is
created::

    events = "redis://:${REDIS_PASSWORD}@cache.internal:6379/0"

An unset variable is a :class:`ConfigError` naming the variable (never a value). Brokers keep the
expanded URL to connect with, and show only :func:`redact` of it in logs and errors.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping

from lumi.model.errors import ConfigError

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def expand_env(url: str, environ: Mapping[str, str] | None = None) -> str:
    """``url`` with every ``${NAME}`` replaced by the environment variable ``NAME``."""
    env = os.environ if environ is None else environ

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise ConfigError(
                f"events: the broker URL uses ${{{name}}}, but the environment variable {name} "
                f"is not set"
            )
        # Percent-encode so that a password with '@', ':' or '/' cannot change the URL's shape.
        return urllib.parse.quote(env[name], safe="")

    return _VARIABLE.sub(value, url)


def redact(url: str) -> str:
    """``url`` as it may appear in a log line: no password, no secret query values."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<an unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        credentials, _, host = netloc.rpartition("@")
        user = credentials.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in credentials else f"{user}@{host}"
    query = urllib.parse.urlencode(
        [
            (name, "***" if _secret(name) else value)
            for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="/:*",
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _secret(name: str) -> bool:
    return re.search(r"pass|secret|token|key(?!file)|credential", name, re.IGNORECASE) is not None


def split_options(
    url: str, ours: Iterable[str], *, broker: str
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The query of ``url`` split into Lumi's options (by name) and the rest, in order."""
    names = set(ours)
    mine: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    query = urllib.parse.urlsplit(url).query
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if name in names:
            if name in mine:
                raise ConfigError(f"events: the {broker} option {name!r} is given twice")
            mine[name] = value
        else:
            rest.append((name, value))
    return mine, rest


def duration(name: str, value: str, *, broker: str) -> float:
    """``"250ms"``, ``"30s"``, ``"15m"``, ``"12h"``, ``"7d"`` or plain seconds → seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|[smhd]?)", value.strip())
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(
            f"events: the {broker} option {name} must be a duration such as 250ms, 30s, 15m, "
            f"12h or 7d, not {value!r}"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def positive_int(name: str, value: str, *, broker: str) -> int:
    """A positive integer option, or a ConfigError naming it."""
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(
            f"events: the {broker} option {name} must be a positive integer, not {value!r}"
        )
    return int(value)


def boolean(name: str, value: str, *, broker: str) -> bool:
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``), or a ConfigError naming it."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"events: the {broker} option {name} must be true or false, not {value!r}")
