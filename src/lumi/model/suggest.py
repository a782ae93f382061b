"""Did-you-mean suggestions for errors that name something unknown."""

from __future__ import annotations

from collections.abc import Iterable


def close_matches(word: str, choices: Iterable[str], n: int = 1, cutoff: float = 0.6) -> list[str]:
    """``difflib.get_close_matches``, importing difflib only when an error needs wording: a
    replica imports nearly every module that can suggest a name but seldom words such an
    error, and difflib is ~0.15 MiB of every replica's memory."""
    import difflib

    return difflib.get_close_matches(word, list(choices), n=n, cutoff=cutoff)
