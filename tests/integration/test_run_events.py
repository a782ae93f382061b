"""Events between the processes of ``lumi run`` on the default embedded broker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import SHOP
from tests.integration.harness import LumiRun, copy_app, wait

pytestmark = pytest.mark.slow


def test_shop_event_reaches_the_mailer_process(
    lumi_run: Callable[..., LumiRun], tmp_path: Path
) -> None:
    """An order placed in the Orders process publishes Orders.placed to the app's embedded log,
    and the Mailer process (another OS process) handles it."""
    app = copy_app(SHOP, tmp_path / "shop")
    run = lumi_run(app)
    run.wait_ready()
    placed = run.post("Orders", "place", {"customer": "ada", "lines": [{"sku": "apple", "qty": 1}]})
    assert placed.status_code == 200, placed.text
    order_id = placed.json()["id"]
    sent = wait(
        lambda: run.post("Mailer", "sent", {"customer": "ada"}).json(),
        timeout=30,
        message="the confirmation",
    )
    assert sent == [f"Dear ada, order {order_id} is confirmed."]
    assert (app / ".lumi" / "events.db").exists()
