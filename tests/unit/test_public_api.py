"""The public API is curated: a sorted __all__ whose names all exist."""

from __future__ import annotations

import lumi
import lumi.testing


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted, unique, and every name in it is importable."""
    for module in (lumi, lumi.testing):
        names = module.__all__
        assert names == sorted(names) and len(set(names)) == len(names)
        for name in names:
            assert hasattr(module, name), name


def test_public_names_are_exactly_all() -> None:
    """No public name leaks from lumi/__init__ (eager or lazy) without being listed in __all__."""
    public = {n for n in dir(lumi) if not n.startswith("_")}
    submodules = {n for n in public if type(getattr(lumi, n)).__name__ == "module"}
    assert public - submodules == set(lumi.__all__) - {"__version__"}
