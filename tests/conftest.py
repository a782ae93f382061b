"""Shared test setup: the example app is importable as ``shop``."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.containers import podman_env  # noqa: F401 - a session fixture for every test

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SHOP = EXAMPLES / "shop"

if str(SHOP) not in sys.path:
    sys.path.insert(0, str(SHOP))
