"""Where artifacts are stored: the :class:`Store` contract and its two backends."""

from lumi.packaging.store.base import Progress, Store, no_progress

__all__ = ["Progress", "Store", "no_progress"]
