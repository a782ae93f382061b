"""Reading a network broker's ``events`` URL: hosts, options, and secrets from the environment.

``kafka://h1:9092,h2:9092?acks=all&sasl.password=${KAFKA_PASSWORD}``: a value written
``${NAME}`` is read from the environment variable ``NAME`` when the broker is created (a
missing variable is a ConfigError naming it). Options that hold secrets (passwords, tokens,
keys) must be written that way — a secret typed into ``lumi.toml`` would end up in the
repository — and no error message or log line ever contains an option's value.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping

from lumi.model.errors import ConfigError

_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET_WORDS = ("password", "secret", "token", "jaas", "seed", ".key.pem", "key_pem", "private")


def is_secret(name: str) -> bool:
    """Whether an option's value is a secret (never written in config, never shown)."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def split_url(url: str, scheme: str) -> tuple[list[str], list[tuple[str, str]]]:
    """``scheme://h1:p1,h2:p2?a=1&b=2`` → (["h1:p1", "h2:p2"], [("a", "1"), ("b", "2")])."""
    prefix = f"{scheme}://"
    if not url.startswith(prefix):
        raise ConfigError(f"events: a {scheme} broker URL starts with {prefix}, e.g. {prefix}host")
    rest = url[len(prefix) :]
    location, _, query = rest.partition("?")
    location = location.rstrip("/")
    if "@" in location:
        raise ConfigError(
            f"events: put {scheme} credentials in options read from the environment "
            f"(see docs/events.md), not before the host in the URL"
        )
    hosts = [h.strip() for h in location.split(",") if h.strip()]
    if not hosts:
        raise ConfigError(f"events: the {scheme} URL names no host, e.g. {prefix}127.0.0.1")
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ConfigError(f"events: the {scheme} URL's options are not name=value pairs") from None
    return hosts, pairs


def resolve(name: str, value: str, scheme: str, environ: Mapping[str, str] | None = None) -> str:
    """``value`` with ``${VAR}`` references read from the environment."""
    env = os.environ if environ is None else environ
    refs = _REF.findall(value)
    if is_secret(name) and not (refs and _REF.fullmatch(value)):
        raise ConfigError(
            f"events: {scheme} option {name!r} is a secret, so it is read from the "
            f"environment: write {name}=${{SOME_VARIABLE}} and set SOME_VARIABLE"
        )
    for ref in refs:
        if ref not in env:
            raise ConfigError(
                f"events: {scheme} option {name!r} needs the environment variable {ref}, "
                f"which is not set"
            )
    return _REF.sub(lambda m: env[m.group(1)], value)


def parse_bool(name: str, value: str, scheme: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"events: {scheme} option {name} is true or false, not {value!r}")


def parse_int(name: str, value: str, scheme: str, *, minimum: int = 1) -> int:
    if not re.fullmatch(r"-?\d+", value) or int(value) < minimum:
        raise ConfigError(
            f"events: {scheme} option {name} is an integer of at least {minimum}, not {value!r}"
        )
    return int(value)


_UNITS = {"ms": 0.001, "": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(name: str, value: str, scheme: str) -> float:
    """``250ms``, ``30``, ``30s``, ``15m``, ``12h``, ``7d`` → seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?", value.strip())
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(
            f"events: {scheme} option {name} is a duration such as 500ms, 30s, 15m or 7d, "
            f"not {value!r}"
        )
    return float(match.group(1)) * _UNITS[match.group(2) or ""]


def unknown(name: str, scheme: str, valid: list[str]) -> ConfigError:
    from lumi.model.suggest import close_matches

    match = close_matches(name, valid, n=1)
    hint = f"; did you mean {match[0]!r}?" if match else ""
    return ConfigError(
        f"events: unknown {scheme} option {name!r} (valid: {', '.join(sorted(valid))}){hint}"
    )
