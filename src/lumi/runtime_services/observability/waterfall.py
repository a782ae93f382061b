"""A waterfall of one trace for the terminal: the span tree with a time bar per span."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from lumi.runtime_services.observability.spanquery import StoredSpan, build_tree

_KIND_MARK = {"server": "▶", "client": "→", "producer": "✉", "consumer": "✉", "internal": "·"}


def waterfall(spans: list[StoredSpan], width: int = 40) -> Table:
    """A table: span (indented by depth), service, duration, status and a bar placed in time."""
    roots = build_tree(spans)
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    total = max(end - start, 1)
    first = spans[0]
    title = f"trace {first.trace_id}"
    if first.correlation_id:
        title += f"  correlation {first.correlation_id}"
    table = Table(title=title, title_justify="left", box=None, pad_edge=False)
    table.add_column("span", no_wrap=True, overflow="ellipsis", min_width=24)
    table.add_column("service", style="cyan", no_wrap=True, min_width=7)
    table.add_column("ms", justify="right", no_wrap=True, min_width=6)
    table.add_column("status", no_wrap=True, min_width=6)
    table.add_column(f"0 … {total / 1e6:.1f} ms", no_wrap=True)

    def add(span: StoredSpan, prefix: str, last: bool, depth: int) -> None:
        branch = "" if depth == 0 else ("└─ " if last else "├─ ")
        name = Text(prefix + branch, style="dim")
        name.append(f"{_KIND_MARK.get(span.kind, '·')} {span.name}")
        offset = round((span.start_ns - start) / total * width)
        length = max(1, round((span.end_ns - span.start_ns) / total * width))
        ok = span.status == "OK"
        bar = Text(" " * min(offset, width - 1))
        bar.append("█" * min(length, width - min(offset, width - 1)), "green" if ok else "red")
        table.add_row(
            name,
            span.service or "",
            f"{span.duration_ms:.2f}",
            Text(span.status, "green" if ok else "bold red"),
            bar,
        )
        children = sorted(span.children, key=lambda s: s.start_ns)
        below = prefix + ("" if depth == 0 else ("   " if last else "│  "))
        for index, child in enumerate(children):
            add(child, below, index == len(children) - 1, depth + 1)

    for root in sorted(roots, key=lambda s: s.start_ns):
        add(root, "", True, 0)
    return table


SHOWN_ID = 12  # characters of a trace id in the list: random, so unique; `lumi trace` takes it


def summary(roots: list[StoredSpan]) -> Table:
    """Recent traces, one row each (``lumi trace`` without an id). Trace ids are shown as
    their first characters and correlation ids whole (those of one process share their first
    20), never cut further, so either can be pasted back as ``lumi trace ID``."""
    table = Table(box=None, pad_edge=False)
    table.add_column("trace id", no_wrap=True, min_width=SHOWN_ID)
    table.add_column("correlation id", no_wrap=True, min_width=32)
    table.add_column("root span", no_wrap=True, overflow="ellipsis", max_width=40)
    table.add_column("service", style="cyan", no_wrap=True, overflow="ellipsis")
    table.add_column("ms", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for span in roots:
        table.add_row(
            span.trace_id[:SHOWN_ID],
            span.correlation_id or "",
            span.name,
            span.service or "",
            f"{span.duration_ms:.2f}",
            Text(span.status, "green" if span.status == "OK" else "bold red"),
        )
    return table
