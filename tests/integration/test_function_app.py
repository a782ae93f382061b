"""Scale to zero under lumi run: instances start on the first call or event, stop when idle,
and scale out to max_instances under concurrent calls."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import LumiRun, alive, copy_app, wait

pytestmark = pytest.mark.slow
LAZY_APP = Path(__file__).parent / "apps" / "lazy"


@pytest.fixture
def lazy(lumi_run: Callable[..., LumiRun], tmp_path: Path) -> tuple[LumiRun, Path]:
    """The lazy app running, after the catch-up instance of its subscriber has idled away."""
    app = copy_app(LAZY_APP, tmp_path / "lazy")
    marks = tmp_path / "marks"
    run = lumi_run(app, env={"LAZY_MARKS": str(marks)})
    run.wait_ready()
    wait(lambda: instances(run) == [], timeout=30, message="the catch-up instance to idle away")
    return run, marks


def instances(run: LumiRun) -> list[dict[str, Any]]:
    answer = run.http.get(f"{run.endpoint('Lazy')}/instances")
    answer.raise_for_status()
    found: list[dict[str, Any]] = answer.json()["instances"]
    return found


def test_idle_instances_stop_and_the_next_call_starts_one(lazy: tuple[LumiRun, Path]) -> None:
    """After the idle timeout the instance's process is gone; the next call starts a new one
    and succeeds."""
    run, _ = lazy
    first = run.post("Lazy", "whoami")
    assert first.status_code == 200, first.text
    pid = first.json()
    assert alive(pid)
    assert [i["pid"] for i in instances(run)] == [pid]
    # The pool drops the instance once the template reports its exit, just after it ends.
    wait(lambda: not alive(pid) and instances(run) == [], timeout=30,
         message="the idle instance to stop and leave the pool")  # fmt: skip
    second = run.post("Lazy", "whoami")
    assert second.status_code == 200, second.text
    assert second.json() != pid and alive(second.json())
    assert "idle for 1.5s; stopping it" in run.output


def test_an_event_for_a_stopped_subscriber_starts_it(lazy: tuple[LumiRun, Path]) -> None:
    """An event published while no instance runs starts one, which handles the event."""
    run, marks = lazy
    assert instances(run) == []
    ticked = run.post("Ticker", "tick", {"n": 7})
    assert ticked.status_code == 200, ticked.text
    wait(lambda: marks.exists() and marks.read_text().startswith("7 "), timeout=30,
         message="the started instance to handle the event")  # fmt: skip
    handler_pid = int(marks.read_text().split()[1])
    assert handler_pid in [i["pid"] for i in instances(run)]


def test_busy_instances_scale_out_up_to_the_maximum(lazy: tuple[LumiRun, Path]) -> None:
    """With concurrency 1, two concurrent calls run on two instances; a third, with both busy
    and max_instances reached, gets RESOURCE_EXHAUSTED after the queue timeout."""
    run, _ = lazy
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        slow = [pool.submit(run.post, "Lazy", "slow", {"seconds": 4}) for _ in range(2)]
        wait(lambda: len([i for i in instances(run) if i["in_flight"]]) == 2, timeout=30,
             message="two busy instances")  # fmt: skip
        refused = run.post("Lazy", "slow", {"seconds": 0})
        answers = [future.result() for future in slow]
    assert refused.status_code == 429, refused.text
    assert refused.json()["code"] == "RESOURCE_EXHAUSTED"
    assert "all 2 instance(s) are busy" in refused.json()["message"]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert len({a.json() for a in answers}) == 2  # two processes


def test_a_wrong_method_does_not_wake_the_function(lazy: tuple[LumiRun, Path]) -> None:
    """A call to a method the service does not have is NOT_FOUND without starting anything."""
    run, _ = lazy
    answer = run.post("Lazy", "nope")
    assert answer.status_code == 404 and answer.json()["code"] == "NOT_FOUND"
    assert instances(run) == []
