"""Shared test setup: the example app is importable as ``shop``."""

from __future__ import annotations

import sys
from pathlib import Path

pytest_plugins = [
    "tests.engines.redis",
    "tests.engines.moto",
    "tests.engines.kafka",
    "tests.engines.nats",
    "tests.engines.brokers",
    "tests.engines.podman",
    "tests.integration.running_shop",
]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SHOP = EXAMPLES / "shop"

if str(SHOP) not in sys.path:
    sys.path.insert(0, str(SHOP))
