"""Writing a set of TLS files so that a reader never sees half of a renewal.

The layout is the one Kubernetes uses for Secret volumes (its "atomic writer"), so a replica
reads its certificate the same way from ``lumi run``'s ``.lumi/ca/certs/<name>/`` as from a
mounted Secret::

    <folder>/..gen-<n>/tls.crt, tls.key, ca.crt     one immutable generation
    <folder>/..data -> ..gen-<n>                     swapped in one rename
    <folder>/tls.crt -> ..data/tls.crt               (and the others): stable names

A reader resolves the names once (:func:`os.path.realpath`) and reads from the one generation
they point into.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from lumi.paths import private_dir
from lumi.security.ca import write_private

DATA = "..data"
KEEP = 2  # generations kept: the current one and the one before (a reader may still be on it)


def write_bundle(folder: Path, files: Mapping[str, bytes]) -> Path:
    """Write ``files`` (name → bytes) into ``folder`` as one new generation; returns it."""
    private_dir(folder)
    number = 1 + max((_generation(p) for p in folder.glob("..gen-*")), default=0)
    generation = folder / f"..gen-{number}"
    private_dir(generation)
    for name, data in files.items():
        write_private(generation / name, data)
    link = folder / f"{DATA}.tmp"
    link.unlink(missing_ok=True)
    os.symlink(generation.name, link)
    os.replace(link, folder / DATA)
    for name in files:
        target = folder / name
        if not target.is_symlink():
            target.unlink(missing_ok=True)
            os.symlink(f"{DATA}/{name}", target)
    for old in sorted(folder.glob("..gen-*"), key=_generation)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return generation


def _generation(path: Path) -> int:
    try:
        return int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0
