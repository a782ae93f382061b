"""The rich transfer bars drawn for pushes and pulls."""

from __future__ import annotations

import io

from rich.console import Console

from lumi.packaging.progress import transfer_bars


def test_bars_draw_each_blob_to_completion_on_a_terminal() -> None:
    """On a terminal every started transfer gets a bar that ends at its total."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with transfer_bars(console) as progress:
        advance = progress("↑ shop/orders 0123456789ab", 3 * 1024 * 1024)
        for _ in range(3):
            advance(1024 * 1024)
    text = out.getvalue()
    assert "shop/orders 0123456789ab" in text and "3.1/3.1 MB" in text


def test_no_bars_off_a_terminal() -> None:
    """Piped output gets no bars (and the callbacks still work)."""
    out = io.StringIO()
    with transfer_bars(Console(file=out, force_terminal=False)) as progress:
        progress("x", 10)(10)
    assert out.getvalue() == ""
