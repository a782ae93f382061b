"""lumi logs' engine: merge by time across files, filter, follow appended lines."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from lumi.runtime_services.observability import logfiles


def write(path: Path, *records: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")


def test_merge_orders_by_time_across_files_and_filters(tmp_path: Path) -> None:
    """Records from several files come out in time order; service and correlation filter."""
    logs = logfiles.log_dir(tmp_path)
    write(logs / "A.log", {"ts": "2026-01-01T00:00:01Z", "service": "A", "msg": "a1"})
    write(
        logs / "A.log",
        {"ts": "2026-01-01T00:00:03Z", "service": "A", "msg": "a3", "correlation_id": "c"},
    )
    write(
        logs / "B-1.log",
        {"ts": "2026-01-01T00:00:02Z", "service": "B", "msg": "b2", "correlation_id": "c"},
    )
    with (logs / "B-1.log").open("a") as out:
        out.write("not json\n")
    files = logfiles.log_files(tmp_path)
    everything = [r["msg"] for r in logfiles.merged(files, logfiles.matcher())]
    assert everything == ["a1", "b2", "a3"]
    assert [r["msg"] for r in logfiles.merged(files, logfiles.matcher(["B"]))] == ["b2"]
    assert [r["msg"] for r in logfiles.merged(files, logfiles.matcher(correlation="c"))] == [
        "b2",
        "a3",
    ]


def test_follow_yields_lines_as_they_are_appended(tmp_path: Path) -> None:
    """follow() yields existing lines, then lines appended later, also from new files."""
    logs = logfiles.log_dir(tmp_path)
    write(logs / "A.log", {"ts": "1", "service": "A", "msg": "first"})
    stream = logfiles.follow(tmp_path, logfiles.matcher(), poll=0.01, from_start=True)
    assert next(stream)["msg"] == "first"
    write(logs / "B.log", {"ts": "2", "service": "B", "msg": "second"})
    assert next(stream)["msg"] == "second"
    with (logs / "A.log").open("a") as out:
        out.write('{"ts": "3", "service": "A", "msg": "thi')  # half a line: not yet
    with (logs / "A.log").open("a") as out:
        out.write('rd"}\n')
    assert next(stream)["msg"] == "third"


def test_render_is_one_readable_line(tmp_path: Path) -> None:
    """A record renders as time, service[replica], level, message and the other fields."""
    record = {
        "ts": "2026-01-01T10:11:12.345678Z",
        "service": "Orders",
        "replica": 1,
        "level": "warning",
        "msg": "slow",
        "method": "place",
        "trace_id": "t",
    }
    console = Console(width=200, record=True)
    console.print(logfiles.render(record))
    text = console.export_text().strip()
    assert text == "10:11:12.345 Orders[1] warning slow method=place"
