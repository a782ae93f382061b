"""Reading traces back by id prefix, and a recent-traces list whose ids paste back."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

import lumi
from lumi.runtime_services.observability.spanquery import (
    AmbiguousId,
    clean_id,
    read_trace,
    recent_traces,
    trace_ids,
)
from lumi.runtime_services.observability.tracing import setup_tracing
from lumi.runtime_services.observability.waterfall import summary
from lumi.runtimes.stack import RuntimeServices


class Echo(lumi.Service):
    @lumi.api
    async def echo(self, text: str) -> str:
        return text


@pytest.fixture
async def store(tmp_path: Path) -> Path:
    """A span store holding three traces made by one process (so their correlation ids
    share their first 20 characters)."""
    path = tmp_path / ".lumi" / "traces.db"
    tracing = setup_tracing(service="app", store=path, batch=False)
    try:
        async with lumi.App([Echo], runtime=RuntimeServices(tracing=tracing)) as app:
            for text in ("a", "b", "c"):
                await app.client(Echo).echo(text=text)
    finally:
        tracing.shutdown()
    return path


def test_a_prefix_of_one_id_names_its_trace(store: Path) -> None:
    """A trace id, a correlation id, a unique prefix of either, or one pasted with its
    ellipsis, all name the same trace."""
    for root in recent_traces(store):
        assert root.correlation_id is not None
        for ident in (root.trace_id, root.trace_id[:8], f" {root.trace_id[:8]}… ",
                      root.correlation_id, root.trace_id.upper()):  # fmt: skip
            assert trace_ids(store, ident) == [root.trace_id], ident
        assert {s.trace_id for s in read_trace(store, root.correlation_id)} == {root.trace_id}


def test_a_prefix_of_several_ids_is_refused_by_name(store: Path) -> None:
    """The shared start of correlation ids names several requests: AmbiguousId lists them."""
    roots = recent_traces(store)
    shared = roots[0].correlation_id[:20]  # type: ignore[index]
    with pytest.raises(AmbiguousId, match=rf"'{shared}' starts 3 trace or correlation ids"):
        trace_ids(store, shared)
    assert trace_ids(store, "0" * 32) == [] and read_trace(store, "") == []
    assert clean_id(" abc... ") == "abc"


def test_the_recent_list_prints_ids_that_paste_back(store: Path) -> None:
    """On an 80-column terminal every id in ``lumi trace``'s list is whole or a prefix
    without an ellipsis, and each one read back names its own trace."""
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(summary(recent_traces(store)))
    rows = [line.split() for line in console.export_text().splitlines()[1:] if line.strip()]
    assert len(rows) == 3
    for trace_prefix, correlation, *_ in rows:
        assert "…" not in trace_prefix + correlation and len(correlation) == 32
        (found,) = trace_ids(store, trace_prefix)
        assert found.startswith(trace_prefix) and trace_ids(store, correlation) == [found]
