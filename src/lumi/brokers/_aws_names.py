"""Names of the SNS topics and SQS queues the SNS broker makes, and how it finds them again.

AWS allows only letters, digits, ``-`` and ``_`` (queues: 80 characters with ``.fifo``), while
Lumi's topics have dots and groups may have any character. A name is therefore the readable
part, cut to fit, plus a digest of the exact parts, so two different topics never share a
resource; the exact topic, group and role are also stored as tags (``lumi:topic``,
``lumi:group``, ``lumi:role``), which is how dead letters are found.
"""

from __future__ import annotations

import hashlib
import re

QUEUE_LIMIT = 80
TOPIC_LIMIT = 256
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def resource_name(prefix: str, parts: tuple[str, ...], *, fifo: bool, limit: int) -> str:
    """``prefix`` + the readable ``parts`` + an 8-digit digest (+ ``.fifo``) within ``limit``."""
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]
    suffix = f"-{digest}" + (".fifo" if fifo else "")
    readable = _UNSAFE.sub("-", "-".join(parts))
    room = limit - len(prefix) - len(suffix)
    if room < 1:
        raise ValueError(f"the SNS broker's prefix {prefix!r} is too long for AWS names")
    return prefix + readable[:room] + suffix


def topic_name(prefix: str, topic: str, *, fifo: bool) -> str:
    return resource_name(prefix, (topic,), fifo=fifo, limit=TOPIC_LIMIT)


def queue_name(prefix: str, topic: str, role: str, *extra: str, fifo: bool) -> str:
    """A queue of ``topic``: role ``group`` (+ the group), ``redrive`` (+ the group), ``archive``
    or ``tail`` (+ a random token)."""
    return resource_name(prefix, (topic, *extra, role), fifo=fifo, limit=QUEUE_LIMIT)


def tags(topic: str, role: str, group: str | None = None) -> dict[str, str]:
    found = {"lumi:topic": topic, "lumi:role": role}
    if group is not None:
        found["lumi:group"] = group
    return found
