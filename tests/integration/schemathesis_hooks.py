"""Schemathesis hooks for tests/integration/test_schemathesis.py (loaded through
``SCHEMATHESIS_HOOKS``).

``x-lumi-deadline`` is an absolute time: a schema-valid value such as 0 is a deadline that has
passed, which the server rightly answers DEADLINE_EXCEEDED (504). So a well-formed deadline the
fuzzer generates is moved a minute into the future; malformed ones (the negative cases) are
sent as generated.
"""

from __future__ import annotations

import re
import time
from typing import Any

import schemathesis

_WELL_FORMED = re.compile(r"^[0-9]{1,16}$")


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    headers = case.headers or {}
    value = headers.get("x-lumi-deadline")
    if value is not None and _WELL_FORMED.match(str(value)):
        headers["x-lumi-deadline"] = str(int((time.time() + 60) * 1000))
